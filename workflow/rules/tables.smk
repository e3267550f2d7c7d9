# The paper's tables, one rule each (`<table>_files`), from tidy results.
import yaml

from dawin.report import paper_tables  # torch-free (pandas is Snakemake's already)


def has_soups(backbone):
    return "soups" in config["backbones"][backbone]


def model_soups_reference():
    """model-soups' published numbers (workflow/resources/) when config `model_soups_reference` is true, else None."""
    if not config.get("model_soups_reference"):
        return None
    path = workflow.source_path("../resources/model_soups_reference.yaml")
    with open(path) as f:
        return {"path": path, **yaml.safe_load(f)}


MODEL_SOUPS = model_soups_reference()
_WARNED = set()


def second_reference(name):
    """model-soups' numbers for table `name`: {path, note} when the file lists the table and its backbone is
    one of the table's, else None. Its note says that our soups use all of its runs: check that they do."""
    if MODEL_SOUPS is None or name not in MODEL_SOUPS["tables"] or name in MULTITASK_TABLES:
        return None
    backbone = MODEL_SOUPS["backbone"]
    if backbone not in target_backbones(name):
        return None
    n = len(soup_ingredients(backbone))
    if n != MODEL_SOUPS["runs"]:  # e.g. the rehearsal's few runs: model-soups' numbers are no reference for them
        if name not in _WARNED:
            _WARNED.add(name)
            print(f"WARNING: {catalog.source(name)} shows no model-soups reference: backbones.{backbone}.soups."
                  f"ingredients lists {n} runs, model-soups soups all {MODEL_SOUPS['runs']} (its main.py, NUM_MODELS)",
                  file=sys.stderr)
        return None
    return {"path": MODEL_SOUPS["path"], "note": MODEL_SOUPS["note"]}


def multitask_correct(name):
    """The per-sample correctness files of a multi-task table (its accuracies' intervals): the pool of all tasks and
    the individuals (Table 6), or the other pools (Table G: rows per pool)."""
    if not paper_tables.TABLES[name].pools:
        return [f"{RESULTS}/multitask/all/correct.safetensors", f"{RESULTS}/multitask/individual.correct.safetensors"]
    return [f"{RESULTS}/multitask/{p}/correct.safetensors" for p in POOLS if p != "all"]


def table_inputs(name):
    """A table's files, from what its dawin.report.paper_tables.TABLES entry reads."""
    if name in MULTITASK_TABLES:
        return {"code": code_of("table.py"), "reference": REFERENCE,
                "metrics": [f"{RESULTS}/multitask/metrics.csv"], "merged": [], "correct": multitask_correct(name)}
    spec = paper_tables.TABLES[name]
    bbs = target_backbones(name)
    soups = [b for b in bbs if "soups" in spec.reads and has_soups(b)]
    inputs = {
        "code": code_of("table.py"),
        "reference": REFERENCE,
        "metrics": [f"{RESULTS}/metrics/{b}.csv" for b in bbs] + [f"{RESULTS}/metrics/{b}/soups.csv" for b in soups],
        "merged": merged_files(name),
    }
    if spec.intervals:  # per-sample correctness: the accuracies' bootstrap intervals
        inputs["correct"] = [f"{RESULTS}/metrics/{b}.correct.safetensors" for b in bbs]
        inputs["correct"] += [f"{RESULTS}/metrics/{b}/soups.correct.safetensors" for b in soups]
    for result, folder in (("optimality", "analysis/{b}/optimality.csv"), ("profile", "profile/{b}.csv")):
        if result in spec.reads:
            inputs["metrics"] += [f"{RESULTS}/{folder.format(b=b)}" for b in bbs]
    if second_reference(name):
        inputs["second_reference"] = second_reference(name)["path"]
    return inputs


def soup_sizes(backbone):
    return {"n_ingredients": len(soup_ingredients(backbone)),
            # a converted Model Stock checkpoint is the authors' own: two fine-tuning runs by the method's design
            "n_model_stock": (lambda m: len(m) if isinstance(m, list) else 2)(
                config["backbones"][backbone].get("soups", {}).get("model_stock", []))}


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
            soups={b: soup_sizes(b) for b in table_backbones(_name) if b in config["backbones"]},
            notes=[second_reference(_name)["note"]] if second_reference(_name) else [],
            labels=MERGING_LABELS if _name in MULTITASK_TABLES else {},
        log:
            f"{RESULTS}/logs/tables/{_name}.log",
        conda:
            "../../envs/dawin.yaml"
        script:
            "../scripts/table.py"
