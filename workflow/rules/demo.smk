# The embedded demo suite: synthetic datasets and the tiny CLIP's pre-training and fine-tuning.
# Only active when the config has a `demo` section; the paper suite gets these files elsewhere.
# The training rules take both cores (`threads: 2`: the demo's bytes depend on the thread count) and go first when
# ready (`priority`): behind a one-core job they would leave the other core idle for its whole run.
if "demo" in config:
    DEMO = config["demo"]

    rule demo_dataset:
        output:
            directory(f"{DEMO['resources']}/data/{{dataset}}"),
        params:
            spec=lambda wc: DEMO["datasets"][wc.dataset],
            seed=config["seed"],
        log:
            f"{DEMO['resources']}/logs/demo_dataset/{{dataset}}.log",
        input:
            code_of("demo_dataset.py"),
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/demo_dataset.py"

    rule demo_pretrain:
        output:
            update(f"{DEMO['resources']}/checkpoints/{{backbone}}/clip.safetensors"),
        input:
            code_of("demo_pretrain.py"),
        params:
            architecture=lambda wc: config["backbones"][wc.backbone]["architecture"],
            train=DEMO["pretrain"],
            seed=config["seed"],
        threads: 2
        priority: 50
        resources:
            mem_mb=3000,
        log:
            f"{DEMO['resources']}/logs/demo_pretrain/{{backbone}}.log",
        benchmark:
            f"{DEMO['resources']}/benchmarks/demo_pretrain/{{backbone}}.tsv"
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/demo_pretrain.py"

    rule demo_finetune:
        output:
            update(f"{DEMO['resources']}/checkpoints/{{backbone}}/{{run}}.safetensors"),
        input:
            code=code_of("demo_finetune.py"),
            zeroshot=f"{RESULTS}/models/{{backbone}}/zeroshot.safetensors",
            data=DS["roots"].get(DEMO["train_dataset"], f"{DEMO['resources']}/data/{DEMO['train_dataset']}"),
        wildcard_constraints:
            run="finetuned|runs/[A-Za-z0-9_-]+",
        params:
            train=lambda wc: finetune_run(wc),
        threads: 2
        priority: 50
        resources:
            mem_mb=3000,
        log:
            f"{DEMO['resources']}/logs/demo_finetune/{{backbone}}/{{run}}.log",
        benchmark:
            f"{DEMO['resources']}/benchmarks/demo_finetune/{{backbone}}/{{run}}.tsv"
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/demo_finetune.py"

    if "multitask" in DEMO:

        # the train and test splits of the eight tasks (dawin.demo.tasks), in one job: each takes a second
        DEMO_TASK_SPLITS = [(t, s) for t in MT_TASKS for s in ("train", "test")]

        rule demo_task_dataset:
            output:
                [directory(f"{DEMO['resources']}/data/mt_{t}_{s}") for t, s in DEMO_TASK_SPLITS],
            input:
                code_of("demo_task_dataset.py"),
            params:
                splits=DEMO_TASK_SPLITS,
                n={s: DEMO["multitask"][f"n_{s}"] for s in ("train", "test")},
                seed=config["seed"],
            log:
                f"{DEMO['resources']}/logs/demo_task_dataset.log",
            conda:
                "../../envs/dawin.yaml"
            script:
                "../scripts/demo_task_dataset.py"

        # The multi-task backbone (multitask.backbone, a small ViT of its own): pre-trained contrastively on captioned
        # composites that name every factor the eight tasks ask about (dawin.demo.tasks.captioned)
        MT_CHECKPOINTS = f"{DEMO['resources']}/checkpoints/{MT['backbone']}"

        rule demo_task_pretrain:
            output:
                update(f"{MT_CHECKPOINTS}/clip.safetensors"),
            input:
                code_of("demo_task_pretrain.py"),
            params:
                architecture=architecture_of(MT["backbone"]),
                train=DEMO["multitask"]["pretrain"],
                seed=config["seed"],
            threads: 2
            priority: 50
            resources:
                mem_mb=3000,
            log:
                f"{DEMO['resources']}/logs/demo_task_pretrain.log",
            benchmark:
                f"{DEMO['resources']}/benchmarks/demo_task_pretrain.tsv"
            conda:
                "../../envs/dawin.yaml"
            script:
                "../scripts/demo_task_pretrain.py"

        # theta0 as a classifier file (the tower; its head only completes the file, as task_vectors' zeroshot.pt in
        # the paper suite) and every task's expert, in one job (start-up costs as much as an expert's training)
        rule demo_task_experts:
            output:
                pretrained=update(f"{MT_CHECKPOINTS}/zeroshot.safetensors"),
                experts=[update(f"{MT_CHECKPOINTS}/experts/{t}.safetensors") for t in MT_TASKS],
            input:
                code=code_of("demo_task_experts.py"),
                clip=f"{MT_CHECKPOINTS}/clip.safetensors",
                data=[f"{DEMO['resources']}/data/mt_{t}_train" for t in MT_TASKS],
            params:
                tasks=MT_TASKS,
                architecture=architecture_of(MT["backbone"]),
                train=DEMO["multitask"]["finetune"],
                seed=config["seed"],
            threads: 2
            priority: 50
            log:
                f"{DEMO['resources']}/logs/demo_task_experts.log",
            benchmark:
                f"{DEMO['resources']}/benchmarks/demo_task_experts.tsv"
            conda:
                "../../envs/dawin.yaml"
            script:
                "../scripts/demo_task_experts.py"

    if DEMO.get("seeds"):

        # Tables 2 and 6 of the demo under every seed of `demo.seeds`, each run in folders of its own (a nested
        # Snakemake run per seed), summarised per cell (dawin.demo.seeds). Not part of `all`: it trains everything
        # once per seed.
        rule seeds:
            output:
                csv=f"{RESULTS}/seeds/spread.csv",
                md=f"{RESULTS}/seeds/spread.md",
                premises=f"{RESULTS}/seeds/premises.csv",  # every premise check under each seed (also in spread.md)
            input:
                code_of("seeds.py"),
            params:
                seeds=DEMO["seeds"],
                config=dict(config),
                snakefile=workflow.main_snakefile,
            threads: 2  # the nested runs' --cores (the demo's training takes 2); capped by this run's --cores
            log:
                f"{RESULTS}/logs/seeds.log",
            conda:
                "../../envs/dawin.yaml"
            script:
                "../scripts/seeds.py"
