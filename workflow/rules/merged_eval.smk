# Merged-model evaluations, one job per (backbone, group of coefficient variants; dawin.registry.merged_groups):
# the job loads the pair of models once and, for every (kind, assignment) of its group and every test set,
# turns the domain's coefficients into the merged models' ones (e.g. by the Beta mixture) and evaluates each
# distinct coefficient's merged model once (per sample for `per_sample`).

MERGED_GROUPS = registry.merged_groups(batch_sizes=ANALYSIS["batch_sizes"], grid=config["grid"])


def coefficient_files(kinds):
    return lambda wc: [coefficients_file(wc.backbone, k) for k in kinds]


def mixture_params(pairs):
    """The Beta mixture's settings, for a group with a mixture assignment (a per-sample group does not depend on them)."""
    if all(a == "per_sample" for _, a in pairs):
        return {}
    return lambda wc: {"n_components": backbone_cfg(wc)["n_components"], **MIXTURE}


def merged_group_outputs(pairs):
    files = [merged_file("{backbone}", k, a, d) for k, a in pairs for d in TEST_SETS]
    return files + [f"{RESULTS}/merged/{{backbone}}/{k}/{a}/assignment.json" for k, a in pairs]


for _group, _pairs in MERGED_GROUPS.items():

    rule:
        name:
            f"merged_{_group}"
        output:
            merged_group_outputs(_pairs),
        input:
            code=code_of("merged_eval.py"),
            model0=lambda wc: model_file(wc.backbone, "zeroshot"),
            model1=lambda wc: model_file(wc.backbone, "finetuned"),
            data=[DS["roots"][d] for d in TEST_SETS],
            pixels=lambda wc: pixels_files(wc.backbone, [DS["roots"][d] for d in TEST_SETS]),
            coefficients=coefficient_files(sorted({k for k, _ in _pairs})),
        params:
            pairs=_pairs,
            datasets=TEST_SETS,
            mixture=mixture_params(_pairs),
            seed=MIXTURE_SEED,
            per_sample=config["evaluation"]["per_sample"],
            **EVAL_PARAMS,
        resources:
            gpu=1,
        log:
            f"{RESULTS}/logs/merged_eval/{{backbone}}/{_group}.log",
        benchmark:
            f"{RESULTS}/benchmarks/merged_eval/{{backbone}}/{_group}.tsv"
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/merged_eval.py"
