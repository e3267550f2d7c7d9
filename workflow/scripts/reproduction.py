import pandas as pd

from dawin.report import paper_tables, premises
from dawin.report.reference import load_reference, write_summary
from dawin.runtime import start_job

log = start_job(snakemake)
p = snakemake.params
reference = load_reference(snakemake.input.reference)
shown = {name: paper_tables.display(name, pd.read_csv(path), reference, p.roles[name], compare=p.suite == "paper",
                                    batch_sizes=p.batch_sizes, pools=p.pools, labels=p.labels)
         for name, path in zip(p.names, snakemake.input.tables)}
write_summary(shown, snakemake.output[0].removesuffix(".md"), premises.printed(premises.read(snakemake.input.premises)))
log.info("%d tables summarised", len(shown))
