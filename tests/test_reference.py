import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dawin.report.reference import (
    EXPECTED_TABLES,
    LONG_COLUMNS,
    MODEL_SOUPS_COMMIT,
    MODEL_SOUPS_FILES,
    SECOND_COLUMNS,
    ReferenceFormatError,
    attach_reference,
    attach_second_reference,
    formatted,
    load_reference,
    load_second_reference,
    model_soups_reference,
    model_soups_results,
    reference_for,
    reproduction_html,
    reproduction_summary,
    write_model_soups_reference,
    write_second_reference,
)

REF = Path(__file__).resolve().parents[1] / "workflow" / "resources" / "paper_reference.yaml"
MODEL_SOUPS_REF = Path(__file__).resolve().parents[1] / "workflow" / "resources" / "model_soups_reference.yaml"
MODEL_SOUPS_MIRROR = Path("/work/.mirror/mlfoundations+model-soups/repo")  # a bare clone, where one exists

# Exact lines of model-soups' results files at d5398f1 (uniform_soup_results.jsonl, greedy_soup_results.jsonl,
# the first two lines of individual_model_results.jsonl).
UNIFORM_LINE = (
    '{"model_name": "uniform_soup", "ImageNet2p": 0.8270384615384615, "ImageNet": 0.79972, "ImageNetV2": 0.6851, '
    '"ImageNetSketch": 0.47705791035390754, "ImageNetR": 0.6654, "ObjectNet": 0.4595132981587165, '
    '"ImageNetA": 0.29173333333333334}')
GREEDY_LINE = (
    '{"model_name": "greedy_soup", "ImageNet2p": 0.8397692307692308, "ImageNet": 0.81026, "ImageNetV2": 0.6955, '
    '"ImageNetSketch": 0.4777456817779874, "ImageNetR": 0.6420333333333333, "ObjectNet": 0.4489609131043394, '
    '"ImageNetA": 0.2789333333333333}')
MODEL_0_LINE = (
    '{"model_name": "model_0", "ImageNet2p": 0.7808076923076923, "ImageNet": 0.75574, "ImageNetV2": 0.6409, '
    '"ImageNetSketch": 0.40529387490420327, "ImageNetR": 0.6223666666666666, "ObjectNet": 0.42317217616022396, '
    '"ImageNetA": 0.2657333333333333}')
MODEL_1_LINE = (
    '{"model_name": "model_1", "ImageNet2p": 0.7984615384615384, "ImageNet": 0.77266, "ImageNetV2": 0.6579, '
    '"ImageNetSketch": 0.433472852679361, "ImageNetR": 0.6258, "ObjectNet": 0.41794982233229244, '
    '"ImageNetA": 0.23386666666666667}')
# The same accuracies in %, by hand from the lines above; ood_avg = mean of v2, r, a, sketch, objectnet.
UNIFORM_PCT = {"heldout": 82.703846, "id": 79.972, "v2": 68.51, "r": 66.54, "a": 29.173333, "sketch": 47.705791,
               "objectnet": 45.95133, "ood_avg": (68.51 + 66.54 + 29.1733333 + 47.7057910 + 45.9513298) / 5}
MODEL_0_PCT = {"heldout": 78.080769, "id": 75.574, "v2": 64.09, "r": 62.236667, "a": 26.573333, "sketch": 40.529387,
               "objectnet": 42.317218, "ood_avg": (64.09 + 62.2366667 + 26.5733333 + 40.5293875 + 42.3172176) / 5}

ROWS_PER_TABLE = {
    "table1": 5, "table2": 9, "table3": 11, "table4": 8, "table5": 12, "table6": 12,
    "table_a": 6, "table_b": 8, "table_c": 4, "table_d": 9, "table_e": 3, "table_f": 3, "table_g": 12,
}


@pytest.fixture(scope="module")
def ref():
    return load_reference(REF)


def _cell(ref, table, method, column, backbone=None, pool=None):
    sub = ref[(ref.table == table) & (ref.method == method) & (ref.column == column)]
    if backbone:
        sub = sub[sub.backbone == backbone]
    if pool:
        sub = sub[sub.pool == pool]
    assert len(sub) == 1, (table, method, column, backbone, pool)
    return sub.iloc[0]


