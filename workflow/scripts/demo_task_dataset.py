from dawin.demo.tasks import write_task_dataset
from dawin.runtime import setup_logging

log = setup_logging(snakemake.log[0])
wc, p = snakemake.wildcards, snakemake.params
write_task_dataset(snakemake.output[0], wc.task, wc.split, p.n, p.seed)
log.info("wrote %d %s images of task %s", p.n, wc.split, wc.task)
