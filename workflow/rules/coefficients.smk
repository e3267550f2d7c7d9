# Per-sample interpolation coefficients of every test domain, one file per coefficient kind
# (dawin.variants: DaWin's entropy ratio, the oracle, and the ablations' alternatives).


rule coefficients:
    output:
        coefficients_file("{backbone}", "{kind}"),
    input:
        unpack(coefficient_logits),
        code=code_of("coefficients.py"),
        temperatures=f"{RESULTS}/calibration/{{backbone}}.json",
    params:
        datasets=TEST_SETS,
        offset_adjustment=config["coefficients"]["offset_adjustment"],
        seed=config["seed"],
    log:
        f"{RESULTS}/logs/coefficients/{{backbone}}/{{kind}}.log",
    conda:
        "../../envs/dawin.yaml"
    script:
        "../scripts/coefficients.py"