def test_all_tables_present_with_their_row_counts(ref):
    assert list(ref.columns) == LONG_COLUMNS
    assert set(EXPECTED_TABLES) == set(ref.table)
    for table, n in ROWS_PER_TABLE.items():
        rows = reference_for(ref, table)[["backbone", "method", "pool"]].drop_duplicates()
        assert len(rows) == n, table
    assert reference_for(ref, "Table 2").table.unique().tolist() == ["table2"]


def test_pinned_numbers(ref):
    assert _cell(ref, "table1", "zeroshot", "id").value == 63.4
    assert _cell(ref, "table1", "oracle_sample", "ood_avg").value == 60.6
    assert _cell(ref, "table2", "dawin", "id").value == 78.70
    assert _cell(ref, "table2", "dawin", "ood_avg").value == 54.36
    assert _cell(ref, "table2", "greedy_soup", "id").value == 80.42
    assert _cell(ref, "table2", "model_stock", "cost_t").text == "2+α"
    assert _cell(ref, "table2", "dawin", "cost_i").text == "O(K+M)"
    assert math.isnan(_cell(ref, "table2", "dawin", "cost_i").value)
    assert _cell(ref, "table3", "dawin", "ood_avg").value == 66.9
    assert _cell(ref, "table3", "carot", "id").reported_only
    assert _cell(ref, "table4", "model_stock", "id").value == 87.7
    assert _cell(ref, "table5", "doe", "ood_avg", backbone="ViT-L-14").value == 75.14
    assert _cell(ref, "table6", "dawin", "avg").value == 86.3
    assert _cell(ref, "table6", "individual", "eurosat").value == 99.8
    assert _cell(ref, "table6", "pareto_merging", "avg").reported_only
    assert _cell(ref, "table_a", "dawin_no_offset", "id", backbone="ViT-B-16").value == 83.1
    assert _cell(ref, "table_b", "dawin_batch_32", "id").value == 78.55
    assert _cell(ref, "table_c", "mse_ce_ratio", "v2").value == 0.1559
    assert _cell(ref, "table_d", "coef_max_logit", "id").value == 76.6
    assert _cell(ref, "table_e", "dawin_no_calibration", "id").value == 76.6
    assert _cell(ref, "table_f", "dawin", "runtime_s").value == 1802
    assert _cell(ref, "table_f", "dawin", "gflops_per_sample").value == 13.2452
    assert _cell(ref, "table_g", "dawin", "eurosat", pool="svhn,mnist,eurosat,resisc45").value == 99.7
    assert _cell(ref, "table_g", "adamerging_pp_layer", "svhn", pool="svhn,mnist").value == 94.1


def test_settings():
    s = load_reference(REF).attrs
    assert s["temperatures"]["ViT-B-32"] == {"zs": 0.9576, "ft": 0.9733}
    assert s["temperatures"]["ViT-L-14"] == {"zs": 1.0767, "ft": 0.9545}
    assert s["mixture_components"] == {"ViT-B-32": 3, "ViT-B-16": 5, "ViT-L-14": 2}


def test_attach_reference_delta_and_reported_rows(ref):
    ours = pd.DataFrame({"id": [68.0, 83.0], "ood_avg": [58.0, float("nan")]}, index=["zeroshot", "dawin"])
    out = attach_reference(ours, ref, "table3", compare=True)
    assert out.loc["zeroshot", "id (paper)"] == 68.3
    assert out.loc["zeroshot", "id (Δ)"] == pytest.approx(68.0 - 68.3)
    assert out.loc["zeroshot", "ood_avg (Δ)"] == pytest.approx(58.0 - 57.7)
    assert out.loc["dawin", "id (Δ)"] == pytest.approx(83.0 - 83.4)
    assert math.isnan(out.loc["dawin", "ood_avg (Δ)"])
    reported = ["lp_ft", "car_ft", "flyp", "lipsum_ft", "carot"]
    assert list(out.index) == ["zeroshot", "dawin", *reported]
    assert out.loc["carot", "label"] == "CaRot (reported)"
    assert math.isnan(out.loc["carot", "id"]) and out.loc["carot", "ood_avg (paper)"] == 64.0
    assert math.isnan(out.loc["carot", "id (Δ)"])
    assert out.loc["dawin", "label"] == "DaWin"
    assert list(out.columns) == ["label", "id", "id (paper)", "id (Δ)", "ood_avg", "ood_avg (paper)", "ood_avg (Δ)"]

    plain = attach_reference(ours, ref, "table3", compare=False)
    assert not any(c.endswith("(Δ)") for c in plain.columns)


