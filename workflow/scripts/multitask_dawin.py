import time

import numpy as np
import pandas as pd
import torch

from dawin import datasets, models
from dawin.merging.dawin_multitask import MultiTaskGroupedEvaluator, cluster_coefficients, expert_coefficients
from dawin.multitask import load_pool
from dawin.runtime import setup_logging
from dawin.tensorio import load_tensors

log = setup_logging(snakemake.log[0])
p, pool_name = snakemake.params, snakemake.wildcards.pool
pool = load_pool(snakemake.input.pretrained, dict(zip(p.tasks, snakemake.input.experts)))
evaluator = MultiTaskGroupedEvaluator(batch_size=p.batch_size, num_workers=p.num_workers, use_autocast=p.autocast,
                                      lam0=p.lam0, authors_scaling=p.authors_scaling)
rows, means = [], []
for task, logits_path, root in zip(p.eval_tasks, snakemake.input.logits, snakemake.input.test):
    cached, meta = load_tensors(logits_path)
    start = time.perf_counter()
    coef = expert_coefficients([cached[t] for t in p.tasks])  # the pool's experts only
    assigned, info = cluster_coefficients(coef.numpy(), p.n_components, p.seed, **p.mixture)
    data = datasets.load_dataset(root, transform=models.preprocess(pool.encoder()))
    logits = evaluator.evaluate(pool, task, data, assigned)
    # the experts' logits were cached with the pool of all tasks: their share of the time is the pool's
    seconds = time.perf_counter() - start + float(meta["expert_seconds"]) * len(p.tasks) / len(meta["experts"].split(","))
    acc = float((logits.argmax(-1) == torch.as_tensor(data.labels)).double().mean() * 100)
    rows += [dict(method="dawin", dataset=task, metric="accuracy", value=acc),
             dict(method="dawin", dataset=task, metric="seconds", value=seconds)]
    means += [dict(task=task, expert=t, coefficient=float(c)) for t, c in zip(p.tasks, coef.mean(0).numpy())]
    log.info("DaWin on %s: accuracy %.2f, %d cluster(s), mean coefficients %s", task, acc, info["n_components"],
             np.round(coef.mean(0).numpy(), 3))
total = sum(r["value"] for r in rows if r["metric"] == "seconds")
rows = [r for r in rows if r["metric"] != "seconds"] + [dict(method="dawin", dataset="all", metric="eval_seconds", value=total)]
pd.DataFrame(rows).assign(suite=p.suite, pool=pool_name).to_csv(snakemake.output.metrics, index=False, float_format="%.6g")
pd.DataFrame(means).to_csv(snakemake.output.coefficients, index=False, float_format="%.6g")
