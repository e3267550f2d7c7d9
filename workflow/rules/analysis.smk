# Analyses beyond accuracy: Table C's per-sample optimal coefficients and Table F's measured costs.


rule optimality:
    output:
        f"{RESULTS}/analysis/{{backbone}}/optimality.csv",
    input:
        code=code_of("optimality.py"),
        sweeps=lambda wc: sweep_files(wc.backbone, TEST_SETS),
        oracle=lambda wc: coefficients_file(wc.backbone, "cross_entropy"),
        selection=f"{RESULTS}/metrics/{{backbone}}.selection.json",
    params:
        suite=SUITE,
        datasets=TEST_SETS,
        fine_grid=ANALYSIS["fine_grid"],
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/optimality/{{backbone}}.log",
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/optimality.py"


rule profile:
    output:
        f"{RESULTS}/profile/{{backbone}}.csv",
    input:
        code=code_of("profile.py"),
        model0=lambda wc: model_file(wc.backbone, "zeroshot"),
        model1=lambda wc: model_file(wc.backbone, "finetuned"),
        data=DS["roots"][DS["id_test"]],
        pixels=lambda wc: pixels_files(wc.backbone, [DS["roots"][DS["id_test"]]]),
        temperatures=f"{RESULTS}/calibration/{{backbone}}.json",
    params:
        suite=SUITE,
        dataset=DS["id_test"],
        grid=config["grid"],
        n_components=lambda wc: backbone_cfg(wc)["n_components"],
        seed=config["seed"],
        **ANALYSIS["profile"],
        **EVAL_PARAMS,
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/profile/{{backbone}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/profile/{{backbone}}.tsv"
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/profile.py"
