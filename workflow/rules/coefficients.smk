# Per-sample interpolation coefficients of every test domain, one file per coefficient kind (dawin.method.variants:
# DaWin's entropy ratio, the oracle, and the ablations' alternatives), one job per backbone and group
# (dawin.registry.COEFFICIENT_GROUPS: the kinds that read only the pair's logits, and those that also read the
# weight average's, and those with the authors' temperatures: Table E, only for backbones that have them).

for _group, _kinds in registry.COEFFICIENT_GROUPS.items():

    rule:
        name:
            "coefficients" if _group == "pair" else f"coefficients_{_group}"
        output:
            [coefficients_file("{backbone}", k) for k in _kinds],
        input:
            code=code_of("coefficients.py"),
            # the fitted temperatures; the authors' come from the config (backbones.<b>.authors_temperatures)
            **({} if _group == "authors_temperatures" else {"temperatures": f"{RESULTS}/calibration/{{backbone}}.json"}),
            **{m: [logits_file("{backbone}", m, d) for d in TEST_SETS]
               for m in [*MODELS, *(["average"] if _group == "with_average" else [])]},
        params:
            kinds=_kinds,
            authors_temperatures=(lambda wc: authors_temperatures(wc.backbone)) if _group == "authors_temperatures" else None,
            datasets=TEST_SETS,
            offset_adjustment=config["coefficients"]["offset_adjustment"],
            seed=config["seed"],
        log:
            f"{RESULTS}/logs/coefficients/{{backbone}}/{_group}.log",
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/coefficients.py"
