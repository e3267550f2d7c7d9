# Multi-task merging (Table 6, Table G, Figures 7, 8 and G): every method of dawin.merging and DaWin
# with the Dirichlet mixture, on the configured pool of task experts (demo: dawin.demo.tasks).
if "multitask" in config:

    wildcard_constraints:
        task="|".join(MT_TASKS),
        pool="|".join(map(re.escape, POOLS)),
        method="|".join(["pretrained", *MT["methods"], "task_arithmetic_grid"]),

    if "paper" in config:

        # The paper tasks' train splits (Fisher / RegMean examples, as FusionBench): the same source as the
        # test set, split "train" (dawin.multitask_datasets.prepare_task); config multitask.tasks.<task>.train.
        # It downloads, so it runs where snakemake runs (the login node under SLURM).
        localrules:
            multitask_train_split,

        rule multitask_train_split:
            output:
                directory(f"{PRES}/data/{{task}}_train"),
            input:
                code_of("paper_dataset.py"),
            params:
                builder=train_split_builder,
                split="train",
                downloads=f"{PRES}/downloads",
                expected=lambda wc: expected_size(f"{wc.task}_train"),
                **MT_FETCH,
            log:
                f"{PRES}/logs/multitask_train_split/{{task}}.log",
            conda:
                "../../envs/dawin.yaml"
            script:
                "../scripts/paper_dataset.py"

    # every expert's and the pre-trained tower's logits on every task's test set: one job, the pool loaded once
    rule multitask_logits:
        output:
            [f"{RESULTS}/multitask/logits/{t}.safetensors" for t in MT_TASKS],
        input:
            code=code_of("multitask_logits.py"),
            pretrained=MT_PRETRAINED,
            experts=[MT["tasks"][t]["expert"] for t in MT_TASKS],
            data=[MT["tasks"][t]["test"] for t in MT_TASKS],
        params:
            tasks=MT_TASKS,
            **EVAL_PARAMS,
        resources:
            gpu=1,
        log:
            f"{RESULTS}/logs/multitask_logits.log",
        benchmark:
            f"{RESULTS}/benchmarks/multitask_logits.tsv"
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/multitask_logits.py"

    rule multitask_merge:
        output:
            f"{RESULTS}/multitask/{{pool}}/{{method}}.csv",
        input:
            unpack(method_inputs),
            code=code_of("multitask_merge.py"),
        params:
            suite=SUITE,
            tasks=lambda wc: POOLS[wc.pool],
            eval_tasks=lambda wc: pool_eval_tasks(wc.pool),
            options=lambda wc: MT["methods"].get(wc.method, {}),
            grid=MT["task_arithmetic_grid"],
            seed=config["seed"],
            **EVAL_PARAMS,
        resources:
            gpu=1,
        log:
            f"{RESULTS}/logs/multitask_merge/{{pool}}/{{method}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/multitask_merge/{{pool}}/{{method}}.tsv"
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/multitask_merge.py"

    rule multitask_dawin:
        output:
            metrics=f"{RESULTS}/multitask/{{pool}}/dawin.csv",
            coefficients=f"{RESULTS}/multitask/{{pool}}/dawin_coefficients.csv",
        input:
            code=code_of("multitask_dawin.py"),
            pretrained=MT_PRETRAINED,
            experts=lambda wc: list(task_files(POOLS[wc.pool], "expert").values()),
            logits=lambda wc: [f"{RESULTS}/multitask/logits/{t}.safetensors" for t in pool_eval_tasks(wc.pool)],
            test=lambda wc: list(task_files(pool_eval_tasks(wc.pool), "test").values()),
        params:
            suite=SUITE,
            tasks=lambda wc: POOLS[wc.pool],
            eval_tasks=lambda wc: pool_eval_tasks(wc.pool),
            mixture=config["mixture"],
            seed=config["seed"],
            **MT["dawin"],
            **EVAL_PARAMS,
        resources:
            gpu=1,
        log:
            f"{RESULTS}/logs/multitask_dawin/{{pool}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/multitask_dawin/{{pool}}.tsv"
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/multitask_dawin.py"

    rule multitask_metrics:
        output:
            f"{RESULTS}/multitask/metrics.csv",
        input:
            code=code_of("multitask_metrics.py"),
            logits=[f"{RESULTS}/multitask/logits/{t}.safetensors" for t in MT_TASKS],
            methods=[f"{RESULTS}/multitask/all/{m}.csv" for m in ["pretrained", *MT["methods"], "task_arithmetic_grid"]],
            dawin=f"{RESULTS}/multitask/all/dawin.csv",
            pools=[f"{RESULTS}/multitask/{p}/{m}.csv" for p in MT["pools"] for m in [*MT["pool_methods"], "dawin"]],
        params:
            suite=SUITE,
            backbone=MT["backbone"],
            tasks=MT_TASKS,
        log:
            f"{RESULTS}/logs/multitask_metrics.log",
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/multitask_metrics.py"

    rule multitask_distances:
        output:
            f"{RESULTS}/multitask/distances.csv",
        input:
            code=code_of("multitask_distances.py"),
            pretrained=MT_PRETRAINED,
            test=[MT["tasks"][t]["test"] for t in MT_TASKS],
        params:
            tasks=MT_TASKS,
            n_examples=MT["n_examples"],
            seed=config["seed"],
            **EVAL_PARAMS,
        resources:
            gpu=1,
        log:
            f"{RESULTS}/logs/multitask_distances.log",
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/multitask_distances.py"
