from dawin.inputs import models
from dawin import identity
from dawin.runtime import start_job

log = start_job(snakemake)
arch, pretrained = snakemake.params.architecture, snakemake.params.pretrained
weights = snakemake.input.weights[0] if snakemake.input.weights else None
clip = models.create_clip(arch, pretrained=pretrained, weights=weights)
head, meta = models.load_head(snakemake.input.head)
if meta.get("architecture") != arch:
    raise models.CheckpointError(f"{snakemake.input.head} is a head of {meta.get('architecture')}, not {arch}")
clf = models.ImageClassifier.from_clip(clip, arch, head, meta["classnames"].split("\n"))
clf.save(snakemake.output[0], source=meta["weights"], head_key=meta["cache_key"],
         **identity.stamp(backbone=snakemake.wildcards.backbone, model="zeroshot"))
log.info("zero-shot classifier %s with head %s", arch, meta["cache_key"][:12])
