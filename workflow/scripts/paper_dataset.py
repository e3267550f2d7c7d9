from dawin import multitask_datasets, paper_datasets
from dawin.runtime import setup_logging

log = setup_logging(snakemake.log[0])
p, name, root = snakemake.params, snakemake.params.builder, snakemake.output[0]
if name == "imagenet_heldout":
    record = paper_datasets.build_imagenet_heldout(p.manual["imagenet_train"], root, seed=p.seed, **p.heldout)
elif name in paper_datasets.MANUAL:
    record = paper_datasets.BUILDERS[name](p.manual[name], root)
elif name in multitask_datasets.MULTITASK_BUILDERS:
    record = multitask_datasets.prepare_task(name, root, downloads=f"{p.downloads}/{name}")
else:
    record = paper_datasets.prepare(name, root, downloads=p.downloads)
log.info("%s: %d images, %d classes", name, record["n_images"], record["n_classes"])
