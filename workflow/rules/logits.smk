# Cached logits per (backbone, model, dataset), one job per (backbone, model) that loads the model once and
# caches every dataset it is evaluated on: the interpolated pair and their weight average on every evaluation
# set, the soups on the test sets. Each file records the checkpoint's sha256.

for _name, _models, _datasets in [("cache_logits", [*MODELS, "average"], EVAL_SETS), ("cache_soup_logits", SOUPS, TEST_SETS)]:

    rule:
        name:
            _name
        output:
            [update(logits_file("{backbone}", "{model}", d)) for d in _datasets],
        input:
            code=code_of("cache_logits.py"),
            models=model_inputs,
            data=[DS["roots"][d] for d in _datasets],
            pixels=lambda wc, _datasets=_datasets: pixels_files(wc.backbone, [DS["roots"][d] for d in _datasets]),
        params:
            **EVAL_PARAMS,
            datasets=_datasets,
        wildcard_constraints:
            model="|".join(_models),
        resources:
            gpu=1,
        log:
            f"{RESULTS}/logs/cache_logits/{{backbone}}/{{model}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/cache_logits/{{backbone}}/{{model}}.tsv"
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/cache_logits.py"
