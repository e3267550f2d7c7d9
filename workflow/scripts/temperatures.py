from dawin.method.calibration import fit_temperature, nll
from dawin.inference.logits import load_logits
from dawin.runtime import start_job, write_json

log = start_job(snakemake)
out = {}
for model, path in zip(snakemake.params.models, snakemake.input.logits):
    logits, labels, _ = load_logits(path)
    t = fit_temperature(logits, labels)
    out[model] = t
    log.info("%s: T = %.4f (NLL %.4f -> %.4f)", model, t, nll(logits, labels, 1.0), nll(logits, labels, t))
write_json(snakemake.output[0], out)
