import pandas as pd

from dawin.inputs import pixels
from dawin.merging.dawin_multitask import MultiTaskGroupedEvaluator
from dawin.merging.multitask import dawin_rows, load_pool, method_data, method_options, method_rows
from dawin import provenance
from dawin.report.results import write_pool_correctness
from dawin.runtime import start_job, write_json

log = start_job(snakemake)
p, out = snakemake.params, snakemake.output
pool = load_pool(snakemake.input.pretrained, dict(zip(p.tasks, snakemake.input.experts)))
eval_kw = dict(batch_size=p.batch_size, num_workers=p.num_workers, use_autocast=p.autocast)
roots = dict(zip(p.tasks, snakemake.input.test))
train = dict(zip(p.tasks, snakemake.input.get("train") or []))
decoded = pixels.by_root(snakemake.input.test, snakemake.input.pixels)


def write(rows, path):
    df = pd.DataFrame(rows).assign(suite=p.suite, pool=p.pool)
    df.to_csv(path, index=False, float_format="%.6g")
    log.info("pool %s:\n%s", p.pool, df.to_string())


correct = {}  # {method: {task: per-sample correctness}}: the tables' bootstrap intervals
for method, path in zip(p.methods, out.methods):
    # AdaMerging: each task's whole test set, read per step; Fisher / RegMean: each task's train split
    data = method_data(method, p.tasks, test=roots, train=train, visual=pool.encoder(), decoded=decoded)
    options = method_options(method, p.options.get(method, {}), seed=p.seed, num_workers=p.num_workers)
    rows, correct[method] = method_rows(method, pool, data=data, options=options, tasks=p.eval_tasks, roots=roots,
                                        grid=p.grid, decoded=decoded, **eval_kw)
    write(rows, path)

evaluator = MultiTaskGroupedEvaluator(**eval_kw, lam0=p.dawin["lam0"], authors_scaling=p.dawin["authors_scaling"])
rows, means, correct["dawin"] = dawin_rows(pool, evaluator, p.eval_tasks, dict(zip(p.eval_tasks, snakemake.input.logits)),
                                           roots, n_components=p.dawin["n_components"], seed=p.seed, decoded=decoded,
                                           **p.mixture)
write(rows, out.dawin)
write_pool_correctness(out.correct, correct, backbone=p.backbone, pool=p.pool)
pd.DataFrame(means).to_csv(out.coefficients, index=False, float_format="%.6g")
datasets = [*snakemake.input.test, *(snakemake.input.get("train") or [])]
write_json(out.record, {"pool": p.pool, provenance.KEY: provenance.entry([snakemake.input.pretrained, *snakemake.input.experts],
                                                                         datasets)})
