# Paper tables from the tidy per-backbone metrics.


rule table2_files:
    output:
        report(
            multiext(f"{RESULTS}/tables/table2", ".csv", ".md", ".tex", ".html"),
            category="Tables",
            caption="../report/table2.rst",
        ),
    input:
        code=src("tables.py"),
        metrics=f"{RESULTS}/metrics/{config['targets']['table2']}.csv",
    params:
        datasets=[DS["id_test"], *DS["ood"], "ood_avg"],
    log:
        f"{RESULTS}/logs/table2.log",
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/table2.py"