def test_attach_reference_text_multi_backbone_and_pool(ref):
    ours2 = pd.DataFrame({"id": [78.5]}, index=["dawin"])
    t2 = attach_reference(ours2, ref, "table2", compare=True)
    assert t2.loc["dawin", "cost_i (paper)"] == "O(K+M)" and "cost_i" not in t2.columns
    assert t2.loc["dawin", "id (Δ)"] == pytest.approx(-0.2)
    assert math.isnan(t2.loc["dawin", "ood_avg"])

    with pytest.raises(ValueError, match="backbone"):
        attach_reference(ours2, ref, "table5", compare=True)
    ours5 = pd.DataFrame({"id": [87.0]}, index=pd.MultiIndex.from_tuples([("ViT-L-14", "dcs")], names=["backbone", "method"]))
    t5 = attach_reference(ours5, ref, "table5", compare=True)
    assert t5.loc[("ViT-L-14", "dcs"), "id (Δ)"] == pytest.approx(87.0 - 86.53)

    oursg = pd.DataFrame({"svhn": [90.0]}, index=pd.MultiIndex.from_tuples([("dawin", "svhn,mnist")]))
    tg = attach_reference(oursg, ref, "table_g", compare=True)
    assert tg.iloc[0]["svhn (Δ)"] == pytest.approx(-0.5)

    tf = attach_reference(pd.DataFrame({"runtime_s": [1000.0]}, index=["wise_ft"]), ref, "table_f", compare=True)
    assert "gflops_per_sample (paper)" in tf.columns and "runtime (paper)" not in tf.columns
    assert tf.loc["wise_ft", "runtime_s (Δ)"] == -40


def test_reproduction_summary(ref):
    t3 = attach_reference(pd.DataFrame({"id": [68.0], "ood_avg": [58.0]}, index=["zeroshot"]), ref, "table3", True)
    tc = attach_reference(pd.DataFrame({"id": [0.04]}, index=["mse_ce_ratio"]), ref, "table_c", True)
    md = reproduction_summary({"table3": t3, "table_c": tc})
    assert "## Table 3: Accuracy on ImageNet" in md and "## Table C" in md
    assert "Mean |Δ| over 2 comparable cells: 0.30" in md
    assert "CaRot (reported)" in md and "0.0400 (0.0382)" in md and "Mean |Δ| over 1 comparable cells: 0.0018" in md
    page = reproduction_html({"table3": t3})
    assert page.startswith("<!DOCTYPE html>") and "<table" in page and "CaRot (reported)" in page
    # the demo's tables are built without the comparison: its page prints no mean |Δ| against the paper
    demo = attach_reference(pd.DataFrame({"id": [68.0], "ood_avg": [58.0]}, index=["zeroshot"]), ref, "table3", False)
    md = reproduction_summary({"table3": demo})
    assert "Mean |Δ|" not in md and "Not comparable with the paper's numbers" in md and "68.00 (" in md


def test_formatted_puts_ours_and_the_papers_number_in_one_cell(ref):
    ours = pd.DataFrame({"id": [68.0, float("nan")], "ood_avg": [58.0, float("nan")]}, index=["zeroshot", "wise_ft"])
    shown = formatted(attach_reference(ours, ref, "table3", compare=True))
    assert "id (paper)" not in shown.columns and "id (Δ)" not in shown.columns
    zs = shown.loc["zeroshot"]
    paper = reference_for(ref, "table3")
    paper_id = paper[(paper.method == "zeroshot") & (paper.column == "id")].value.iloc[0]
    assert zs["id"] == f"68.00 ({paper_id:.2f})"
    # a column where neither we nor the paper have a value is dropped; a missing number is an em dash
    assert all(shown[c].ne("—").any() for c in shown.columns if c != "label")
    assert shown.loc["wise_ft", "id"].startswith("— (")


def _write(tmp_path, doc):
    p = tmp_path / "ref.yaml"
    p.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return p


