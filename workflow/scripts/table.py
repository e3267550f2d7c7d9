from dawin.catalog import MULTITASK
from dawin.report import paper_tables
from dawin.report.reference import load_reference, load_second_reference
from dawin.report.results import collect, correctness, pool_correctness
from dawin.runtime import start_job

log = start_job(snakemake)
p = snakemake.params
results = collect(snakemake.input.metrics, snakemake.input.merged, p.suite, p.ood)
# per-sample correctness: the intervals (the multi-task tables' per model pool)
files = snakemake.input.get("correct", [])
correct = pool_correctness(files) if p.name in MULTITASK else correctness(files, snakemake.input.merged)
results = paper_tables.with_derived(p.name, results, correct, ood=p.ood, suite=p.suite, backbones=p.backbones,
                                    grid_size=p.grid_size, soups=p.soups)
rows = paper_tables.select(p.name, results, p.backbones, p.batch_sizes)
second = snakemake.input.get("second_reference")  # model-soups' own numbers (paper suite, Table 2)
shown = paper_tables.display(p.name, rows, load_reference(snakemake.input.reference), p.roles,
                             compare=p.suite == "paper", batch_sizes=p.batch_sizes, pools=p.pools,
                             second=load_second_reference(second) if second else None, labels=p.labels)
heading = f"{p.source} ({p.suite} suite, {', '.join(p.backbones)}):"
paper_tables.write(p.name, rows, shown, snakemake.output[0].removesuffix(".csv"), heading)
log.info("\n%s", shown.to_string())
