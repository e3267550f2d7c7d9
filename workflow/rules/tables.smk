# The paper's robust fine-tuning tables, one rule each (`<table>_files`), from tidy results.


def has_soups(backbone):
    return "soups" in config["backbones"][backbone]


def table_inputs(name):
    if name in MULTITASK_TABLES:
        return {"code": src("paper_tables.py", "reference.py", "tables.py"), "reference": REFERENCE,
                "metrics": [f"{RESULTS}/multitask/metrics.csv"], "merged": []}
    bbs = target_backbones(name)
    inputs = {
        "code": src("paper_tables.py", "results.py", "reference.py", "tables.py", "variants.py"),
        "reference": REFERENCE,
        "metrics": [f"{RESULTS}/metrics/{b}.csv" for b in bbs],
        "merged": merged_files(name),
    }
    if name in ("table2", "table3", "table4"):
        inputs["metrics"] += [f"{RESULTS}/metrics/{b}/soups.csv" for b in bbs if has_soups(b)]
    if name == "table_c":
        inputs["metrics"] += [f"{RESULTS}/analysis/{b}/optimality.csv" for b in bbs]
    if name == "table_f":
        inputs["metrics"] += [f"{RESULTS}/profile/{b}.csv" for b in bbs]
    return inputs


def soup_sizes(backbone):
    return {"n_ingredients": len(soup_ingredients(backbone)),
            "n_model_stock": len(config["backbones"][backbone].get("soups", {}).get("model_stock", []))}


def table_backbones(name):
    return [config["multitask"]["backbone"]] if name in MULTITASK_TABLES + MULTITASK_FIGURES else target_backbones(name)


for _name in [*ROBUST_TABLES, *MULTITASK_TABLES]:

    rule:
        name:
            f"{_name}_files"
        output:
            report(
                multiext(f"{RESULTS}/tables/{_name}", ".csv", ".md", ".tex", ".html"),
                category="Tables",
                subcategory=catalog.source(_name),
                caption="../report/table.rst",
            ),
        input:
            **table_inputs(_name),
        params:
            name=_name,
            source=catalog.source(_name),
            caption=catalog.caption(_name),
            backbones=table_backbones(_name),
            suite=SUITE,
            ood=DS["ood"],
            roles=(config["multitask"] if _name in MULTITASK_TABLES else DS).get("reference_columns", {}),
            pools=config.get("multitask", {}).get("pools", {}),
            batch_sizes=ANALYSIS["batch_sizes"],
            grid_size=len(config["grid"]),
            soups={b: soup_sizes(b) for b in table_backbones(_name)},
        log:
            f"{RESULTS}/logs/tables/{_name}.log",
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/table.py"
