"""dawin.registry: one registry per idea; what the workflow, the schema and the implementations derive from it."""

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dawin import catalog, merging, registry as R, schema
from dawin.merging import adamerging
from dawin.report import paper_tables
from dawin.method import variants as V

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = ROOT / "workflow" / "schemas" / "config.schema.yaml"
BATCH_SIZES = [32, 128]  # stand-ins for config analysis.batch_sizes
GRID = [0.25, 0.5, 1.0]  # stand-in for config grid


def _all_variants():
    return {t: R.variants(t, batch_sizes=BATCH_SIZES, grid=GRID) for t in catalog.CATALOG}


def test_registry_imports_without_torch():
    """The Snakefile reads the registry and the catalog when it builds the DAG: neither may load torch."""
    code = ("import sys, dawin.registry, dawin.catalog, dawin.codedeps, dawin.schema, dawin.report.paper_tables; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src")})
    assert out.stdout.strip() == "False"


def test_implementations_are_the_registered_ones():
    assert list(V.KIND_FUNCTIONS) == list(R.KINDS)
    # each merging method is its module's merge function, with the options its entry fixes
    assert merging.METHODS["opcm"] is merging.opcm.merge and merging.METHODS["ties"] is merging.ties.merge
    pp_layer = merging.METHODS["adamerging_pp_layer"]
    assert isinstance(pp_layer, functools.partial) and pp_layer.func is adamerging.merge
    assert pp_layer.keywords == {"granularity": "layer", "plus_plus": True}
    assert merging.METHODS["adamerging_task"].keywords == {"granularity": "task"}


def test_a_registry_entry_without_its_module_names_the_file_to_add():
    with pytest.raises(ImportError, match=r"MERGING_METHODS\['halfway'\]: no function merge\(pool, data=None, "
                                          r"\*\*options\) in module dawin.merging.halfway .*add "
                                          r"src/dawin/merging/halfway.py"):
        merging._merge_function("halfway", R.MergingMethod("Half-way"))
    with pytest.raises(ImportError, match=r"no function merge.* in module dawin.merging.pool"):
        merging._merge_function("pooled", R.MergingMethod("Pooled", module="pool"))  # a module without merge


def test_a_half_added_entry_fails_with_a_clear_message():
    with pytest.raises(ImportError, match=r"\['new_kind'\] are not in dawin.registry"):
        R.check_names("coefficient kinds", R.KINDS, [*R.KINDS, "new_kind"], "dawin.method.variants")
    with pytest.raises(ImportError, match=r"\['opcm'\] are registered without an implementation"):
        R.check_names("merging methods", R.MERGING_METHODS, [m for m in R.MERGING_METHODS if m != "opcm"], "x")


def test_derived_groups():
    assert R.NEEDS_AVERAGE == {"pl_average_soft", "pl_average_hard"}
    assert R.kinds_in("table_d") == ["uniform", "normal_0.5_0.2", "normal_0.8_0.1", "max_logit",
                                     "confidence_diff", "confidence"]  # Table D's row order
    assert R.merging_methods_reading("train") == ("fisher", "regmean")
    assert set(R.merging_methods_reading("test")) == {m for m in R.MERGING_METHODS if m.startswith("adamerging")}


def test_the_schema_takes_its_names_from_the_registries():
    """The YAML names no merging method and no target (nothing to keep in step by hand); dawin.schema fills them in."""
    words = set(re.findall(r"\w+", SCHEMA_FILE.read_text()))
    assert not words & {*R.MERGING_METHODS, *catalog.targets("fig", multitask=False), "table_f"}
    defs = schema.load(SCHEMA_FILE)["$defs"]
    assert defs["merging_method"]["enum"] == list(R.MERGING_METHODS)
    assert defs["target"]["enum"] == ["default", *catalog.targets("table", multitask=False),
                                      *catalog.targets("fig", multitask=False)]
    for config in ("config.yaml", "paper.yaml"):
        schema.validate(yaml.safe_load((ROOT / "config" / config).read_text()), SCHEMA_FILE)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["multitask"]["methods"].update(soup={}), "config multitask.methods: 'soup' is not one of ['weight_average'"),
    (lambda c: c["multitask"].update(pool_methods=["ties", "tie"]), "config multitask.pool_methods.1: 'tie' is not one of"),
    (lambda c: c["targets"].update(table6="tiny"), "config targets: 'table6' is not one of ['default', 'table1'"),
    (lambda c: c["mixture"].update(n_restrats=2), "config mixture: Additional properties are not allowed ('n_restrats'"),
])
def test_a_config_off_the_schema_names_the_key(edit, message):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    edit(config)
    with pytest.raises(schema.ConfigError) as error:
        schema.validate(config, SCHEMA_FILE, "workflow/schemas/config.schema.yaml")
    assert str(error.value).startswith(message)
    assert str(error.value).endswith("the keys and the values each takes are in workflow/schemas/config.schema.yaml "
                                     "(described in config/README.md)")

