import pandas as pd

from dawin.report import premises
from dawin.report.results import pool_correctness
from dawin.runtime import start_job

log = start_job(snakemake)
p, i = snakemake.params, snakemake.input
multitask = i.get("multitask")  # none when the suite has no multi-task part
rows = premises.premise_rows(pd.read_csv(i.robust), pd.read_csv(multitask) if multitask else None,
                             backbone=p.backbone, id_dataset=p.id_dataset,
                             coefficients=pd.read_csv(i.coefficients) if multitask else None,
                             correct=pool_correctness([i.correct])["all"] if multitask else None, lam=p.lam)
premises.write(rows, snakemake.output[0])
log.info("\n%s", premises.printed(rows).to_string())