def _doc(**row_overrides):
    row = {"backbone": "ViT-B-32", "method": "dawin", "label": "DaWin", "values": {"id": 78.7}}
    row.update(row_overrides)
    return {"tables": {"table2": {"source": "Table 2", "title": "t", "rows": [row]}}}


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"tabels": {}}, "unknown top-level key"),
        (_doc(colour="red"), r"unknown key\(s\) \['colour'\]"),
        (_doc(values={"id": "78.7"}), "value of 'id' must be a number"),
        (_doc(values={"cost_t": 1}), "'cost_t' is a text column"),
        (_doc(backbone="ViT-B/32"), "unknown backbone"),
        (_doc(reported_only="yes"), "reported_only"),
        ({"tables": {"table2": {"source": "Table 2", "rows": []}}}, r"missing key\(s\) \['title'\]"),
        ({"tables": {"table2": {"source": "Table 2", "title": "t", "rows": []}}}, "non-empty list"),
    ],
)
def test_invalid_structure_is_a_clear_error(tmp_path, doc, message):
    with pytest.raises(ReferenceFormatError, match=message):
        load_reference(_write(tmp_path, doc))


def test_duplicate_rows_are_rejected(tmp_path):
    doc = _doc()
    doc["tables"]["table2"]["rows"].append(dict(doc["tables"]["table2"]["rows"][0]))
    with pytest.raises(ReferenceFormatError, match=r"tables\.table2\.rows\[1\] \(dawin\): duplicate row"):
        load_reference(_write(tmp_path, doc))


# --------------------------------------------------------------------------------------------------
# the second reference: model-soups' published numbers
# --------------------------------------------------------------------------------------------------

def test_model_soups_results_converts_upstream_lines_to_percent():
    got = model_soups_results([UNIFORM_LINE, "", MODEL_0_LINE])
    assert list(got) == ["uniform_soup", "model_0"]
    for name, want in (("uniform_soup", UNIFORM_PCT), ("model_0", MODEL_0_PCT)):
        assert list(got[name]) == ["heldout", "id", "v2", "r", "a", "sketch", "objectnet", "ood_avg"]
        for col, v in want.items():
            assert got[name][col] == pytest.approx(v, abs=1e-6), (name, col)
    assert got["uniform_soup"]["id"] == 79.972 and got["uniform_soup"]["v2"] == 68.51  # exact, no float noise


@pytest.mark.parametrize("line, message", [
    ('{"model_name": "m", "ImageNet": 0.5}', "exactly the keys"),
    (UNIFORM_LINE.replace('"model_name": "uniform_soup", ', ""), "model_name"),
])
def test_model_soups_results_rejects_other_records(line, message):
    with pytest.raises(ReferenceFormatError, match=message):
        model_soups_results([line])


def test_model_soups_results_rejects_a_model_twice():
    with pytest.raises(ReferenceFormatError, match="line 2"):
        model_soups_results([UNIFORM_LINE, UNIFORM_LINE])


def _checkout(tmp_path):
    """A model-soups checkout with its three results files, two individual runs only."""
    root = tmp_path / "model-soups"
    root.mkdir()
    for name, lines in zip(MODEL_SOUPS_FILES, ([UNIFORM_LINE], [GREEDY_LINE], [MODEL_0_LINE, MODEL_1_LINE])):
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def test_second_reference_round_trip(tmp_path):
    doc = model_soups_reference(_checkout(tmp_path))
    assert doc["name"] == "model-soups" and doc["backbone"] == "ViT-B-32" and doc["tables"] == ["table2"]
    assert doc["source"] == {"repository": "mlfoundations/model-soups", "commit": MODEL_SOUPS_COMMIT,
                             "files": list(MODEL_SOUPS_FILES)}
    assert doc["runs"] == 2 and list(doc["models"]) == ["uniform_soup", "greedy_soup", "model_0", "model_1"]
    path = tmp_path / "ms.yaml"
    write_second_reference(doc, path)
    second = load_second_reference(path)
    assert list(second.columns) == SECOND_COLUMNS and set(second.backbone) == {"ViT-B-32"}
    cell = second.set_index(["method", "column"]).value
    for col, v in UNIFORM_PCT.items():
        assert cell["uniform_soup", col] == pytest.approx(v, abs=1e-6)
    assert cell["greedy_soup", "id"] == 81.026 and cell["model_1", "a"] == pytest.approx(23.386667)
    assert second.attrs["name"] == "model-soups" and second.attrs["runs"] == 2
    assert second.attrs["source"]["commit"] == MODEL_SOUPS_COMMIT
    write_second_reference(doc, tmp_path / "again.yaml")  # deterministic bytes
    assert (tmp_path / "again.yaml").read_bytes() == path.read_bytes()


