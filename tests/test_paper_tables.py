"""dawin.report.paper_tables, dawin.report.results and the paper comparison of dawin.report.reference on a small synthetic suite."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dawin import identity
from dawin.report import paper_tables as PT
from dawin.report import results as R
from dawin.catalog import caption
from dawin.report.reference import CELLS, load_reference, load_second_reference
from dawin.report.tidy import COLUMNS
from dawin.tensorio import save_tensors

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "workflow" / "resources" / "paper_reference.yaml"
MODEL_SOUPS = ROOT / "workflow" / "resources" / "model_soups_reference.yaml"
DATASETS = ["in", "v2", "r", "a", "sketch", "objectnet", "ood_avg"]
ROLES = {"in": "id", "v2": "v2", "r": "r", "a": "a", "sketch": "sketch", "objectnet": "objectnet"}
TABLE2 = ["zeroshot", "finetuned", "output_ensemble", "wise_ft", "uniform_soup", "greedy_soup", "model_stock",
          "dawin_per_sample", "dawin"]
OTHER = ["dcs", "coef_uniform", "average", "dawin_no_offset"]  # methods of other tables


def value_of(backbone: str, method: str, dataset: str) -> float:
    """A distinct, hand-checkable accuracy per cell (two decimals)."""
    b = {"ViT-B-32": 0, "ViT-B-16": 1}[backbone]
    m = (TABLE2 + OTHER).index(method)
    return round(40 + 5 * m + DATASETS.index(dataset) + 0.25 * b + 0.01, 2)


@pytest.fixture(scope="module")
def tidy_results() -> pd.DataFrame:
    rows = [dict(suite="fake", backbone=b, method=m, dataset=d, metric="accuracy", value=value_of(b, m, d))
            for b in ("ViT-B-32", "ViT-B-16") for m in TABLE2 + OTHER for d in DATASETS]
    rows += [dict(suite="fake", backbone="ViT-B-32", method="dawin", dataset=d, metric="entropy", value=0.5)
             for d in DATASETS[:-1]]
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return load_reference(REFERENCE)


@pytest.fixture(scope="module")
def model_soups() -> pd.DataFrame:
    return load_second_reference(MODEL_SOUPS)


# --------------------------------------------------------------------------------------------------
# select / display
# --------------------------------------------------------------------------------------------------

def test_select_keeps_table_methods_metrics_and_backbones(tidy_results):
    rows = PT.select("table2", tidy_results, ["ViT-B-32"])
    assert list(rows.columns) == COLUMNS
    assert set(rows.method) == set(TABLE2)
    assert set(rows.metric) == {"accuracy"}  # no entropy rows; no cost rows given
    assert set(rows.backbone) == {"ViT-B-32"}
    assert len(rows) == len(TABLE2) * len(DATASETS)
    want = tidy_results[(tidy_results.backbone == "ViT-B-32") & tidy_results.method.isin(TABLE2)
                        & (tidy_results.metric == "accuracy")]
    key = COLUMNS[:5]
    pd.testing.assert_frame_equal(rows, want.sort_values(key).reset_index(drop=True))
    assert list(rows.index) == list(range(len(rows)))


def test_select_table_b_uses_batch_sizes(tidy_results):
    extra = pd.DataFrame([dict(suite="fake", backbone="ViT-B-32", method=f"dawin_batch_{b}", dataset="in",
                               metric="accuracy", value=1.0) for b in (32, 64, 128)], columns=COLUMNS)
    rows = PT.select("table_b", pd.concat([tidy_results, extra]), ["ViT-B-32"], batch_sizes=[32, 128])
    assert set(rows.method) == {"dawin_batch_32", "dawin_batch_128", "dawin"}


def test_display_table2_compares_with_paper(tidy_results, reference):
    rows = PT.select("table2", tidy_results, ["ViT-B-32"])
    shown = PT.display("table2", rows, reference, ROLES, compare=True)
    assert list(shown.index) == TABLE2  # the table's row order
    ours_id = value_of("ViT-B-32", "dawin", "in")
    assert shown.loc["dawin", "id"] == pytest.approx(ours_id)
    assert shown.loc["dawin", "id (paper)"] == pytest.approx(78.70)
    assert shown.loc["dawin", "id (Δ)"] == pytest.approx(ours_id - 78.70)
    assert shown.loc["dawin", "ood_avg (paper)"] == pytest.approx(54.36)
    assert shown.loc["dawin", "ood_avg (Δ)"] == pytest.approx(value_of("ViT-B-32", "dawin", "ood_avg") - 54.36)
    assert shown.loc["zeroshot", "id (paper)"] == pytest.approx(63.35)
    # our OOD columns without a paper number: ours shown, paper and Δ NaN
    assert shown.loc["dawin", "v2"] == pytest.approx(value_of("ViT-B-32", "dawin", "v2"))
    assert math.isnan(shown.loc["dawin", "v2 (paper)"]) and math.isnan(shown.loc["dawin", "v2 (Δ)"])
    assert shown.loc["dawin", "label"] == "DaWin"
    assert shown.columns[:4].tolist() == ["label", "id", "id (paper)", "id (Δ)"]


def test_display_without_compare_has_no_delta(tidy_results, reference):
    rows = PT.select("table2", tidy_results, ["ViT-B-32"])
    shown = PT.display("table2", rows, reference, ROLES, compare=False)
    assert not [c for c in shown.columns if "(Δ)" in c]
    assert shown.loc["dawin", "id (paper)"] == pytest.approx(78.70)
    assert shown.loc["dawin", "id"] == pytest.approx(value_of("ViT-B-32", "dawin", "in"))


def test_display_maps_dataset_names_through_roles(tidy_results, reference):
    renamed = tidy_results.replace({"dataset": {"in": "imagenet"}})
    rows = PT.select("table2", renamed, ["ViT-B-32"])
    roles = {**{k: v for k, v in ROLES.items() if k != "in"}, "imagenet": "id"}
    shown = PT.display("table2", rows, reference, roles, compare=True)
    assert shown.loc["dawin", "id"] == pytest.approx(value_of("ViT-B-32", "dawin", "in"))
    assert "imagenet" not in shown.columns and "in" not in shown.columns


def test_display_table3_appends_reported_only_rows(tidy_results, reference):
    rows = PT.select("table3", tidy_results, ["ViT-B-16"])
    shown = PT.display("table3", rows, reference, ROLES, compare=True)
    ours = ["zeroshot", "finetuned", "output_ensemble", "wise_ft", "model_stock", "dawin"]
    assert list(shown.index) == ours + ["lp_ft", "car_ft", "flyp", "lipsum_ft", "carot"]
    assert shown.loc["lp_ft", "label"] == "LP-FT (reported)"
    assert all("(reported)" in shown.loc[m, "label"] for m in ("car_ft", "flyp", "lipsum_ft", "carot"))
    assert math.isnan(shown.loc["lp_ft", "id"]) and math.isnan(shown.loc["lp_ft", "id (Δ)"])
    assert shown.loc["lp_ft", "id (paper)"] == pytest.approx(82.5)
    assert shown.loc["dawin", "id"] == pytest.approx(value_of("ViT-B-16", "dawin", "in"))
    assert shown.loc["dawin", "id (paper)"] == pytest.approx(83.4)
    assert "(reported)" not in shown.loc["dawin", "label"]


def test_display_multi_backbone_table5(tidy_results, reference):
    rows = PT.select("table5", tidy_results, ["ViT-B-32", "ViT-B-16"])
    shown = PT.display("table5", rows, reference, ROLES, compare=True)
    assert isinstance(shown.index, pd.MultiIndex)
    assert shown.loc[("ViT-B-16", "dcs"), "id (paper)"] == pytest.approx(82.15)
    assert shown.loc[("ViT-B-16", "dcs"), "id"] == pytest.approx(value_of("ViT-B-16", "dcs", "in"))
    assert shown.loc[("ViT-B-32", "dawin"), "ood_avg (paper)"] == pytest.approx(54.41)
    assert shown.loc[("ViT-B-32", "dawin"), "ood_avg (Δ)"] == pytest.approx(
        value_of("ViT-B-32", "dawin", "ood_avg") - 54.41)
    # rows the paper has but we did not run (doe: no results; ViT-L-14: not a backbone here) and that are
    # not reported-only are left out
    keys = list(shown.index)
    assert sorted(keys) == sorted((b, m) for b in ("ViT-B-32", "ViT-B-16") for m in ("finetuned", "dcs", "dawin"))
    for b in ("ViT-B-32", "ViT-B-16"):  # rows of a backbone together, in the table's method order
        mine = [i for i, k in enumerate(keys) if k[0] == b]
        assert mine == list(range(mine[0], mine[0] + 3))
        assert [keys[i][1] for i in mine] == ["finetuned", "dcs", "dawin"]


def test_display_without_reference(tidy_results):
    rows = PT.select("table_a", tidy_results, ["ViT-B-32"])
    shown = PT.display("table_a", rows, None, ROLES, compare=True)
    assert list(shown.index) == [("ViT-B-32", "dawin_no_offset"), ("ViT-B-32", "dawin")]
    assert shown.columns[0] == "label" and not [c for c in shown.columns if "paper" in c]
    assert list(shown.columns[1:]) == ["id", "ood_avg"]  # Table A's columns only
    assert shown.loc[("ViT-B-32", "dawin"), "ood_avg"] == pytest.approx(value_of("ViT-B-32", "dawin", "ood_avg"))


def test_display_table2_shows_model_soups_beside_the_paper(tidy_results, reference, model_soups):
    rows = PT.select("table2", tidy_results, ["ViT-B-32"])
    shown = PT.display("table2", rows, reference, ROLES, compare=True, second=model_soups)
    assert list(shown.index) == TABLE2
    # model-soups' own published numbers for its soups (uniform_soup_results.jsonl, greedy_soup_results.jsonl)
    assert shown.loc["uniform_soup", "id (model-soups)"] == pytest.approx(79.972)
    assert shown.loc["greedy_soup", "id (model-soups)"] == pytest.approx(81.026)
    assert shown.loc["greedy_soup", "v2 (model-soups)"] == pytest.approx(69.55)
    assert shown.loc["uniform_soup", "a (model-soups)"] == pytest.approx(29.173333)
    assert shown.loc["uniform_soup", "ood_avg (model-soups)"] == pytest.approx(
        (68.51 + 66.54 + 29.1733333 + 47.7057910 + 45.9513298) / 5)
    # the paper's numbers and our difference to them are unchanged
    assert shown.loc["uniform_soup", "id (paper)"] == pytest.approx(79.76)
    assert shown.loc["greedy_soup", "id (Δ)"] == pytest.approx(value_of("ViT-B-32", "greedy_soup", "in") - 80.42)
    assert shown.columns[:5].tolist() == ["label", "id", "id (paper)", "id (Δ)", "id (model-soups)"]
    for m in set(TABLE2) - {"uniform_soup", "greedy_soup"}:  # model-soups has no number for the other rows
        assert math.isnan(shown.loc[m, "id (model-soups)"])
    assert shown.attrs["notes"] == [model_soups.attrs["note"]]


def test_display_second_reference_only_for_its_backbone_and_tables(tidy_results, reference, model_soups):
    # the demo suite: another backbone, whose soups are not model-soups' runs
    demo = tidy_results[tidy_results.backbone == "ViT-B-32"].replace({"backbone": {"ViT-B-32": "tiny"}})
    rows = PT.select("table2", demo, ["tiny"])
    shown = PT.display("table2", rows, reference, ROLES, compare=False, second=model_soups)
    plain = PT.display("table2", rows, reference, ROLES, compare=False)
    assert not [c for c in shown.columns if "model-soups" in c] and not shown.attrs.get("notes")
    pd.testing.assert_frame_equal(shown, plain)
    # a table without soup rows
    rows3 = PT.select("table3", tidy_results, ["ViT-B-32"])
    shown3 = PT.display("table3", rows3, reference, ROLES, compare=True, second=model_soups)
    assert not [c for c in shown3.columns if "model-soups" in c] and not shown3.attrs.get("notes")


# --------------------------------------------------------------------------------------------------
# costs
# --------------------------------------------------------------------------------------------------

def _merged_models():
    rows = [("ViT-B-32", "dawin", d, v) for d, v in zip(["in", "v2", "r"], [3, 3, 2])]
    rows += [("ViT-B-32", "dawin_per_sample", d, 100) for d in ["in", "v2", "r"]]
    rows += [("ViT-B-16", "dawin", d, 5) for d in ["in", "v2", "r"]]  # another backbone: must not count
    return pd.DataFrame([dict(suite="fake", backbone=b, method=m, dataset=d, metric="merged_models", value=float(v))
                         for b, m, d, v in rows], columns=COLUMNS)


def test_costs_from_what_was_run():
    c = PT.costs(_merged_models(), "ViT-B-32", "fake", n_ingredients=4, n_model_stock=2, grid_size=11)
    assert list(c.columns) == COLUMNS and set(c.dataset) == {"all"} and set(c.suite) == {"fake"}
    ci = c[c.metric == "cost_i"].set_index("method").value
    ct = c[c.metric == "cost_t"].set_index("method").value
    assert ci["dawin"] == pytest.approx(2 + 8 / 3)
    assert ci["dawin_per_sample"] == pytest.approx(102)
    assert ci["wise_ft"] == 11 and ci["output_ensemble"] == 2 and ci["zeroshot"] == 1 and ci["uniform_soup"] == 1
    assert ct["uniform_soup"] == 4 and ct["greedy_soup"] == 4 and ct["model_stock"] == 2
    assert ct["dawin"] == 1 and ct["finetuned"] == 1 and ct["zeroshot"] == 0
    assert set(ct.index) == set(TABLE2) and set(ci.index) == set(TABLE2)


def test_costs_without_soups_or_merged_rows():
    c = PT.costs(_merged_models().iloc[:0], "ViT-B-32", "fake", n_ingredients=0, n_model_stock=0, grid_size=3)
    assert not set(c.method) & {"uniform_soup", "greedy_soup", "model_stock"}
    ci = c[c.metric == "cost_i"].set_index("method").value
    assert "dawin" not in ci.index  # no merged evaluations: DaWin's cost is unknown, not guessed
    assert ci["wise_ft"] == 3


def test_costs_shown_in_table2(tidy_results, reference):
    results = pd.concat([tidy_results, _merged_models(),
                         PT.costs(_merged_models(), "ViT-B-32", "fake", 4, 2, 11)], ignore_index=True)
    rows = PT.select("table2", results, ["ViT-B-32"])
    assert set(rows.metric) == {"accuracy", "cost_t", "cost_i"}
    shown = PT.display("table2", rows, reference, ROLES, compare=True)
    assert shown.loc["dawin", "cost_i"] == pytest.approx(2 + 8 / 3)
    assert shown.loc["wise_ft", "cost_i"] == 11
    assert shown.loc["dawin", "cost_i (paper)"] == "O(K+M)"  # the printed text
    assert shown.loc["model_stock", "cost_t (paper)"] == "2+α"


# --------------------------------------------------------------------------------------------------
# write
# --------------------------------------------------------------------------------------------------

def test_write_all_formats(tmp_path, tidy_results, reference):
    rows = PT.select("table2", tidy_results, ["ViT-B-32"])
    shown = PT.display("table2", rows, reference, ROLES, compare=True)
    stem = tmp_path / "table2"
    PT.write("table2", rows, shown, stem, "Table 2 (fake suite, ViT-B-32):")
    back = pd.read_csv(str(stem) + ".csv")
    pd.testing.assert_frame_equal(back, rows, check_exact=False, atol=1e-4)
    md = Path(str(stem) + ".md").read_text()
    assert md.startswith(f"Table 2 (fake suite, ViT-B-32): {caption('table2')}")
    dawin = next(line for line in md.splitlines() if line.startswith("| dawin "))
    assert "DaWin" in dawin and f"{value_of('ViT-B-32', 'dawin', 'in'):.2f} (78.70)" in dawin  # ours (paper)
    assert "(Δ)" not in md and "| v2 (paper)" not in md  # no difference columns, no separate paper columns
    tex = Path(str(stem) + ".tex").read_text()
    assert "\\begin{tabular}" in tex and "\\caption{Table 2 (fake suite" in tex
    html = Path(str(stem) + ".html").read_text()
    assert "<table" in html and "78.70" in html


def test_write_table2_with_model_soups(tmp_path, tidy_results, reference, model_soups):
    rows = PT.select("table2", tidy_results, ["ViT-B-32"])
    shown = PT.display("table2", rows, reference, ROLES, compare=True, second=model_soups)
    stem = tmp_path / "table2"
    PT.write("table2", rows, shown, stem, "Table 2 (paper suite, ViT-B-32):")
    pd.testing.assert_frame_equal(pd.read_csv(str(stem) + ".csv"), rows, check_exact=False, atol=1e-4)  # ours only
    md = Path(str(stem) + ".md").read_text()
    first = md.split("\n\n")[0]
    assert first == f"Table 2 (paper suite, ViT-B-32): {caption('table2')} {model_soups.attrs['note']} {CELLS}"
    for text in ("our uniform and greedy soups use all 72 model-soups runs", "main.py", "(cost 48)",
                 "48-run pool we cannot identify", "second reference"):
        assert text in first
    uniform = next(line for line in md.splitlines() if line.startswith("| uniform_soup"))
    assert "(79.76; model-soups 79.97)" in uniform  # the paper's, then model-soups' own, in our cell
    greedy = next(line for line in md.splitlines() if line.startswith("| greedy_soup"))
    assert "81.03" in greedy and "80.42" in greedy
    tex = Path(str(stem) + ".tex").read_text()
    assert "NUM\\_MODELS = 72" in tex and "model\\_0" in tex and "model-soups 79.97" in tex
    page = Path(str(stem) + ".html").read_text()
    assert "48-run pool we cannot identify" in page and "79.97" in page and "model-soups 79.97" in page


def test_write_demo_table2_caption_has_no_model_soups_note(tmp_path, tidy_results, reference, model_soups):
    demo = tidy_results[tidy_results.backbone == "ViT-B-32"].replace({"backbone": {"ViT-B-32": "tiny"}})
    rows = PT.select("table2", demo, ["tiny"])
    shown = PT.display("table2", rows, reference, ROLES, compare=False, second=model_soups)
    PT.write("table2", rows, shown, tmp_path / "table2", "Table 2 (demo suite, tiny):")
    md = (tmp_path / "table2.md").read_text()
    assert md.startswith(f"Table 2 (demo suite, tiny): {caption('table2')} {CELLS}\n\n")
    assert "model-soups" not in md and "79.97" not in md


def test_report_caption_shows_the_notes():
    import jinja2

    template = jinja2.Template((ROOT / "workflow" / "report" / "table.rst").read_text())

    class Snakemake:
        config = {"suite": "paper"}

        def __init__(self, notes):
            self.params = type("Params", (), dict(source="Table 2", backbones=["ViT-B-32"], caption="c.", notes=notes))

    note = load_second_reference(MODEL_SOUPS).attrs["note"]
    text = template.render(snakemake=Snakemake([note]))
    assert note in text and "48-run pool we cannot identify" in text
    assert "model-soups" not in template.render(snakemake=Snakemake([]))


# --------------------------------------------------------------------------------------------------
# results.collect / backbone_from_path
# --------------------------------------------------------------------------------------------------

def _merged_file(root: Path, backbone: str, kind: str, assignment: str, dataset: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (50,), generator=g)
    pred = torch.where(torch.rand(50, generator=g) < 0.6, labels, (labels + 1) % 4)
    coef = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)[torch.randint(0, 3, (50,), generator=g)]
    ent = torch.rand(50, generator=g)
    path = root / "merged" / backbone / kind / assignment / f"{dataset}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(path, {"pred": pred, "labels": labels, "entropy": ent, "cross_entropy": ent + 1,
                        "coefficients": coef}, {"kind": kind, "assignment": assignment, "dataset": dataset,
                                                **identity.stamp(backbone=backbone, kind=kind, assignment=assignment,
                                                                 dataset=dataset)})
    acc = float((pred == labels).double().mean() * 100)
    return path, acc, float(ent.double().mean()), len(torch.unique(coef))


def test_collect_merged_and_metrics(tmp_path):
    csv = tmp_path / "metrics" / "tiny.csv"
    csv.parent.mkdir()
    metrics = pd.DataFrame([dict(suite="fake", backbone="tiny", method="zeroshot", dataset=d, metric="accuracy",
                                 value=10.0 + i) for i, d in enumerate(["in", "v2", "r", "ood_avg"])], columns=COLUMNS)
    metrics.to_csv(csv, index=False)
    made = {d: _merged_file(tmp_path, "tiny", "entropy", "mixture", d, s) for s, d in enumerate(["in", "v2", "r"])}
    ps_path, ps_acc, _, ps_n = _merged_file(tmp_path, "tiny", "entropy", "per_sample", "in", 9)
    df = R.collect([csv], [m[0] for m in made.values()], suite="fake", ood=["v2", "r"])
    assert list(df.columns) == COLUMNS
    assert not df[COLUMNS[:-1]].duplicated().any()
    get = df.set_index(["method", "dataset", "metric"]).value
    for d, (_, acc, ent, n) in made.items():
        assert get["dawin", d, "accuracy"] == pytest.approx(acc)
        assert get["dawin", d, "entropy"] == pytest.approx(ent)
        assert get["dawin", d, "merged_models"] == n
    assert get["dawin", "ood_avg", "accuracy"] == pytest.approx((made["v2"][1] + made["r"][1]) / 2)
    assert ("dawin", "ood_avg", "entropy") not in get.index  # the OOD average is for accuracy only
    assert get["zeroshot", "v2", "accuracy"] == 11.0 and get["zeroshot", "ood_avg", "accuracy"] == 13.0
    assert set(df.backbone) == {"tiny"} and set(df.suite) == {"fake"}
    # without OOD sets: no average, and the per-sample evaluation is named after its pair
    df2 = R.collect([], [made["in"][0], ps_path], suite="fake")
    get2 = df2.set_index(["method", "dataset", "metric"]).value
    assert get2["dawin_per_sample", "in", "accuracy"] == pytest.approx(ps_acc)
    assert get2["dawin_per_sample", "in", "merged_models"] == ps_n
    assert "ood_avg" not in set(df2.dataset)


def test_collect_ood_average_needs_every_ood_set(tmp_path):
    path = _merged_file(tmp_path, "tiny", "entropy", "mixture", "v2", 0)[0]
    with pytest.raises(ValueError, match="OOD average"):
        R.collect([], [path], suite="fake", ood=["v2", "r"])


def test_collect_nothing():
    df = R.collect()
    assert list(df.columns) == COLUMNS and df.empty


@pytest.mark.parametrize("path, backbone", [
    ("results/merged/ViT-B-32/entropy/mixture/in.safetensors", "ViT-B-32"),
    ("/abs/results/logits/tiny/zeroshot/v2.safetensors", "tiny"),
    ("results/wise_ft/ViT-L-14/r.csv", "ViT-L-14"),
    ("results/coefficients/tiny/entropy.safetensors", "tiny"),
    ("results/profile/tiny.csv/x", "tiny.csv"),
    ("results/analysis/ViT-B-16/optimality.csv", "ViT-B-16"),
    ("results/metrics/ViT-B-32.csv", "ViT-B-32"),
    ("results/metrics/tiny/soups.csv", "tiny"),
])
def test_backbone_from_path(path, backbone):
    assert R.backbone_from_path(path) == backbone


def test_backbone_from_path_unknown_tree():
    with pytest.raises(ValueError, match="cannot tell the backbone"):
        R.backbone_from_path("results/tables/table2.csv")


# --------------------------------------------------------------------------------------------------
# bootstrap intervals and paired comparisons, from per-sample correctness to the reproduction page
# --------------------------------------------------------------------------------------------------

def _correct_file(root: Path, backbone: str, correct: dict) -> Path:
    path = root / "metrics" / f"{backbone}.correct.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(path, {k: torch.as_tensor(v, dtype=torch.uint8) for k, v in correct.items()}, {"backbone": backbone})
    return path


def test_intervals_and_paired_comparison_reach_the_csv_and_the_page(tmp_path, reference):
    from dawin.report.reference import formatted, reproduction_summary
    from dawin.report.uncertainty import accuracy_interval, paired_difference

    sets = ["in", "v2", "r", "a", "sketch", "objectnet"]
    ood = sets[1:]
    merged = [_merged_file(tmp_path, "ViT-B-32", "entropy", "mixture", d, s)[0] for s, d in enumerate(sets)]
    g = np.random.default_rng(0)
    wise = {d: g.random(50) < 0.5 for d in sets}
    path = _correct_file(tmp_path, "ViT-B-32", {f"wise_ft/{d}": c for d, c in wise.items()})
    correct = R.correctness([path], merged)
    assert set(correct) == {("ViT-B-32", "wise_ft"), ("ViT-B-32", "dawin")}
    dawin = correct["ViT-B-32", "dawin"]
    rows = pd.concat([R.interval_rows(correct, ood, "paper"),
                      R.paired_rows(correct, "dawin", ["wise_ft", "dawin_per_sample"], ood, "paper")], ignore_index=True)
    get = rows.set_index(["method", "dataset", "metric"]).value
    assert (get["dawin", "in", "accuracy_low"], get["dawin", "in", "accuracy_high"]) == accuracy_interval(dawin, ["in"])
    assert get["dawin", "ood_avg", "accuracy_low"] == accuracy_interval(dawin, ood)[0]
    paired = paired_difference(dawin, wise, ood)
    assert get["dawin", "ood_avg", "minus_wise_ft"] == pytest.approx(paired["difference"])
    assert get["dawin", "ood_avg", "minus_wise_ft_p_not_better"] == paired["p_not_better"]
    assert not rows.metric.str.contains("dawin_per_sample").any()  # no per-sample evaluation: no comparison
    # table 2 keeps them in its tidy rows; the printed table shows "ours (paper)" only
    acc = R.collect([], merged, "paper", ood)
    results = pd.concat([acc, rows], ignore_index=True)
    kept = PT.select("table2", results, ["ViT-B-32"])
    assert {"accuracy_low", "accuracy_high", "minus_wise_ft"} <= set(kept.metric)
    shown = PT.display("table2", kept, reference, ROLES, compare=True)
    low, high = accuracy_interval(dawin, ["in"])
    assert shown.loc["dawin", "id (low)"] == low and shown.loc["dawin", "id"] == pytest.approx(
        100 * np.mean(dawin["in"]))
    assert "[" not in formatted(shown).loc["dawin", "id"]
    cell = formatted(shown, intervals=True).loc["dawin", "id"]
    verdict = "inside" if low <= 78.70 <= high else "above" if 78.70 > high else "below"
    assert cell == f"{shown.loc['dawin', 'id']:.2f} [{low:.2f}, {high:.2f}] (78.70: {verdict})"
    page = reproduction_summary({"table2": shown})
    assert "95 % bootstrap interval" in page
    assert "Paired: DaWin − WiSE-FT, ViT-B-32; the same resampled test images for both:" in page
    # one small table per comparison: a row per column of the table (the OOD average last), the paired numbers
    lines = page.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Paired: DaWin − WiSE-FT"))
    header, body = lines[at + 2], lines[at + 4:at + 4 + len(sets) + 1]
    assert [c.strip() for c in header.split("|")[1:-1]] == [
        "test set", "difference (points)", "95 % interval", "resamples where DaWin is not better"]
    assert [row.split("|")[1].strip() for row in body] == ["id", "v2", "r", "a", "sketch", "objectnet", "ood_avg"]
    assert [c.strip() for c in body[-1].split("|")[2:-1]] == [
        f"{paired['difference']:+.2f}", f"[{paired['low']:+.2f}, {paired['high']:+.2f}]",
        f"{100 * paired['p_not_better']:.1f} %"]
    assert "Paired: DaWin − DaWin w/o mixture" not in page  # no per-sample evaluation: no table for it
    # without the comparison (the demo) the interval is shown, no verdict
    demo = formatted(PT.display("table2", kept, reference, ROLES, compare=False), intervals=True)
    assert demo.loc["dawin", "id"].endswith("] (78.70)")


def test_multitask_tables_split_the_pools(reference):
    """Table 6 is the pool of all tasks, Table G the other pools, each keeping its tidy rows and the pool."""
    rows = [dict(suite="fake", backbone="ViT-B-32", method=m, dataset=t, metric="accuracy", value=v, pool=pool)
            for pool, tasks in (("all", ["svhn", "eurosat"]), ("svhn+eurosat", ["svhn", "eurosat"]))
            for m, v in (("task_arithmetic", 70.0), ("dawin", 80.0)) for t in tasks]
    results = pd.DataFrame(rows)
    six, g = PT.select("table6", results, ["ViT-B-32"]), PT.select("table_g", results, ["ViT-B-32"])
    assert set(six.pool) == {"all"} and set(g.pool) == {"svhn+eurosat"}
    assert list(six.columns) == [*COLUMNS, "pool"] and len(six) == len(g) == 4
    shown = PT.display("table_g", g, reference, {"svhn": "svhn", "eurosat": "eurosat"}, compare=False,
                       pools={"svhn+eurosat": ["svhn", "eurosat"]})
    assert shown.loc[("dawin", "svhn,eurosat"), "svhn"] == 80.0 and shown.attrs["paired"] == []


def test_with_derived_adds_intervals_to_every_table_and_pairs_and_costs_to_table2():
    import numpy as np
    rng = np.random.default_rng(0)
    correct = {("ViT-B-32", m): {d: rng.random(50) < p for d in ("in", "v2")}
               for m, p in (("dawin", 0.8), ("wise_ft", 0.6), ("dawin_per_sample", 0.7))}
    base = _merged_models()
    t2 = PT.with_derived("table2", base, correct, ood=["v2"], suite="fake", backbones=["ViT-B-32"], grid_size=11,
                         soups={"ViT-B-32": {"n_ingredients": 4, "n_model_stock": 2}})
    t3 = PT.with_derived("table3", base, correct, ood=["v2"], suite="fake")
    assert len(t2) > len(t3) > len(base) and t2.iloc[:len(base)].equals(base)
    assert {"accuracy_low", "accuracy_high"} <= set(t3.metric) and not {"cost_t", "cost_i"} & set(t3.metric)
    added = t2.iloc[len(base):]
    pd.testing.assert_frame_equal(added[added.metric.isin(["cost_t", "cost_i"])].reset_index(drop=True),
                                  PT.costs(base, "ViT-B-32", "fake", 4, 2, 11))
    from dawin.report.results import paired_metrics
    paired = {m for other in PT.PAIRED["table2"][1] for m in paired_metrics(other)}
    assert set(added.metric) - set(t3.metric) - {"cost_t", "cost_i"} == paired


# --------------------------------------------------------------------------------------------------
# the multi-task tables' intervals and paired comparisons, from the pools' per-sample correctness
# --------------------------------------------------------------------------------------------------

MT_ROLES = {"angular": "stanford_cars", "colour": "eurosat", "count": "svhn", "direction": "gtsrb",
            "position": "resisc45", "round": "mnist", "scene": "sun397", "texture": "dtd"}
MT_TASKS = sorted(MT_ROLES)


def _pool_files(root: Path, n: int = 50) -> tuple[list[Path], dict]:
    """Pool `all` (DaWin right on the first 30 images of each task, task arithmetic on the first 25, TIES on the
    first 35, AdaMerging on random ones), the individuals, and pool `count+colour` (Table G), written as the
    workflow writes them; their correctness by (pool, method)."""
    rng = np.random.default_rng(1)
    first = lambda k: {t: np.arange(n) < k for t in MT_TASKS}  # noqa: E731
    pools = {"all": {"pretrained": {t: rng.random(n) < 0.3 for t in MT_TASKS}, "dawin": first(30),
                     "task_arithmetic": first(25), "ties": first(35),
                     "adamerging_layer": {t: rng.random(n) < 0.5 for t in MT_TASKS}},
             "count+colour": {"task_arithmetic": {t: rng.random(n) < 0.5 for t in ("count", "colour")},
                              "dawin": {t: rng.random(n) < 0.6 for t in ("count", "colour")}}}
    individual = {t: rng.random(n) < 0.9 for t in MT_TASKS}
    files = []
    for pool, correct in pools.items():
        files.append(root / "multitask" / pool / "correct.safetensors")
        files[-1].parent.mkdir(parents=True, exist_ok=True)
        R.write_pool_correctness(files[-1], correct, backbone="tiny", pool=pool)
    files.append(root / "multitask" / "individual.correct.safetensors")
    R.write_pool_correctness(files[-1], {"individual": individual}, backbone="tiny", pool="all")
    return files, {**{(p, m): c for p, by in pools.items() for m, c in by.items()}, ("all", "individual"): individual}


def _mt_accuracies(truth: dict) -> pd.DataFrame:
    """multitask/metrics.csv as the workflow writes it: accuracies per task, and the average over pool all's tasks."""
    rows = [dict(suite="demo", backbone="tiny", pool=p, method=m, dataset=t, metric="accuracy", value=100 * c.mean())
            for (p, m), sets in truth.items() for t, c in sets.items()]
    rows += [dict(suite="demo", backbone="tiny", pool="all", method=m, dataset="avg", metric="accuracy",
                  value=float(np.mean([100 * c.mean() for c in sets.values()])))
             for (p, m), sets in truth.items() if p == "all"]
    return pd.DataFrame(rows)