def test_a_method_with_variants_takes_one_of_them():
    """The schema's `variant` values are the registry's (issue 24 item 13: Fisher as FusionBench, or per example)."""
    methods = schema.load(SCHEMA_FILE)["properties"]["multitask"]["properties"]["methods"]["properties"]
    assert {m: tuple(v["properties"]["variant"]["enum"]) for m, v in methods.items()} == {
        m: v.variants for m, v in R.MERGING_METHODS.items() if v.variants}
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["multitask"]["methods"]["fisher"]["variant"] = "per_sample"
    with pytest.raises(schema.ConfigError, match="config multitask.methods.fisher.variant: 'per_sample' is not one of"):
        schema.validate(config, SCHEMA_FILE)


def test_a_non_default_variant_is_named_in_the_row_label():
    assert R.MERGING_METHODS["fisher"].variants[0] == "fusionbench"  # upstream's is the default
    assert R.merging_labels({"fisher": {"variant": "fusionbench"}, "ties": {"lam": 0.3}}) == {}
    assert R.merging_labels({"fisher": {"variant": "per_example", "n_examples": 256}}) == {
        "fisher": "Fisher merging (per_example)"}


def test_variants_are_valid_pairs():
    pairs = {p for ps in _all_variants().values() for p in ps}
    assert ("entropy", "mixture") in pairs and ("entropy", "batch128") in pairs and ("entropy", "scaled0.25") in pairs
    for kind, assignment in pairs:
        assert kind in R.KINDS
        R.parse_assignment(assignment)  # raises on an unknown assignment
    assert set(_all_variants()) == set(catalog.CATALOG)


def test_parse_assignment():
    assert R.parse_assignment("per_sample") == {"mixture": False, "batch_size": None, "scale": 1.0}
    assert R.parse_assignment("mixture") == {"mixture": True, "batch_size": None, "scale": 1.0}
    assert R.parse_assignment("batch32") == {"mixture": True, "batch_size": 32, "scale": 1.0}
    assert R.parse_assignment("scaled0.5") == {"mixture": True, "batch_size": None, "scale": 0.5}
    assert R.parse_assignment("scaled2") == {"mixture": True, "batch_size": None, "scale": 2.0}
    for bad in ("batch0", "batch", "scaled", "scaled-1", "Mixture", "per_sample2", "mixture "):
        with pytest.raises(ValueError, match="unknown assignment"):
            R.parse_assignment(bad)


@pytest.mark.parametrize("kind, assignment, name", [
    ("entropy", "mixture", "dawin"),
    ("entropy", "per_sample", "dawin_per_sample"),
    ("cross_entropy", "per_sample", "oracle_sample"),
    ("entropy_no_offset", "mixture", "dawin_no_offset"),
    ("entropy_uncalibrated", "mixture", "dawin_no_calibration"),
    ("entropy", "batch32", "dawin_batch_32"),
    ("entropy", "scaled0.5", "dawin_x0.5"),
    ("entropy", "scaled1.0", "dawin_x1"),
    ("uniform", "mixture", "coef_uniform"),
    ("normal_0.5_0.2", "mixture", "coef_normal_0.5_0.2"),
    ("pl_ensemble_soft", "mixture", "expertise_pl_ensemble_soft"),
    ("uniform", "per_sample", "uniform_per_sample"),
])
def test_method_name(kind, assignment, name):
    assert R.method_name(kind, assignment) == name


def test_method_names_are_distinct_over_workflow_variants():
    pairs = {p for ps in _all_variants().values() for p in ps}
    names = [R.method_name(k, a) for k, a in pairs]
    assert len(set(names)) == len(names)


METRICS_METHODS = {"zeroshot", "finetuned", "average", "output_ensemble", "wise_ft", "dcs", "doe", "oracle_domain"}
SOUP_METHODS = {"uniform_soup", "greedy_soup", "model_stock"}  # metrics/{backbone}/soups.csv, tables 2-4
PROFILE_METHODS = {"wise_ft", "dawin", "dawin_parallel", "dawin_per_sample", "dawin_per_sample_loop",
                   "single_pass_jpeg", "single_pass_decoded"}  # profile/{backbone}.csv, table F


