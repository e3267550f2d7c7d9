from dawin.demo.tasks import write_task_dataset
from dawin.runtime import start_job

log = start_job(snakemake)
p = snakemake.params
for (task, split), root in zip(p.splits, snakemake.output):
    write_task_dataset(root, task, split, p.n[split], p.seed)
    log.info("wrote %d %s images of task %s", p.n[split], split, task)
