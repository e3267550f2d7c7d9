import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dawin.reference import (
    EXPECTED_TABLES,
    LONG_COLUMNS,
    ReferenceFormatError,
    attach_reference,
    load_reference,
    reference_for,
    reference_settings,
    reproduction_html,
    reproduction_summary,
)

REF = Path(__file__).resolve().parents[1] / "config" / "paper_reference.yaml"

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
    s = reference_settings(REF)
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
    assert "CaRot (reported)" in md and "0.0382" in md and "+0.0018" in md
    page = reproduction_html({"table3": t3})
    assert page.startswith("<!DOCTYPE html>") and "<table" in page and "CaRot (reported)" in page


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