@pytest.mark.parametrize("table", [t for t in catalog.targets("table", multitask=False) if t != "table_c"])
def test_every_table_method_is_produced_by_its_inputs(table):
    """A table's rows come from the metrics script, the soups / profile CSVs its TableSpec reads (the table rules'
    inputs, workflow/rules/tables.smk), or its own merged evaluations."""
    merged = {R.method_name(k, a) for k, a in R.variants(table, batch_sizes=BATCH_SIZES, grid=GRID)}
    reads = paper_tables.TABLES[table].reads
    static = METRICS_METHODS | (SOUP_METHODS if "soups" in reads else set()) \
        | (PROFILE_METHODS if "profile" in reads else set())
    methods = set(paper_tables.methods_of(table, BATCH_SIZES))
    assert methods, table
    assert methods <= merged | static, sorted(methods - merged - static)


def test_every_row_has_a_label():
    rows = {m for t in paper_tables.TABLES for m in paper_tables.methods_of(t, BATCH_SIZES)}
    unlabelled = sorted(m for m in rows - set(R.METHOD_LABELS) if not m.startswith("dawin_batch_"))
    assert unlabelled == []
    assert paper_tables.TABLES["table6"].methods[2:-2] == tuple(m for m, v in R.MERGING_METHODS.items() if v.table6)


HALFWAY = '''"""Half-way merging: theta0 plus lam / M times the sum of the M task vectors (the method a test adds)."""

from .task_arithmetic import merge as task_arithmetic


def merge(pool, data=None, *, lam=0.5):
    return task_arithmetic(pool, lam=lam / len(pool.tasks))
'''

REACHED = '''
import json, sys
from pathlib import Path

import pandas as pd
import yaml

import dawin
from dawin import codedeps, schema
from dawin.merging import get_method
from dawin.report import paper_tables

config_file, schema_file, script = sys.argv[1:]
config = yaml.safe_load(Path(config_file).read_text())
config["multitask"]["methods"]["halfway"] = {"lam": 0.5}
schema.validate(config, schema_file)
rows = pd.DataFrame([dict(suite="demo", backbone="tiny-vit", method=m, dataset=d, metric="accuracy", value=v, pool="all")
                     for m, v in [("pretrained", 40.0), ("halfway", 50.0), ("dawin", 60.0)] for d in ("t", "avg")])
shown = paper_tables.display("table6", paper_tables.select("table6", rows, ["tiny-vit"]), None, {"t": "sun397"},
                             compare=False)
print(json.dumps({
    "enum": schema.load(schema_file)["$defs"]["merging_method"]["enum"],
    "table6": list(paper_tables.TABLES["table6"].methods),
    "rows": shown.reset_index()[["method", "label", "sun397"]].values.tolist(),
    "function": get_method("halfway").__module__,
    "code": [str(f.relative_to(Path(dawin.__file__).parent)) for f in codedeps.package_files(script, Path(dawin.__file__).parent)],
}))
'''


def test_a_new_merging_method_needs_its_module_one_registry_entry_and_its_config_options(tmp_path):
    """A method added to a copy of the package (its module, one line in the registry) and to a config (its options)
    reaches the schema, the plan of the pool job (a dry run of table6 with the workflow as it is), Table 6's rows
    (selected and shown from tidy results as the table job does) and the pool job's code inputs."""
    pkg = tmp_path / "src" / "dawin"
    shutil.copytree(ROOT / "src" / "dawin", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "merging" / "halfway.py").write_text(HALFWAY)
    registry = pkg / "registry.py"
    anchor = "MERGING_METHODS: dict[str, MergingMethod] = {\n"
    assert anchor in registry.read_text()
    registry.write_text(registry.read_text().replace(anchor, anchor + '    "halfway": MergingMethod("Half-way"),\n'))
    options = tmp_path / "halfway.yaml"
    options.write_text("multitask:\n  methods:\n    halfway: {lam: 0.5}\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src")}

    out = subprocess.run([sys.executable, "-c", REACHED, str(ROOT / "config" / "config.yaml"), str(SCHEMA_FILE),
                          str(ROOT / "workflow" / "scripts" / "multitask_pool.py")],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    reached = json.loads(out.stdout)
    assert reached["enum"][0] == "halfway" and reached["table6"][:3] == ["pretrained", "individual", "halfway"]
    assert reached["rows"] == [["pretrained", "Pre-trained", 40.0], ["halfway", "Half-way", 50.0],
                               ["dawin", "DaWin", 60.0]]
    assert reached["function"] == "dawin.merging.halfway" and "merging/halfway.py" in reached["code"]

    plan = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
                           str(tmp_path / "run"), "--cores", "1", "-n", "table6", "--configfile",
                           str(ROOT / "config" / "config.yaml"), str(options)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert plan.returncode == 0, plan.stdout[-2000:] + plan.stderr[-3000:]
    assert "results/demo/multitask/all/halfway.csv" in plan.stdout  # an output of the pool job, read by Table 6's
