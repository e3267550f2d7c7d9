# Zero-shot heads per (backbone, dataset) from the dataset's class names and prompt templates, and the
# zero-shot classifier: the CLIP's image tower plus the head of the ID test set.


rule zeroshot_head:
    output:
        f"{RESULTS}/heads/{{backbone}}/{{dataset}}.safetensors",
    input:
        code=code_of("zeroshot_head.py"),
        weights=zeroshot_weights,
        data=dataset_dir,
    params:
        architecture=lambda wc: backbone_cfg(wc)["architecture"],
        pretrained=lambda wc: backbone_cfg(wc)["zeroshot"].get("pretrained"),
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/zeroshot_head/{{backbone}}/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/zeroshot_head/{{backbone}}/{{dataset}}.tsv"
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/zeroshot_head.py"


rule zeroshot_model:
    output:
        update(f"{RESULTS}/models/{{backbone}}/zeroshot.safetensors"),
    input:
        code=code_of("zeroshot_model.py"),
        weights=zeroshot_weights,
        head=f"{RESULTS}/heads/{{backbone}}/{DS['id_test']}.safetensors",
    params:
        architecture=lambda wc: backbone_cfg(wc)["architecture"],
        pretrained=lambda wc: backbone_cfg(wc)["zeroshot"].get("pretrained"),
    log:
        f"{RESULTS}/logs/zeroshot_model/{{backbone}}.log",
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/zeroshot_model.py"
