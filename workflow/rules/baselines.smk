# WiSE-FT over the coefficient grid (plus the endpoints, for the trade-off curve) on every evaluation set.


rule wise_ft_sweep:
    output:
        f"{RESULTS}/wise_ft/{{backbone}}/{{dataset}}.csv",
    input:
        code=src("evaluation.py", "weights.py", "models.py"),
        model0=lambda wc: model_file(wc.backbone, "zeroshot"),
        model1=lambda wc: model_file(wc.backbone, "finetuned"),
        data=dataset_dir,
    params:
        alphas=sorted({0.0, 1.0, *config["grid"]}),
        **EVAL_PARAMS,
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/wise_ft_sweep/{{backbone}}/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/wise_ft_sweep/{{backbone}}/{{dataset}}.tsv"
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/wise_ft_sweep.py"


rule metrics:
    output:
        metrics=f"{RESULTS}/metrics/{{backbone}}.csv",
        selection=f"{RESULTS}/metrics/{{backbone}}.selection.json",
    input:
        code=src("baselines.py", "tables.py"),
        logits=lambda wc: [logits_file(wc.backbone, m, d) for m in MODELS for d in EVAL_SETS],
        temperatures=f"{RESULTS}/calibration/{{backbone}}.json",
        sweeps=lambda wc: [f"{RESULTS}/wise_ft/{wc.backbone}/{d}.csv" for d in EVAL_SETS],
        merged=lambda wc: [f"{RESULTS}/merged/{wc.backbone}/{m}/{d}.safetensors" for m in MERGE_MODES for d in TEST_SETS],
    params:
        suite=SUITE,
        id_val=DS["id_val"],
        test_sets=TEST_SETS,
        ood=DS["ood"],
        grid=config["grid"],
    log:
        f"{RESULTS}/logs/metrics/{{backbone}}.log",
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/metrics.py"
