from dawin.inputs import multitask_datasets, paper_datasets
from dawin.inputs.checkpoints import enforce_lock
from dawin.runtime import start_job

log = start_job(snakemake)
p, name, root = snakemake.params, snakemake.params.builder, snakemake.output[0]
split = getattr(p, "split", None)
if split is not None:
    # the multi-task sets: test (rule multitask_dataset) and train splits (rule multitask_train_split); config
    # paper.expected (replicas) overrides the published sizes of dawin/inputs/data/multitask.json
    sizes = {f"expected_{k}": v for k, v in p.expected.items()}
    record = multitask_datasets.prepare_task(name, root, split=split, downloads=f"{p.downloads}/{name}",
                                             endpoint=p.hf_endpoint, rewrites=p.rewrites, md5=p.md5, mirror=p.mirror,
                                             progress=False, **sizes)
elif name == "imagenet_heldout":  # its counts are paper.heldout
    indices = f"{snakemake.input.downloads}/{paper_datasets.HELDOUT_INDICES}"
    record = paper_datasets.build_imagenet_heldout(p.manual["imagenet_train"], root, indices=indices, **p.heldout)
    # the index file is accepted: the split it selects passed every check
    enforce_lock(paper_datasets.HELDOUT_INDICES, indices, p.lock, p.indices.get("sha256"))
else:
    # the robust sets: their image and class counts are config paper.expected.<dataset> (required)
    sizes = paper_datasets.expected_counts(snakemake.wildcards.dataset, p.expected)
    if name in paper_datasets.MANUAL:
        record = paper_datasets.BUILDERS[name](p.manual[name], root, **sizes)
    else:  # a cluster job: the archive is in the downloads folder (rule fetch_dataset); nothing is downloaded
        record = paper_datasets.prepare(name, root, downloads=snakemake.input.downloads, lock=p.lock, offline=True,
                                        md5=p.md5.get(paper_datasets.SOURCES[name]["archive"]), progress=False,
                                        **sizes)
log.info("%s: %d images, %d classes", name, record["n_images"], record["n_classes"])