def test_pool_correctness_reads_what_the_pool_jobs_write(tmp_path):
    files, truth = _pool_files(tmp_path)
    correct = R.pool_correctness(files)
    assert set(correct) == {"all", "count+colour"}
    assert set(correct["all"]) == {("tiny", m) for m in ("pretrained", "dawin", "task_arithmetic", "ties",
                                                         "adamerging_layer", "individual")}
    for (pool, method), sets in truth.items():
        got = correct[pool]["tiny", method]
        assert set(got) == set(sets) and all(np.array_equal(got[t], sets[t]) for t in sets)
    # the pool jobs write torch tensors: uint8 0/1 in the file, bool when read
    R.write_pool_correctness(tmp_path / "t.safetensors", {"dawin": {"count": torch.tensor([True, False, True])}},
                             backbone="tiny", pool="count+round")
    back = R.pool_correctness([tmp_path / "t.safetensors"])["count+round"]["tiny", "dawin"]["count"]
    assert back.dtype == bool and back.tolist() == [True, False, True]
    with pytest.raises(ValueError, match="also in another correctness file"):  # a file twice
        R.pool_correctness([files[0], files[0]])
    robust = _correct_file(tmp_path, "tiny", {"wise_ft/in": np.ones(4)})
    with pytest.raises(ValueError, match="no pool in its metadata.*rerun snakemake"):
        R.pool_correctness([robust])


