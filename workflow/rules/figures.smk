# The paper's robust fine-tuning figures, one rule each (`<figure>_files`), with deterministic bytes.


def figure_inputs(name):
    code = code_of("figure.py")
    if name == "fig7":
        return {"code": code, "multitask": [f"{RESULTS}/multitask/all/dawin_coefficients.csv"]}
    if name == "fig_g":
        return {"code": code, "multitask": [f"{RESULTS}/multitask/distances.csv"]}
    bbs = target_backbones(name)

    def logits(*models):
        return [logits_file(b, m, d) for b in bbs for m in models for d in TEST_SETS]

    def coefficients(kind):
        return [coefficients_file(b, kind) for b in bbs]

    inputs = {"code": code, "merged": merged_files(name)}
    temperatures = [f"{RESULTS}/calibration/{b}.json" for b in bbs]
    if name == "fig1":
        inputs["coefficients"] = coefficients("cross_entropy")
    if name == "fig_e":
        inputs |= {"coefficients": coefficients("cross_entropy") + coefficients("entropy"), "logits": logits(*MODELS)}
    if name in ("fig2", "fig_c", "fig_d"):
        inputs |= {"logits": logits(*MODELS), "temperatures": temperatures}
    if name in ("fig4", "fig_a", "fig8"):
        inputs["metrics"] = [f"{RESULTS}/metrics/{b}.csv" for b in bbs]
        inputs["metrics"] += [f"{RESULTS}/metrics/{b}/soups.csv" for b in bbs if has_soups(b)]
    if name in ("fig4", "fig_a"):
        inputs["sweeps"] = [f for b in bbs for f in sweep_files(b, TEST_SETS, "csv")]
    if name == "fig8":
        inputs["metrics"] += [f"{RESULTS}/profile/{b}.csv" for b in bbs]
        if MULTITASK_TABLES:
            inputs["multitask"] = [f"{RESULTS}/multitask/metrics.csv"]
    if name in ("fig6", "fig_f"):
        inputs["logits"] = logits(*MODELS, "average")
    if name == "fig_h":
        inputs["sweeps"] = [f for b in bbs for f in sweep_files(b, TEST_SETS)]
    if name == "fig_b":
        inputs |= {"coefficients": coefficients("entropy"), "data": [DS["roots"][d] for d in TEST_SETS]}
    return inputs


for _name in [*ROBUST_FIGURES, *MULTITASK_FIGURES]:

    rule:
        name:
            f"{_name}_files"
        output:
            report(
                multiext(f"{RESULTS}/figures/{_name}", ".png", ".pdf"),
                category="Figures",
                subcategory=catalog.source(_name),
                caption="../report/figure.rst",
            ),
        input:
            **figure_inputs(_name),
        params:
            name=_name,
            source=catalog.source(_name),
            caption=catalog.caption(_name),
            backbones=table_backbones(_name),
            suite=SUITE,
            datasets=TEST_SETS,
            ood=DS["ood"],
            grid=config["grid"],
            roles=DS.get("reference_columns", {}),
        log:
            f"{RESULTS}/logs/figures/{_name}.log",
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/figure.py"
