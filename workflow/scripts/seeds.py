import os
from pathlib import Path

from dawin.demo.seeds import PREMISES, markdown, run_seed, spread
from dawin.report import premises
from dawin.runtime import start_job

log = start_job(snakemake)
p = snakemake.params
tables = {}
for seed in p.seeds:
    log.info("the demo under seed %d", seed)
    seed_log = Path(snakemake.log[0]).with_suffix(f".seed{seed}.log")  # each nested run's Snakemake output
    tables[seed] = run_seed(p.config, seed, p.snakefile, os.getcwd(), snakemake.threads, seed_log)
summary = spread(tables)
summary.to_csv(snakemake.output.csv, index=False, float_format="%.6g")
checks = {seed: premises.read(paths[PREMISES]) for seed, paths in tables.items()}  # every check under each seed
premises.seed_rows(checks).to_csv(snakemake.output.premises, index=False, float_format="%.4f")
with open(snakemake.output.md, "w") as f:
    f.write(markdown(summary, p.seeds) + "\n" + premises.seed_markdown(checks, p.seeds))
log.info("spread of %d cells over seeds %s", len(summary), p.seeds)
