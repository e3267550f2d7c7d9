# WiSE-FT over the sweep (0, the coefficient grid, the fine grid, 1) on every evaluation set, soups and
# Model Stock, and the per-backbone metrics of the static and dynamic baselines.


rule wise_ft_sweep:
    output:
        csv=f"{RESULTS}/wise_ft/{{backbone}}/{{dataset}}.csv",
        samples=f"{RESULTS}/wise_ft/{{backbone}}/{{dataset}}.safetensors",
    input:
        code=code_of("wise_ft_sweep.py"),
        model0=lambda wc: model_file(wc.backbone, "zeroshot"),
        model1=lambda wc: model_file(wc.backbone, "finetuned"),
        data=dataset_dir,
        pixels=lambda wc: pixels_files(wc.backbone, [dataset_dir(wc)]),
    params:
        alphas=SWEEP,
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


rule soup:
    output:
        f"{RESULTS}/models/{{backbone}}/{{soup}}.safetensors",
    input:
        unpack(soup_inputs),
        code=code_of("soup.py"),
    params:
        **EVAL_PARAMS,
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/soup/{{backbone}}/{{soup}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/soup/{{backbone}}/{{soup}}.tsv"
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/soup.py"


rule metrics:
    output:
        metrics=f"{RESULTS}/metrics/{{backbone}}.csv",
        correct=f"{RESULTS}/metrics/{{backbone}}.correct.safetensors",  # per sample: the tables' intervals
        selection=f"{RESULTS}/metrics/{{backbone}}.selection.json",
    input:
        unpack(metrics_inputs),
        code=code_of("metrics.py"),
    params:
        suite=SUITE,
        id_val=lambda wc: id_val(wc.backbone),
        test_sets=TEST_SETS,
        ood=DS["ood"],
        grid=config["grid"],
    log:
        f"{RESULTS}/logs/metrics/{{backbone}}.log",
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/metrics.py"


rule soup_metrics:
    output:
        metrics=f"{RESULTS}/metrics/{{backbone}}/soups.csv",
        correct=f"{RESULTS}/metrics/{{backbone}}/soups.correct.safetensors",
    input:
        code=code_of("soup_metrics.py"),
        logits=lambda wc: [logits_file(wc.backbone, s, d) for s in SOUPS for d in TEST_SETS],
    params:
        suite=SUITE,
        ood=DS["ood"],
    log:
        f"{RESULTS}/logs/soup_metrics/{{backbone}}.log",
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/soup_metrics.py"
