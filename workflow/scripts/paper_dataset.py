from dawin import multitask_datasets, paper_datasets
from dawin.runtime import setup_logging

log = setup_logging(snakemake.log[0])
p, name, root = snakemake.params, snakemake.params.builder, snakemake.output[0]
split = getattr(p, "split", None)
sizes = {f"expected_{k}": v for k, v in p.expected.items()}  # config paper.expected: overrides published sizes
if split is not None:
    # the multi-task sets: test (rule multitask_dataset) and train splits (rule multitask_train_split)
    record = multitask_datasets.prepare_task(name, root, split=split, downloads=f"{p.downloads}/{name}",
                                             endpoint=p.hf_endpoint, rewrites=p.rewrites, md5=p.md5, progress=False,
                                             **sizes)
elif name == "imagenet_heldout":
    record = paper_datasets.build_imagenet_heldout(p.manual["imagenet_train"], root,
                                                   indices=f"{snakemake.input.downloads}/imagenet_98_idxs.npy",
                                                   **p.heldout)
elif name in paper_datasets.MANUAL:
    record = paper_datasets.BUILDERS[name](p.manual[name], root, **sizes)
else:  # the archive is already in the downloads folder (rule fetch_dataset): extraction only
    record = paper_datasets.prepare(name, root, downloads=snakemake.input.downloads, lock=p.lock,
                                    md5=p.md5.get(paper_datasets.SOURCES[name]["archive"]), progress=False, **sizes)
log.info("%s: %d images, %d classes", name, record["n_images"], record["n_classes"])
