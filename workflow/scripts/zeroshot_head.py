from dawin.inputs import datasets, models
from dawin.inference.logits import default_device
from dawin import identity, provenance
from dawin.runtime import start_job

log = start_job(snakemake)
arch, pretrained = snakemake.params.architecture, snakemake.params.pretrained
weights = snakemake.input.weights[0] if snakemake.input.weights else None
clip = models.create_clip(arch, pretrained=pretrained, weights=weights)
data = datasets.load_dataset(snakemake.input.data, check_files=False)
head = models.zeroshot_head(clip, arch, data.classnames, data.templates, device=default_device())
weights_id = f"sha256:{models.sha256(weights)}" if weights else f"open_clip:{pretrained}"
key = models.head_cache_key(arch, weights_id, data.classnames, data.templates)
models.save_head(head, snakemake.output[0], architecture=arch, weights=weights_id, cache_key=key,
                 classnames="\n".join(data.classnames), templates="\n".join(data.templates),
                 **provenance.record([weights] if weights else []),
                 **identity.stamp(backbone=snakemake.wildcards.backbone,
                                  **identity.of_dataset(data, snakemake.wildcards.dataset)))
log.info("zero-shot head %s for %s from %d templates (key %s)", tuple(head.shape), data.name, len(data.templates), key[:12])
