import pandas as pd

from dawin.baselines import (dynamic_classifier_selection, dynamic_output_ensemble, oracle_domain_coefficient,
                             output_ensemble_grid, output_ensemble_probs, select_on_validation)
from dawin.expertise import accuracy
from dawin.logits import load_logits
from dawin.runtime import read_json, setup_logging, write_json
from dawin.tables import tidy, with_ood_average
from dawin.tensorio import load_tensors

log = setup_logging(snakemake.log[0])
p, backbone = snakemake.params, snakemake.wildcards.backbone
temps = read_json(snakemake.input.temperatures)
t0, t1 = temps["zeroshot"], temps["finetuned"]
cached = {}
for path in snakemake.input.logits:  # .../logits/{backbone}/{model}/{dataset}.safetensors
    model, dataset = path.split("/")[-2], path.rsplit("/", 1)[-1].removesuffix(".safetensors")
    cached[model, dataset] = load_logits(path)[:2]
eval_sets = [p.id_val, *p.test_sets]
sweeps = {d: pd.read_csv(f).set_index("alpha")["accuracy"] for d, f in zip(eval_sets, snakemake.input.sweeps)}
dawin_coef, _ = load_tensors(snakemake.input.coefficients, p.test_sets)

(z0, y), (z1, _) = cached["zeroshot", p.id_val], cached["finetuned", p.id_val]
ens_alpha = select_on_validation(output_ensemble_grid(z0, z1, y, p.grid, t0, t1))
wise_alpha = select_on_validation({a: float(sweeps[p.id_val].loc[a]) for a in p.grid})
log.info("selected on %s: output ensemble %.2f, WiSE-FT %.2f", p.id_val, ens_alpha, wise_alpha)

rows, oracle = [], {}
def add(method, dataset, value):
    rows.append(dict(suite=p.suite, backbone=backbone, method=method, dataset=dataset, metric="accuracy", value=value))

for d in p.test_sets:
    (z0, y), (z1, _), (za, _) = cached["zeroshot", d], cached["finetuned", d], cached["average", d]
    add("zeroshot", d, accuracy(z0, y))
    add("finetuned", d, accuracy(z1, y))
    add("average", d, accuracy(za, y))
    add("output_ensemble", d, accuracy(output_ensemble_probs(z0, z1, ens_alpha, t0, t1), y))
    add("wise_ft", d, float(sweeps[d].loc[wise_alpha]))
    add("dcs", d, accuracy(dynamic_classifier_selection(z0, z1, t0, t1), y))
    add("doe", d, accuracy(dynamic_output_ensemble(z0, z1, dawin_coef[d], t0, t1), y))
    oracle[d], acc = oracle_domain_coefficient({a: float(v) for a, v in sweeps[d].items()})
    add("oracle_domain", d, acc)

df = with_ood_average(tidy(rows), p.ood)
df.to_csv(snakemake.output.metrics, index=False, float_format="%.4f")
write_json(snakemake.output.selection, {"output_ensemble": ens_alpha, "wise_ft": wise_alpha, "temperatures": temps,
                                        "oracle_domain": oracle})
