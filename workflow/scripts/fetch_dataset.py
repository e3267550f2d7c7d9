from pathlib import Path

from dawin.inputs import paper_datasets
from dawin.inputs.checkpoints import fetch_checkpoint
from dawin.runtime import start_job

log = start_job(snakemake)
p, name, out = snakemake.params, snakemake.params.builder, Path(snakemake.output[0])
out.mkdir(parents=True, exist_ok=True)
if name == "imagenet_heldout":  # the images themselves are manual (ImageNet train)
    fetch_checkpoint(paper_datasets.HELDOUT_INDICES, p.indices, out / paper_datasets.HELDOUT_INDICES, p.lock,
                     mirror=p.mirror, config_key="paper.heldout.indices", rewrites=p.rewrites)
elif name in paper_datasets.MANUAL:
    log.info("%s is placed by hand (paper.manual): nothing to download", name)
else:
    paper_datasets.fetch_archive(name, out, md5=p.md5.get(paper_datasets.SOURCES[name]["archive"]), lock=p.lock,
                                 mirror=p.mirror, rewrites=p.rewrites, progress=False)
log.info("%s: fetched %s", name, sorted(f.name for f in out.iterdir()))