def test_table6_intervals_are_the_bootstrap_of_each_task_and_of_the_average(tmp_path, reference):
    from dawin.report.uncertainty import accuracy_interval
    files, truth = _pool_files(tmp_path)
    results = _mt_accuracies(truth)
    table6 = PT.with_derived("table6", results, R.pool_correctness(files[:1] + files[2:]), ood=[], suite="demo")
    rows = PT.select("table6", table6, ["tiny"])
    assert set(rows.pool) == {"all"}
    got = rows.set_index(["method", "dataset", "metric"]).value
    for method in ("dawin", "individual", "pretrained", "adamerging_layer"):
        sets = truth["all", method]
        for t in MT_TASKS:  # each task on its own
            assert (got[method, t, "accuracy_low"], got[method, t, "accuracy_high"]) == accuracy_interval(sets, [t])
        # the average over the 8 tasks: each task's test set resampled on its own
        assert (got[method, "avg", "accuracy_low"], got[method, "avg", "accuracy_high"]) == accuracy_interval(
            sets, MT_TASKS)
        assert got[method, "avg", "accuracy_low"] <= got[method, "avg", "accuracy"] <= got[method, "avg", "accuracy_high"]
    # the table and the page print "ours [low, high]" for every accuracy, the average included
    shown = PT.display("table6", rows, reference, MT_ROLES, compare=False)
    from dawin.report.reference import formatted
    low, high = accuracy_interval(truth["all", "dawin"], MT_TASKS)
    assert formatted(shown, intervals=True).loc["dawin", "avg"].startswith(
        f"{shown.loc['dawin', 'avg']:.2f} [{low:.2f}, {high:.2f}]")
    # Table G: each pool's own intervals, no average (its pools have none), no paired comparison
    g = PT.select("table_g", PT.with_derived("table_g", results, R.pool_correctness([files[1]]), ood=[], suite="demo"),
                  ["tiny"])
    gg = g.set_index(["pool", "method", "dataset", "metric"]).value
    assert gg["count+colour", "dawin", "count", "accuracy_low"] == accuracy_interval(truth["count+colour", "dawin"],
                                                                                     ["count"])[0]
    assert "avg" not in set(g.dataset) and not g.metric.str.startswith("minus_").any()


