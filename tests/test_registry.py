"""dawin.registry: one registry per idea; what the workflow, the schema and the implementations derive from it."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dawin import catalog, merging, registry as R
from dawin.report import paper_tables
from dawin.method import variants as V

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
BATCH_SIZES = [32, 128]  # stand-ins for config analysis.batch_sizes
GRID = [0.25, 0.5, 1.0]  # stand-in for config grid


def _all_variants():
    return {t: R.variants(t, batch_sizes=BATCH_SIZES, grid=GRID) for t in catalog.CATALOG}


def test_registry_imports_without_torch():
    """The Snakefile reads the registry and the catalog when it builds the DAG: neither may load torch."""
    code = "import sys, dawin.registry, dawin.catalog, dawin.codedeps; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src")})
    assert out.stdout.strip() == "False"


def test_implementations_are_the_registered_ones():
    assert list(V.KINDS) == list(R.KINDS)
    assert set(merging.METHODS) == set(R.MERGING_METHODS)


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


def test_schema_enums_are_the_registry():
    mt = SCHEMA["properties"]["multitask"]["properties"]
    assert set(mt["methods"]["propertyNames"]["enum"]) == set(R.MERGING_METHODS)
    assert set(mt["pool_methods"]["items"]["enum"]) == set(R.MERGING_METHODS)
    # each method's variants (issue 24 item 13: Fisher as FusionBench, or per example)
    declared = {m: tuple(v["properties"]["variant"]["enum"]) for m, v in mt["methods"].get("properties", {}).items()}
    assert declared == {m: v.variants for m, v in R.MERGING_METHODS.items() if v.variants}


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
    """A table's rows come from the metrics script, soups / profile CSVs, or its own merged evaluations."""
    merged = {R.method_name(k, a) for k, a in R.variants(table, batch_sizes=BATCH_SIZES, grid=GRID)}
    static = METRICS_METHODS | (SOUP_METHODS if table in ("table2", "table3", "table4") else set()) \
        | (PROFILE_METHODS if table == "table_f" else set())
    methods = set(paper_tables.methods_of(table, BATCH_SIZES))
    assert methods, table
    assert methods <= merged | static, sorted(methods - merged - static)


def test_every_row_has_a_label():
    rows = {m for t in paper_tables.TABLES for m in paper_tables.methods_of(t, BATCH_SIZES)}
    unlabelled = sorted(m for m in rows - set(R.METHOD_LABELS) if not m.startswith("dawin_batch_"))
    assert unlabelled == []
    assert paper_tables.TABLES["table6"].methods[2:-2] == tuple(m for m, v in R.MERGING_METHODS.items() if v.table6)
