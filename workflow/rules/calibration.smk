# Temperature scaling of each model on the ID held-out split.


rule temperatures:
    output:
        f"{RESULTS}/calibration/{{backbone}}.json",
    input:
        code=code_of("temperatures.py"),
        logits=lambda wc: [logits_file(wc.backbone, m, id_val(wc.backbone)) for m in MODELS],
    params:
        models=MODELS,
    log:
        f"{RESULTS}/logs/temperatures/{{backbone}}.log",
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/temperatures.py"
