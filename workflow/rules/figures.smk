# Paper figures, written with deterministic bytes.


rule fig4_files:
    output:
        report(
            multiext(f"{RESULTS}/figures/fig4", ".png", ".pdf"),
            category="Figures",
            caption="../report/fig4.rst",
        ),
    input:
        code=src("figures.py"),
        metrics=f"{RESULTS}/metrics/{config['targets']['fig4']}.csv",
        sweeps=[f"{RESULTS}/wise_ft/{config['targets']['fig4']}/{d}.csv" for d in TEST_SETS],
    params:
        id_test=DS["id_test"],
        ood=DS["ood"],
        backbone=config["targets"]["fig4"],
    log:
        f"{RESULTS}/logs/fig4.log",
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/fig4.py"
