from dawin.inputs import multitask_datasets, paper_datasets
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
    record = paper_datasets.build_imagenet_heldout(p.manual["imagenet_train"], root,
                                                   indices=f"{snakemake.input.downloads}/imagenet_98_idxs.npy",
                                                   **p.heldout)
else:
    # the robust sets: their image and class counts are config paper.expected.<dataset> (required)
    sizes = paper_datasets.expected_counts(snakemake.wildcards.dataset, p.expected)
    if name in paper_datasets.MANUAL:
        record = paper_datasets.BUILDERS[name](p.manual[name], root, **sizes)
    else:  # the archive is already in the downloads folder (rule fetch_dataset): extraction only
        record = paper_datasets.prepare(name, root, downloads=snakemake.input.downloads, lock=p.lock,
                                        md5=p.md5.get(paper_datasets.SOURCES[name]["archive"]), progress=False,
                                        **sizes)
log.info("%s: %d images, %d classes", name, record["n_images"], record["n_classes"])
