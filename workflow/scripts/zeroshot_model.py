from safetensors.torch import save_file

from dawin import datasets, models
from dawin.logits import default_device
from dawin.runtime import setup_logging

log = setup_logging(snakemake.log[0])
arch = snakemake.params.architecture
weights = snakemake.input.weights[0] if snakemake.input.weights else None
clip = models.create_clip(arch, pretrained=snakemake.params.pretrained, weights=weights)
data = datasets.load_dataset(snakemake.input.data, check_files=False)
head = models.zeroshot_head(clip, arch, data.classnames, data.templates, device=default_device())
source = weights or f"open_clip:{arch}:{snakemake.params.pretrained}"
save_file({"weight": head.contiguous()}, snakemake.output.head,
          metadata={"architecture": arch, "classnames": "\n".join(data.classnames), "templates": "\n".join(data.templates)})
models.ImageClassifier.from_clip(clip.cpu(), arch, head).save(snakemake.output.model, source=source)
log.info("zero-shot head %s from %d classes x %d templates", tuple(head.shape), len(data.classnames), len(data.templates))
