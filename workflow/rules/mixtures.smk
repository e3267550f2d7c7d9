# Beta mixture over each domain's coefficients (K per backbone).


rule beta_mixture:
    output:
        f"{RESULTS}/mixtures/{{backbone}}/{{dataset}}.json",
    input:
        code=src("mixtures.py"),
        coefficients=f"{RESULTS}/coefficients/{{backbone}}/{{dataset}}.safetensors",
    params:
        n_components=lambda wc: backbone_cfg(wc)["n_components"],
        seed=config["seed"],
        **config["mixture"],
    log:
        f"{RESULTS}/logs/beta_mixture/{{backbone}}/{{dataset}}.log",
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/beta_mixture.py"