@pytest.mark.parametrize("change, message", [
    ({"runs": 3}, "'runs' is 3 but 'models' lists 2"),
    ({"backbone": "ViT-B/32"}, "unknown backbone"),
    ({"tables": ["table9"]}, "'tables' must be a list of table keys"),
    ({"models": {"uniform_soup": {"id": "79.9"}}}, "must map column keys to numbers"),
    ({"colour": "red"}, "unknown key"),
])
def test_second_reference_invalid_is_a_clear_error(tmp_path, change, message):
    doc = {**model_soups_reference(_checkout(tmp_path)), **change}
    path = tmp_path / "bad.yaml"
    write_second_reference(doc, path)
    with pytest.raises(ReferenceFormatError, match=message):
        load_second_reference(path)


def test_shipped_model_soups_reference():
    """workflow/resources/model_soups_reference.yaml: model-soups' soups and all 72 runs (main.py: NUM_MODELS = 72)."""
    second = load_second_reference(MODEL_SOUPS_REF)
    methods = list(dict.fromkeys(second.method))
    assert methods == ["uniform_soup", "greedy_soup", *(f"model_{i}" for i in range(72))]
    assert second.attrs["runs"] == 72 and second.attrs["tables"] == ["table2"]
    assert second.attrs["source"]["commit"] == MODEL_SOUPS_COMMIT
    cell = second.set_index(["method", "column"]).value
    converted = model_soups_results([UNIFORM_LINE, GREEDY_LINE, MODEL_0_LINE, MODEL_1_LINE])
    for model, values in converted.items():
        for col, v in values.items():
            assert cell[model, col] == v, (model, col)
    assert cell["greedy_soup", "id"] == 81.026 and cell["uniform_soup", "id"] == 79.972
    note = second.attrs["note"]
    assert "all 72 model-soups runs" in note and "NUM_MODELS = 72" in note
    assert "(cost 48)" in note and "48-run pool we cannot identify" in note and "second reference" in note


@pytest.mark.skipif(not MODEL_SOUPS_MIRROR.exists(), reason="no local clone of mlfoundations/model-soups")
def test_shipped_model_soups_reference_regenerates_from_upstream(tmp_path):
    import subprocess

    checkout = tmp_path / "ms"
    checkout.mkdir()
    for name in MODEL_SOUPS_FILES:
        text = subprocess.run(["git", "-C", str(MODEL_SOUPS_MIRROR), "show", f"{MODEL_SOUPS_COMMIT}:{name}"],
                              check=True, capture_output=True, text=True).stdout
        (checkout / name).write_text(text)
    write_model_soups_reference(checkout, tmp_path / "out.yaml")
    assert (tmp_path / "out.yaml").read_bytes() == MODEL_SOUPS_REF.read_bytes()


def test_attach_second_reference_beside_the_paper(ref):
    second = load_second_reference(MODEL_SOUPS_REF)
    ours = pd.DataFrame({"id": [80.0, 78.0], "ood_avg": [51.0, 54.0]}, index=["uniform_soup", "dawin"])
    t2 = attach_reference(ours, ref, "table2", compare=True)
    out = attach_second_reference(t2, second, "ViT-B-32")
    assert list(out.columns[:9]) == ["label", "id", "id (paper)", "id (Δ)", "id (model-soups)",
                                     "ood_avg", "ood_avg (paper)", "ood_avg (Δ)", "ood_avg (model-soups)"]
    assert out.loc["uniform_soup", "id (model-soups)"] == 79.972
    assert out.loc["uniform_soup", "id (paper)"] == 79.76  # the paper's own number stays
    assert math.isnan(out.loc["dawin", "id (model-soups)"])
    assert out.attrs["notes"] == [second.attrs["note"]] and out.attrs["table"] == "table2"
    assert "notes" not in t2.attrs  # the input is left alone
    # another backbone, or a table the reference does not list: unchanged
    assert attach_second_reference(t2, second, "ViT-B-16") is t2
    t3 = attach_reference(ours.rename(index={"uniform_soup": "wise_ft"}), ref, "table3", compare=True)
    assert attach_second_reference(t3, second, "ViT-B-32") is t3


def test_reproduction_summary_shows_second_reference_notes(ref):
    second = load_second_reference(MODEL_SOUPS_REF)
    t2 = attach_second_reference(
        attach_reference(pd.DataFrame({"id": [80.0]}, index=["greedy_soup"]), ref, "table2", True), second, "ViT-B-32")
    md = reproduction_summary({"table2": t2})
    assert "48-run pool we cannot identify" in md and "model-soups 81.03" in md
