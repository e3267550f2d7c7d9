# DaWin: training-free dynamic weight interpolation, as a Snakemake workflow.
# `snakemake` builds every table and figure of the configured suite; `snakemake table2`, `fig4`, ... one
# of them; `tables`, `figures` and `reproduction` (the paper's numbers beside ours) the aggregates.
from snakemake.utils import min_version

min_version("9.0")


# The demo suite is the default; `--configfile config/paper.yaml` replaces it instead of merging into it.
if not config:

    configfile: "config/config.yaml"


# common.smk validates it (workflow/schemas/config.schema.yaml, with the registries' names: dawin.schema)
include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/paper.smk"
include: "workflow/rules/pixels.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/logits.smk"
include: "workflow/rules/calibration.smk"
include: "workflow/rules/coefficients.smk"
include: "workflow/rules/merged_eval.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/multitask.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/reproduction.smk"


# One named target per table and figure of the paper: `snakemake table1`, `snakemake fig_b`, ...
for _target, _ext in [*((t, ["csv", "md", "tex", "html"]) for t in [*ROBUST_TABLES, *MULTITASK_TABLES]),
                      *((f, ["png", "pdf"]) for f in [*ROBUST_FIGURES, *MULTITASK_FIGURES])]:

    rule:
        name:
            _target
        input:
            expand(f"{RESULTS}/{{tree}}/{_target}.{{ext}}", tree="tables" if _target.startswith("table") else "figures",
                   ext=_ext),


rule tables:
    input:
        [getattr(rules, t).input for t in [*ROBUST_TABLES, *MULTITASK_TABLES]],


rule figures:
    input:
        [getattr(rules, f).input for f in [*ROBUST_FIGURES, *MULTITASK_FIGURES]],


rule all:
    default_target: True
    input:
        rules.tables.input,
        rules.figures.input,
        rules.reproduction_files.output,


check_inputs_exist()


# A bare word that names no rule (`snakemake tabel2`) would end in "No rule to produce tabel2": it lands here, and the
# error names the closest target rules. Every file of this workflow has a folder or an extension, so none matches.
rule unknown_target:
    output:
        "{word}",
    wildcard_constraints:
        word=r"[A-Za-z0-9_-]+",
    input:
        unknown_target,
