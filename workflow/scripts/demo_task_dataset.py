from dawin.demo.tasks import write_task_dataset
from dawin.runtime import setup_logging

log = setup_logging(snakemake.log[0])
p = snakemake.params
for (task, split), root in zip(p.splits, snakemake.output):
    write_task_dataset(root, task, split, p.n[split], p.seed)
    log.info("wrote %d %s images of task %s", p.n[split], split, task)
