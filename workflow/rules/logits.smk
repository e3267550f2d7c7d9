# Cached logits per (backbone, model, dataset); the file records the checkpoint's sha256.


rule cache_logits:
    output:
        logits_file("{backbone}", "{model}", "{dataset}"),
    input:
        code=code_of("cache_logits.py"),
        models=model_inputs,
        data=dataset_dir,
    params:
        **EVAL_PARAMS,
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/cache_logits/{{backbone}}/{{model}}/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cache_logits/{{backbone}}/{{model}}/{{dataset}}.tsv"
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/cache_logits.py"
