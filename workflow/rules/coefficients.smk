# Per-sample interpolation coefficients of each test domain (Eq. 2 by default, Eq. 1 without offset).


rule coefficients:
    output:
        f"{RESULTS}/coefficients/{{backbone}}/{{dataset}}.safetensors",
    input:
        code=src("coefficients.py", "expertise.py"),
        logits=lambda wc: [logits_file(wc.backbone, m, wc.dataset) for m in MODELS],
        temperatures=f"{RESULTS}/calibration/{{backbone}}.json",
    params:
        offset_adjustment=config["coefficients"]["offset_adjustment"],
    log:
        f"{RESULTS}/logs/coefficients/{{backbone}}/{{dataset}}.log",
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/coefficients.py"
