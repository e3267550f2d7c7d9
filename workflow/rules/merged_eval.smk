# Merged-model evaluation: clustered (one merged model per mixture component) and per sample.



rule merged_eval:
    output:
        f"{RESULTS}/merged/{{backbone}}/{{mode}}/{{dataset}}.safetensors",
    input:
        code=src("evaluation.py", "weights.py", "models.py"),
        model0=lambda wc: model_file(wc.backbone, "zeroshot"),
        model1=lambda wc: model_file(wc.backbone, "finetuned"),
        data=dataset_dir,
        coefficients=merge_coefficients,
    params:
        **EVAL_PARAMS,
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/merged_eval/{{backbone}}/{{mode}}/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/merged_eval/{{backbone}}/{{mode}}/{{dataset}}.tsv"
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/merged_eval.py"
