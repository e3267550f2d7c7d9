# The paper suite's inputs: dataset downloads / manual-copy verification, checkpoint fetch and conversion.
# Only active when the config has a `paper` section (config/paper.yaml).
if "paper" in config:
    PAPER = config["paper"]
    expand_checkpoint_series(PAPER)
    PRES = PAPER["resources"]

    rule paper_dataset:
        output:
            directory(f"{PRES}/data/{{dataset}}"),
        input:
            src("paper_datasets.py", "multitask_datasets.py", "download.py", "datasets.py"),
        params:
            builder=lambda wc: PAPER["datasets"][wc.dataset],
            manual=PAPER["manual"],
            downloads=f"{PRES}/downloads",
            heldout=PAPER["heldout"],
            seed=config["seed"],
        log:
            f"{PRES}/logs/paper_dataset/{{dataset}}.log",
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/paper_dataset.py"

    rule fetch_checkpoint:
        output:
            f"{PRES}/downloads/checkpoints/{{ckpt}}/{{role}}",
        input:
            src("checkpoints.py", "download.py"),
        params:
            spec=lambda wc: PAPER["checkpoints"][wc.ckpt]["sources"][wc.role],
            lock=PAPER["lock"],
            cache=f"{PRES}/downloads/gdrive",
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
            src("checkpoints.py", "convert.py"),
        params:
            spec=hf_repo_spec,
            lock=PAPER["lock"],
            cache=f"{PRES}/downloads/gdrive",
        log:
            f"{PRES}/logs/fetch_hf_model/{{owner}}/{{name}}.log",
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/fetch_checkpoint.py"

    rule convert_checkpoint:
        output:
            model=f"{PRES}/checkpoints/{{ckpt}}.safetensors",
            sidecar=f"{PRES}/checkpoints/{{ckpt}}.json",
        input:
            unpack(checkpoint_sources),
            code=src("convert.py", "models.py"),
        params:
            format=lambda wc: PAPER["checkpoints"][wc.ckpt]["format"],
            architecture=lambda wc: PAPER["checkpoints"][wc.ckpt]["architecture"],
            specs=lambda wc: PAPER["checkpoints"][wc.ckpt]["sources"],
        resources:
            mem_mb=16000,
        log:
            f"{PRES}/logs/convert_checkpoint/{{ckpt}}.log",
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/convert_checkpoint.py"

    rule paper_inputs:
        input:
            expand(f"{PRES}/data/{{dataset}}", dataset=sorted(PAPER["datasets"])),
            expand(f"{PRES}/checkpoints/{{ckpt}}.safetensors", ckpt=sorted(PAPER["checkpoints"])),
            expand(f"{RESULTS}/models/{{backbone}}/zeroshot.safetensors", backbone=BACKBONES),
            # zero-shot heads of the multi-task datasets (task_vectors templates), for the B/32 backbone
            expand(f"{RESULTS}/heads/{config['multitask']['backbone']}/{{task}}.safetensors", task=sorted(config["multitask"]["tasks"])),
