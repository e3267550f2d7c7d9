# One page with every table beside the paper's numbers (and our difference, for the paper suite), after the
# premise checks.

# The premises the paper's comparisons rest on, checked on our numbers (dawin.report.premises; its inputs:
# premise_inputs in common.smk).
rule premises_files:
    output:
        f"{RESULTS}/premises.csv",
    input:
        **premise_inputs(),
    params:
        backbone=PREMISE_BACKBONE,
        id_dataset=DS["id_test"],
        lam=MT.get("methods", {}).get("task_arithmetic", {}).get("lam"),  # the premise names it
    log:
        f"{RESULTS}/logs/premises.log",
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/premises.py"


rule premises:
    input:
        rules.premises_files.output,


rule reproduction_files:
    output:
        report(
            multiext(f"{RESULTS}/reproduction", ".md", ".html"),
            category="Reproduction",
            caption="../report/reproduction.rst",
        ),
    input:
        code=code_of("reproduction.py"),
        reference=REFERENCE,
        tables=[f"{RESULTS}/tables/{t}.csv" for t in [*ROBUST_TABLES, *MULTITASK_TABLES]],
        premises=rules.premises_files.output[0],
    params:
        names=[*ROBUST_TABLES, *MULTITASK_TABLES],
        suite=SUITE,
        roles={t: (config["multitask"] if t in MULTITASK_TABLES else DS).get("reference_columns", {})
               for t in [*ROBUST_TABLES, *MULTITASK_TABLES]},
        pools=config.get("multitask", {}).get("pools", {}),
        batch_sizes=ANALYSIS["batch_sizes"],
        labels=MERGING_LABELS,
    log:
        f"{RESULTS}/logs/reproduction.log",
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/reproduction.py"


rule reproduction:
    input:
        rules.reproduction_files.output,
