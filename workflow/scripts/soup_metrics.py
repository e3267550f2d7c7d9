from dawin.expertise import accuracy
from dawin.logits import load_logits
from dawin.runtime import setup_logging
from dawin.tables import tidy, with_ood_average

log = setup_logging(snakemake.log[0])
p, backbone = snakemake.params, snakemake.wildcards.backbone
rows = []
for path in snakemake.input.logits:  # .../logits/{backbone}/{soup}/{dataset}.safetensors
    method, dataset = path.split("/")[-2], path.rsplit("/", 1)[-1].removesuffix(".safetensors")
    z, y, _ = load_logits(path)
    rows.append(dict(suite=p.suite, backbone=backbone, method=method, dataset=dataset, metric="accuracy",
                     value=accuracy(z, y)))
df = with_ood_average(tidy(rows), p.ood)
df.to_csv(snakemake.output[0], index=False, float_format="%.4f")
log.info("\n%s", df.to_string())
