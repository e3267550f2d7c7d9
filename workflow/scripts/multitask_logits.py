import time

import torch

from dawin.inputs import pixels
from dawin.inference.logits import compute_logits
from dawin.merging.dawin_multitask import expert_logits
from dawin.merging.multitask import load_pool
from dawin import identity, provenance
from dawin.runtime import start_job
from dawin.tensorio import save_tensors

log = start_job(snakemake)
p = snakemake.params
pool = load_pool(snakemake.input.pretrained, dict(zip(p.tasks, snakemake.input.experts)))
decoded = pixels.by_root(snakemake.input.data, snakemake.input.pixels)
sources = {f: provenance.file_sha256(f) for f in [snakemake.input.pretrained, *snakemake.input.experts]}
kw = dict(batch_size=p.batch_size, num_workers=p.num_workers, use_autocast=p.autocast)
for task, root, output in zip(p.tasks, snakemake.input.data, snakemake.output):
    data = pixels.open_dataset(root, pool.encoder(), decoded)
    start = time.perf_counter()
    experts = expert_logits(pool, task, data, **kw)  # expert j's tower through this task's head, in pool order
    seconds = time.perf_counter() - start
    pretrained, labels = compute_logits(pool.classifier(task), data, desc=f"pretrained on {task}", **kw)
    save_tensors(output, {**dict(zip(p.tasks, experts)), "pretrained": pretrained, "labels": labels},
                 {"task": task, "experts": ",".join(p.tasks), "expert_seconds": f"{seconds:.6f}",
                  **provenance.record(sources, [root]), **identity.stamp(**identity.of_dataset(data, task))})
    for t, z in zip(p.tasks, experts):
        log.info("expert %s on %s: accuracy %.2f", t, task, float((z.argmax(-1) == labels).double().mean() * 100))
