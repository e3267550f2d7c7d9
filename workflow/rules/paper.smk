# The paper suite's inputs: dataset downloads / manual-copy verification, checkpoint fetch and conversion.
# Only active when the config has a `paper` section (config/paper.yaml). Every download is a localrule (under
# SLURM it runs where `snakemake` runs, the login node, which has internet); building datasets from the
# downloaded archives (multi-GB extraction) and converting checkpoints are ordinary jobs, and nothing after
# `paper_inputs` touches the network.
if "paper" in config:
    from dawin.inputs import checkpoints

    PAPER = config["paper"]
    expand_checkpoint_series(PAPER)
    PRES = PAPER["resources"]
    # where downloads come from: the lock file, a pre-staged mirror folder, URL prefix rewrites (a site's
    # proxy; the rehearsal's loopback server) and replacements of published md5s, by file name
    FETCH = dict(lock=PAPER["lock"], mirror=PAPER.get("mirror"), rewrites=PAPER.get("url_rewrite", {}),
                 md5=PAPER.get("md5", {}))
    # the hub for the multi-task sets' parquet shards
    MT_FETCH = dict(FETCH, hf_endpoint=PAPER.get("hf_endpoint", "https://huggingface.co"))

    localrules:
        fetch_checkpoint,
        fetch_hf_model,
        fetch_dataset,
        fetch_inception,
        multitask_dataset,
        paper_inputs,

    # The rules that download (local rules, above and multitask.smk's multitask_train_split): the only ones that may
    # touch the network. `paper_inputs` runs them where there is network; any other run that would need one of
    # them stops before its first job (check_staged_inputs), rather than fail on a compute node after others ran.
    DOWNLOAD_RULES = ["fetch_checkpoint", "fetch_hf_model", "fetch_dataset", "fetch_inception", "multitask_dataset",
                      "multitask_train_split"]

    # the robust fine-tuning sets (downloads: the archive; ImageNet2p: model-soups' index file; the manual
    # sets: nothing) and the multi-task sets, whose download and conversion are one step (small sets)
    ROBUST_DATASETS = [d for d in sorted(PAPER["datasets"]) if PAPER["datasets"][d] not in config.get("multitask", {}).get("tasks", {})]
    MT_DATASETS = [d for d in sorted(PAPER["datasets"]) if d not in ROBUST_DATASETS]
    # their image and class counts: paper.expected (ImageNet2p's are paper.heldout)
    check_paper_expected([d for d in ROBUST_DATASETS if PAPER["datasets"][d] != "imagenet_heldout"])

    rule fetch_dataset:
        output:
            directory(f"{PRES}/downloads/{{dataset}}"),
        input:
            code_of("fetch_dataset.py"),
        params:
            builder=lambda wc: PAPER["datasets"][wc.dataset],
            indices=PAPER["heldout"]["indices"],
            **FETCH,
        wildcard_constraints:
            dataset="|".join(ROBUST_DATASETS),
        log:
            f"{PRES}/logs/fetch_dataset/{{dataset}}.log",
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/fetch_dataset.py"

    rule multitask_dataset:
        output:
            directory(f"{PRES}/data/{{dataset}}"),
        input:
            code_of("paper_dataset.py"),
        params:
            builder=lambda wc: PAPER["datasets"][wc.dataset],
            split="test",
            downloads=f"{PRES}/downloads",
            expected=lambda wc: expected_size(wc.dataset),
            **MT_FETCH,
        wildcard_constraints:
            dataset="|".join(MT_DATASETS) or "^$",
        log:
            f"{PRES}/logs/multitask_dataset/{{dataset}}.log",
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/paper_dataset.py"

    rule paper_dataset:
        output:
            directory(f"{PRES}/data/{{dataset}}"),
        input:
            downloads=f"{PRES}/downloads/{{dataset}}",
            code=code_of("paper_dataset.py"),
        params:
            builder=lambda wc: PAPER["datasets"][wc.dataset],
            manual=PAPER["manual"],
            heldout={k: v for k, v in PAPER["heldout"].items() if k != "indices"},
            indices=PAPER["heldout"]["indices"],
            expected=lambda wc: expected_size(wc.dataset),
            **FETCH,
        wildcard_constraints:
            dataset="|".join(ROBUST_DATASETS),
        log:
            f"{PRES}/logs/paper_dataset/{{dataset}}.log",
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/paper_dataset.py"

    rule fetch_checkpoint:
        output:
            update(f"{PRES}/downloads/checkpoints/{{ckpt}}/{{role}}"),
        input:
            code_of("fetch_checkpoint.py"),
        params:
            spec=lambda wc: PAPER["checkpoints"][wc.ckpt]["sources"][wc.role],
            key=lambda wc: checkpoints.lock_key(wc.ckpt, wc.role, PAPER["checkpoints"][wc.ckpt]["sources"][wc.role]),
            config_key=lambda wc: f"paper.checkpoints.{wc.ckpt}.sources.{wc.role}",
            **FETCH,
        log:
            f"{PRES}/logs/fetch_checkpoint/{{ckpt}}/{{role}}.log",
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/fetch_checkpoint.py"

    rule fetch_hf_model:
        output:
            directory(f"{PRES}/downloads/hf/{{owner}}/{{name}}"),
        input:
            code_of("fetch_checkpoint.py"),
        params:
            spec=hf_repo_spec,
            key=lambda wc: f"{wc.owner}/{wc.name}",
            config_key=lambda wc: f"hf_repo {wc.owner}/{wc.name}",
            **FETCH,
        log:
            f"{PRES}/logs/fetch_hf_model/{{owner}}/{{name}}.log",
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/fetch_checkpoint.py"

    rule convert_checkpoint:
        output:
            model=update(f"{PRES}/checkpoints/{{ckpt}}.safetensors"),
            sidecar=update(f"{PRES}/checkpoints/{{ckpt}}.json"),
        input:
            unpack(checkpoint_sources),
            code=code_of("convert_checkpoint.py"),
            compare_to=lambda wc: [f"{PRES}/checkpoints/{c}.safetensors" for c in [PAPER["checkpoints"][wc.ckpt].get("compare_to")] if c],
        params:
            format=lambda wc: PAPER["checkpoints"][wc.ckpt]["format"],
            architecture=lambda wc: PAPER["checkpoints"][wc.ckpt]["architecture"],
            specs=lambda wc: PAPER["checkpoints"][wc.ckpt]["sources"],
            lock=PAPER["lock"],
        resources:
            mem_mb=16000,
        log:
            f"{PRES}/logs/convert_checkpoint/{{ckpt}}.log",
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/convert_checkpoint.py"

    # torchvision's Inception-V3 weights, for Figure G's FID panel: a download like the others (mirror, URL
    # rewrites, lock), accepted once its sha256 starts with the prefix torchvision puts in the file name
    INCEPTION = f"{PRES}/downloads/inception/{Path(PAPER['inception']['url'][0]).name}"

    rule fetch_inception:
        output:
            INCEPTION,
        input:
            code_of("fetch_inception.py"),
        params:
            spec=PAPER["inception"],
            **FETCH,
        log:
            f"{PRES}/logs/fetch_inception.log",
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/fetch_inception.py"

    onstart:
        check_staged_inputs(workflow.dag, DOWNLOAD_RULES)

    rule paper_inputs:
        input:
            INCEPTION,
            expand(f"{PRES}/data/{{dataset}}", dataset=sorted(PAPER["datasets"])),
            expand(f"{PRES}/checkpoints/{{ckpt}}.safetensors", ckpt=sorted(PAPER["checkpoints"])),
            expand(f"{RESULTS}/models/{{backbone}}/zeroshot.safetensors", backbone=BACKBONES),
            # zero-shot heads of the multi-task datasets (task_vectors templates), for the B/32 backbone
            expand(f"{RESULTS}/heads/{config['multitask']['backbone']}/{{task}}.safetensors", task=sorted(config["multitask"]["tasks"])),
            # the multi-task train splits (Fisher / RegMean examples)
            [t["train"] for t in config["multitask"]["tasks"].values() if "train" in t],
