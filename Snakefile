# DaWin: training-free dynamic weight interpolation, as a Snakemake workflow.
# `snakemake` builds everything of the configured suite; `snakemake table2` / `fig4` build one target.
from snakemake.utils import min_version, validate

min_version("9.0")


# The demo suite is the default; `--configfile config/paper.yaml` replaces it instead of merging into it.
if not config:

    configfile: "config/config.yaml"



validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/paper.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/logits.smk"
include: "workflow/rules/calibration.smk"
include: "workflow/rules/coefficients.smk"
include: "workflow/rules/mixtures.smk"
include: "workflow/rules/merged_eval.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"


rule table2:
    input:
        expand(f"{RESULTS}/tables/table2.{{ext}}", ext=["csv", "md", "tex", "html"]),


rule fig4:
    input:
        expand(f"{RESULTS}/figures/fig4.{{ext}}", ext=["png", "pdf"]),


rule all:
    default_target: True
    input:
        rules.table2.input,
        rules.fig4.input,


check_checkpoints()