def test_table6_pairs_dawin_with_the_static_merges_and_adamerging_by_direct_arithmetic(tmp_path, reference):
    """DaWin is right on the first 30 of 50 images of every task, task arithmetic on the first 25 (a subset), TIES
    on the first 35 (a superset): by hand, +10 and -10 points on every task and on the average, and no resample
    can reverse either sign."""
    from dawin.report.reference import reproduction_html, reproduction_summary
    from dawin.report.uncertainty import paired_difference
    from dawin.registry import MERGING_METHODS
    assert PT.PAIRED["table6"] == ("dawin", ("task_arithmetic", "ties", "adamerging_layer", "adamerging_pp_layer"))
    assert all(m in MERGING_METHODS for m in PT.PAIRED["table6"][1])
    files, truth = _pool_files(tmp_path)
    rows = PT.select("table6", PT.with_derived("table6", _mt_accuracies(truth), R.pool_correctness(files),
                                               ood=[], suite="demo"), ["tiny"])
    got = rows[rows.method == "dawin"].set_index(["dataset", "metric"]).value
    for dataset in [*MT_TASKS, "avg"]:
        assert got[dataset, "minus_task_arithmetic"] == pytest.approx(10.0)
        assert got[dataset, "minus_ties"] == pytest.approx(-10.0)
    assert got["avg", "minus_task_arithmetic_low"] > 0 and got["avg", "minus_task_arithmetic_p_not_better"] == 0.0
    assert got["avg", "minus_ties_high"] < 0 and got["avg", "minus_ties_p_not_better"] == 1.0
    # the same machinery as Table 2: the paired bootstrap of dawin.report.uncertainty over the 8 tasks
    ada = paired_difference(truth["all", "dawin"], truth["all", "adamerging_layer"], MT_TASKS)
    assert (got["avg", "minus_adamerging_layer"], got["avg", "minus_adamerging_layer_low"],
            got["avg", "minus_adamerging_layer_high"], got["avg", "minus_adamerging_layer_p_not_better"]) == (
        pytest.approx(ada["difference"]), ada["low"], ada["high"], ada["p_not_better"])
    assert not rows.metric.str.contains("adamerging_pp_layer").any()  # not run: no comparison
    assert set(PT.table_metrics("table6")) >= {"minus_ties_p_not_better", "accuracy_low"}
    # the page: one small table per comparison, the tasks by their paper columns, the average last
    shown = PT.display("table6", rows, reference, MT_ROLES, compare=False)
    assert [(p["method"], p["other"]) for p in shown.attrs["paired"]] == [
        ("DaWin", "Task arithmetic (0.3)"), ("DaWin", "TIES-merging"), ("DaWin", "AdaMerging (layer-wise)")]
    ties = shown.attrs["paired"][1]["rows"]
    assert [r["column"] for r in ties] == ["sun397", "stanford_cars", "resisc45", "eurosat", "svhn", "gtsrb", "mnist",
                                           "dtd", "avg"]
    page = reproduction_summary({"table6": shown})
    assert "Paired: DaWin − TIES-merging, tiny; the same resampled test images for both:" in page
    lines = page.splitlines()
    at = lines.index("Paired: DaWin − TIES-merging, tiny; the same resampled test images for both:")
    assert [c.strip() for c in lines[at + 2 + 9 + 1].split("|")[1:-1]] == [
        "avg", "-10.00", f"[{got['avg', 'minus_ties_low']:+.2f}, {got['avg', 'minus_ties_high']:+.2f}]", "100.0 %"]
    assert "Paired: DaWin − TIES-merging, tiny; the same resampled test images for both:</p>" in reproduction_html(
        {"table6": shown})
