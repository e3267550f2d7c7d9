import numpy as np

from dawin.report.analysis import optimal_coefficients, optimality_check
from dawin.runtime import read_json, start_job
from dawin.report.tidy import tidy
from dawin.tensorio import load_tensors

log = start_job(snakemake)
p, backbone = snakemake.params, snakemake.wildcards.backbone
wise_alpha = read_json(snakemake.input.selection)["wise_ft"]
oracle, _ = load_tensors(snakemake.input.oracle, p.datasets)
rows = []
for d, path in zip(p.datasets, snakemake.input.sweeps):
    sweep, _ = load_tensors(path, ["alphas", "cross_entropy"])
    alphas = sweep["alphas"].numpy()
    keep = np.isin(np.round(alphas, 6), np.round(p.fine_grid, 6))  # Table C's grid: 0.05..0.95, no endpoints
    optimal = optimal_coefficients(sweep["cross_entropy"].numpy()[keep], alphas[keep])
    stats = optimality_check(optimal, oracle[d].numpy(), wise_alpha, p.seed)
    log.info("%s: %s", d, stats)
    rows += [dict(suite=p.suite, backbone=backbone, method=k, dataset=d, metric="value", value=float(v))
             for k, v in stats.items()]
tidy(rows).to_csv(snakemake.output[0], index=False, float_format="%.6f")
