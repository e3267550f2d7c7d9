# Merged-model evaluation of one coefficient variant (kind, assignment) on every test set: the
# assignment (e.g. the Beta mixture) turns a domain's coefficients into the merged models' ones, and
# each distinct coefficient's merged model is materialised once (per sample for `per_sample`).


rule merged_eval:
    output:
        [merged_file("{backbone}", "{kind}", "{assignment}", d) for d in TEST_SETS],
        assignment=f"{RESULTS}/merged/{{backbone}}/{{kind}}/{{assignment}}/assignment.json",
    input:
        code=code_of("merged_eval.py"),
        model0=lambda wc: model_file(wc.backbone, "zeroshot"),
        model1=lambda wc: model_file(wc.backbone, "finetuned"),
        data=[DS["roots"][d] for d in TEST_SETS],
        coefficients=lambda wc: coefficients_file(wc.backbone, wc.kind),
    params:
        datasets=TEST_SETS,
        mixture=mixture_params,
        seed=config["seed"],
        **EVAL_PARAMS,
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/merged_eval/{{backbone}}/{{kind}}/{{assignment}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/merged_eval/{{backbone}}/{{kind}}/{{assignment}}.tsv"
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/merged_eval.py"
