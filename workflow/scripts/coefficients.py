from dawin.method import variants
from dawin.method.calibration import read_temperatures
from dawin.inference.logits import load_logits
from dawin import identity
from dawin.runtime import start_job
from dawin.tensorio import save_tensors

log = start_job(snakemake)
p = snakemake.params
# the temperatures fitted on the ID held-out split, or the authors' (naver-ai/dawin's, from the config)
temps = (read_temperatures(snakemake.input.temperatures) if p.authors_temperatures is None
         else dict(zip(("zeroshot", "finetuned"), map(float, p.authors_temperatures))))
log.info("temperatures: %s (%s)", temps, "fitted" if p.authors_temperatures is None else "the authors'")
average = snakemake.input.get("average")
domains = []
for i, d in enumerate(p.datasets):
    (z0, y, _), (z1, _, _) = load_logits(snakemake.input.zeroshot[i]), load_logits(snakemake.input.finetuned[i])
    za = load_logits(average[i])[0] if average else None
    domains.append(variants.Domain(d, z0, z1, y, temps["zeroshot"], temps["finetuned"], p.offset_adjustment, p.seed, za))
for kind, path in zip(p.kinds, snakemake.output):
    out = {}
    for domain in domains:
        out[domain.name] = variants.compute(kind, domain)
        log.info("%s on %s: %d coefficients, mean %.4f, std %.4f", kind, domain.name, len(out[domain.name]),
                 out[domain.name].mean(), out[domain.name].std())
    save_tensors(path, out, {"kind": kind, "offset_adjustment": str(p.offset_adjustment),
                             **identity.stamp(backbone=snakemake.wildcards.backbone, kind=kind)})
