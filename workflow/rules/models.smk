# Zero-shot models: the CLIP's image tower plus a head built from the ID test set's class names and templates.



rule zeroshot_model:
    output:
        head=f"{RESULTS}/heads/{{backbone}}.safetensors",
        model=f"{RESULTS}/models/{{backbone}}/zeroshot.safetensors",
    input:
        code=src("models.py", "datasets.py"),
        weights=zeroshot_weights,
        data=DS["roots"][DS["id_test"]],
    params:
        architecture=lambda wc: backbone_cfg(wc)["architecture"],
        pretrained=lambda wc: backbone_cfg(wc)["zeroshot"].get("pretrained"),
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/zeroshot_model/{{backbone}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/zeroshot_model/{{backbone}}.tsv"
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/zeroshot_model.py"
