import pandas as pd

from dawin.method.expertise import percent_correct, top1_correct
from dawin.report.results import write_pool_correctness
from dawin.runtime import start_job
from dawin.tensorio import load_tensors

log = start_job(snakemake)
p = snakemake.params
correct = {}
for task, path in zip(p.tasks, snakemake.input.logits):
    t, _ = load_tensors(path, [task, "labels"])
    # Individuals: each task's own expert (the true expert per task, an oracle selection)
    correct[task] = top1_correct(t[task], t["labels"])
rows = [dict(method="individual", dataset=task, metric="accuracy", value=percent_correct(c)) for task, c in correct.items()]
individual = pd.DataFrame(rows).assign(suite=p.suite, pool="all")
write_pool_correctness(snakemake.output.correct, {"individual": correct}, backbone=p.backbone, pool="all")
frames = [pd.read_csv(f) for f in [*snakemake.input.methods, snakemake.input.dawin, *snakemake.input.pools]]
df = pd.concat([individual, *frames], ignore_index=True).assign(backbone=p.backbone)
acc = df[(df.metric == "accuracy") & (df.pool == "all")]
avg = acc.groupby(["suite", "backbone", "pool", "method"], as_index=False).value.mean().assign(dataset="avg", metric="accuracy")
df = pd.concat([df, avg], ignore_index=True)[["suite", "backbone", "pool", "method", "dataset", "metric", "value"]]
df.to_csv(snakemake.output.metrics, index=False, float_format="%.4f")
log.info("\n%s", df[df.dataset == "avg"].to_string())
