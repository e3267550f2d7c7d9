import pandas as pd

from dawin.figures import id_ood_tradeoff, save
from dawin.runtime import setup_logging

log = setup_logging(snakemake.log[0])
p = snakemake.params
df = pd.read_csv(snakemake.input.metrics)
acc = df[df.metric == "accuracy"].pivot_table(index="method", columns="dataset", values="value")
points = pd.DataFrame({"method": acc.index, "id": acc[p.id_test].values, "ood": acc["ood_avg"].values})
order = ["zeroshot", "finetuned", "output_ensemble", "wise_ft", "dawin_per_sample", "dawin"]
points = points.set_index("method").loc[[m for m in order if m in acc.index]].reset_index()
sweeps = {f.rsplit("/", 1)[-1].removesuffix(".csv"): pd.read_csv(f).set_index("alpha")["accuracy"] for f in snakemake.input.sweeps}
sweep = pd.DataFrame({"alpha": sweeps[p.id_test].index, "id": sweeps[p.id_test].values,
                      "ood": pd.concat([sweeps[d] for d in p.ood], axis=1).mean(axis=1).values})
fig = id_ood_tradeoff(points, sweep, f"{df.suite.iloc[0]} suite, {p.backbone}")
save(fig, snakemake.output[0].removesuffix(".png"))
log.info("points:\n%s", points.round(2).to_string())
