import pandas as pd
import torch

from dawin.robust.baselines import robust_baselines
from dawin.inference.logits import load_logits
from dawin.method.calibration import read_temperatures
from dawin.runtime import start_job, write_json
from dawin.report.tidy import tidy, with_ood_average
from dawin.tensorio import load_tensors, save_tensors

log = start_job(snakemake)
p, backbone = snakemake.params, snakemake.wildcards.backbone
temps = read_temperatures(snakemake.input.temperatures)
logits = {}
for path in snakemake.input.logits:  # .../logits/{backbone}/{model}/{dataset}.safetensors
    model, dataset = path.split("/")[-2], path.rsplit("/", 1)[-1].removesuffix(".safetensors")
    logits[model, dataset] = load_logits(path)[:2]
eval_sets = [p.id_val, *p.test_sets]
sweep_accuracy = {d: pd.read_csv(f).set_index("alpha")["accuracy"].to_dict() for d, f in zip(eval_sets, snakemake.input.sweeps)}
sweep_pred = {}
for d, f in zip(p.test_sets, snakemake.input.sweep_samples):
    t, _ = load_tensors(f, ["alphas", "pred"])
    sweep_pred[d] = {float(a): pred for a, pred in zip(t["alphas"].tolist(), t["pred"])}
dawin_coef, _ = load_tensors(snakemake.input.coefficients, p.test_sets)
accuracy, correct, chosen = robust_baselines(logits, sweep_accuracy, sweep_pred, dawin_coef, p.id_val, p.test_sets,
                                             p.grid, temps["zeroshot"], temps["finetuned"])
log.info("selected on %s: output ensemble %.2f, WiSE-FT %.2f", p.id_val, chosen["output_ensemble"], chosen["wise_ft"])
rows = [dict(suite=p.suite, backbone=backbone, method=m, dataset=d, metric="accuracy", value=v)
        for (m, d), v in accuracy.items()]
df = with_ood_average(tidy(rows), p.ood)
df.to_csv(snakemake.output.metrics, index=False, float_format="%.4f")
save_tensors(snakemake.output.correct, {f"{m}/{d}": c.to(torch.uint8) for (m, d), c in correct.items()},
             {"backbone": backbone})
write_json(snakemake.output.selection, {**chosen, "temperatures": temps})
