# One page with every table beside the paper's numbers (and our difference, for the paper suite).


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
    params:
        names=[*ROBUST_TABLES, *MULTITASK_TABLES],
        suite=SUITE,
        roles={t: (config["multitask"] if t in MULTITASK_TABLES else DS).get("reference_columns", {})
               for t in [*ROBUST_TABLES, *MULTITASK_TABLES]},
        pools=config.get("multitask", {}).get("pools", {}),
        batch_sizes=ANALYSIS["batch_sizes"],
    log:
        f"{RESULTS}/logs/reproduction.log",
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/reproduction.py"


rule reproduction:
    input:
        rules.reproduction_files.output,
