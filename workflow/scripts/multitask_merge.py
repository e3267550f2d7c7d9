import time

import pandas as pd

from dawin import models
from dawin.multitask import evaluate, load_pool, method_data, method_options, run_method
from dawin.runtime import setup_logging

log = setup_logging(snakemake.log[0])
p, method, pool_name = snakemake.params, snakemake.wildcards.method, snakemake.wildcards.pool
pool = load_pool(snakemake.input.pretrained, dict(zip(p.tasks, snakemake.input.experts)))
transform = models.preprocess(pool.encoder())
eval_kw = dict(batch_size=p.batch_size, num_workers=p.num_workers, use_autocast=p.autocast)
roots = dict(zip(p.tasks, snakemake.input.test))
# AdaMerging: each task's whole test set, read per step; Fisher / RegMean: each task's train split
data = method_data(method, p.tasks, test=roots, train=dict(zip(p.tasks, snakemake.input.get("train") or [])),
                   transform=transform)

rows = []
if method == "task_arithmetic_grid":  # Figure 8's search baseline: every lambda, the best average reported
    start, results = time.perf_counter(), {}
    for lam in p.grid:
        state, _ = run_method("task_arithmetic", pool, None, lam=lam)
        results[lam] = evaluate(pool, state, p.eval_tasks, roots, **eval_kw)
    seconds = time.perf_counter() - start
    best = max(results, key=lambda lam: (sum(results[lam].values()), -lam))
    accuracy, merge_seconds, eval_seconds = results[best], 0.0, seconds
    log.info("task arithmetic grid: best lambda %.2f (average over the test sets: an upper bound for a search)", best)
    rows.append(dict(method=method, dataset="all", metric="lambda", value=best))
else:
    state, merge_seconds = run_method(method, pool, data,
                                      **method_options(method, p.options, seed=p.seed, num_workers=p.num_workers))
    start = time.perf_counter()
    accuracy = evaluate(pool, state, p.eval_tasks, roots, **eval_kw)
    eval_seconds = time.perf_counter() - start
rows += [dict(method=method, dataset=t, metric="accuracy", value=a) for t, a in accuracy.items()]
rows += [dict(method=method, dataset="all", metric="merge_seconds", value=merge_seconds),
         dict(method=method, dataset="all", metric="eval_seconds", value=eval_seconds)]
df = pd.DataFrame(rows).assign(suite=p.suite, pool=pool_name)
df.to_csv(snakemake.output[0], index=False, float_format="%.6g")
log.info("%s on pool %s:\n%s", method, pool_name, df.to_string())
