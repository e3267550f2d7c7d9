import torch

from dawin.inference.logits import load_logits
from dawin.runtime import start_job
from dawin.report.tidy import tidy, with_ood_average
from dawin.tensorio import save_tensors

log = start_job(snakemake)
p, backbone = snakemake.params, snakemake.wildcards.backbone
rows, correct = [], {}
for path in snakemake.input.logits:  # .../logits/{backbone}/{soup}/{dataset}.safetensors
    method, dataset = path.split("/")[-2], path.rsplit("/", 1)[-1].removesuffix(".safetensors")
    z, y, _ = load_logits(path)
    correct[f"{method}/{dataset}"] = (z.argmax(-1) == y.long()).to(torch.uint8)
    rows.append(dict(suite=p.suite, backbone=backbone, method=method, dataset=dataset, metric="accuracy",
                     value=float(correct[f"{method}/{dataset}"].double().mean() * 100)))
df = with_ood_average(tidy(rows), p.ood)
df.to_csv(snakemake.output.metrics, index=False, float_format="%.4f")
save_tensors(snakemake.output.correct, correct, {"backbone": backbone})
log.info("\n%s", df.to_string())
