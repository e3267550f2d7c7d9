# Multi-task merging (Table 6, Table G, Figures 7, 8 and G): every method of dawin.merging and DaWin
# with the Dirichlet mixture, on the configured pool of task experts (demo: dawin.demo.tasks).
if "multitask" in config:

    wildcard_constraints:
        task="|".join(MT_TASKS),
        pool="|".join(re.escape(p) for p in POOLS if p != "all"),  # Table G's pools (multitask_pool)

    if "paper" in config:

        # The paper tasks' train splits (Fisher / RegMean examples, as FusionBench): the same source as the
        # test set, split "train" (dawin.inputs.multitask_datasets.prepare_task); config multitask.tasks.<task>.train.
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
            pixels=pixels_files(MT["backbone"], [MT["tasks"][t]["test"] for t in MT_TASKS]),
        params:
            tasks=MT_TASKS,
            **EVAL_PARAMS,
        priority: 10  # the head of the multi-task chain: see multitask_all
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

    # One job per pool: the pool loaded once, every method of the pool merged and evaluated in turn (each one's
    # merge and evaluation seconds timed in the job), then DaWin from the cached experts' logits. Pool `all`
    # runs Table 6's methods, Table G's pools `pool_methods`.
    for _name, _pool, _methods in [("multitask_all", "all", MT_ALL_METHODS),
                                   ("multitask_pool", "{pool}", MT["pool_methods"] if MT.get("pools") else [])]:
        if not _methods:
            continue

        rule:
            name:
                _name
            output:
                methods=[f"{RESULTS}/multitask/{_pool}/{m}.csv" for m in _methods],
                dawin=f"{RESULTS}/multitask/{_pool}/dawin.csv",
                coefficients=f"{RESULTS}/multitask/{_pool}/dawin_coefficients.csv",
                # every method's per-sample correctness on each task (keys <method>/<task>): the tables' intervals
                correct=f"{RESULTS}/multitask/{_pool}/correct.safetensors",
                record=f"{RESULTS}/multitask/{_pool}/provenance.json",  # the checkpoints and datasets the CSVs come from
            input:
                unpack(pool_inputs(_pool, _methods)),
                code=code_of("multitask_pool.py"),
            params:
                suite=SUITE,
                backbone=MT["backbone"],
                pool=lambda wc, _pool=_pool: wc.get("pool", _pool),
                methods=_methods,
                tasks=lambda wc, _pool=_pool: POOLS[wc.get("pool", _pool)],
                eval_tasks=lambda wc, _pool=_pool: pool_eval_tasks(wc.get("pool", _pool)),
                options={m: MT["methods"].get(m, {}) for m in _methods},
                grid=MT["task_arithmetic_grid"] if registry.GRID_SEARCH in _methods else [],
                dawin=MT["dawin"],
                mixture=MIXTURE,
                seed=config["seed"],
                **EVAL_PARAMS,
            # the longest single jobs of a run (every method on every task): started as soon as they can run, not
            # last, where they would keep one core busy while the other idles
            priority: 10
            resources:
                gpu=1,
            log:
                f"{RESULTS}/logs/multitask/{_pool}.log",
            benchmark:
                f"{RESULTS}/benchmarks/multitask/{_pool}.tsv"
            conda:
                "../../envs/dawin.yaml"
            script:
                "../scripts/multitask_pool.py"

    rule multitask_metrics:
        output:
            metrics=f"{RESULTS}/multitask/metrics.csv",
            # the individuals' per-sample correctness (each expert on its own task), as the pools' correct files
            correct=f"{RESULTS}/multitask/individual.correct.safetensors",
        input:
            code=code_of("multitask_metrics.py"),
            logits=[f"{RESULTS}/multitask/logits/{t}.safetensors" for t in MT_TASKS],
            methods=[f"{RESULTS}/multitask/all/{m}.csv" for m in MT_ALL_METHODS],
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
            # the paper suite's FID panel needs the Inception-V3 weights paper_inputs fetches; the demo uses them
            # from the torch hub cache where they are, and skips the panel (saying so) where not
            inception=[INCEPTION] if "paper" in config else [],
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
