import pandas as pd

from dawin import paper_tables
from dawin.reference import load_reference, load_second_reference
from dawin.results import collect, correctness, interval_rows, paired_rows
from dawin.runtime import setup_logging

log = setup_logging(snakemake.log[0])
p = snakemake.params
results = collect(snakemake.input.metrics, snakemake.input.merged, p.suite, p.ood)
correct = correctness(snakemake.input.get("correct", []), snakemake.input.merged)  # bootstrap intervals
extra = [interval_rows(correct, p.ood, p.suite)]
if p.name in paper_tables.PAIRED:
    method, others = paper_tables.PAIRED[p.name]
    extra.append(paired_rows(correct, method, others, p.ood, p.suite))
results = pd.concat([results, *extra], ignore_index=True)
if p.name == "table2":
    results = pd.concat([results, *(paper_tables.costs(results, b, p.suite, grid_size=p.grid_size, **p.soups[b])
                                    for b in p.backbones)], ignore_index=True)
rows = paper_tables.select(p.name, results, p.backbones, p.batch_sizes)
second = snakemake.input.get("second_reference")  # model-soups' own numbers (paper suite, Table 2)
shown = paper_tables.display(p.name, rows, load_reference(snakemake.input.reference), p.roles,
                             compare=p.suite == "paper", batch_sizes=p.batch_sizes, pools=p.pools,
                             second=load_second_reference(second) if second else None)
heading = f"{p.source} ({p.suite} suite, {', '.join(p.backbones)}):"
paper_tables.write(p.name, rows, shown, snakemake.output[0].removesuffix(".csv"), heading)
log.info("\n%s", shown.to_string())
