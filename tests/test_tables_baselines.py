import pandas as pd
import pytest
import torch

from dawin.baselines import output_ensemble_grid, output_ensemble_probs, select_on_validation
from dawin.logits import load_logits, save_logits
from dawin.tables import tidy, wide, with_ood_average, write_table


def test_selection_prefers_best_then_smallest():
    assert select_on_validation({0.1: 50.0, 0.5: 70.0, 0.7: 70.0, 0.9: 60.0}) == 0.5


def test_output_ensemble_is_the_weighted_probability_average():
    z0, z1 = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    p = output_ensemble_probs(z0, z1, 0.25, t0=2.0, t1=1.0)
    expected = 0.75 * torch.softmax(z0.double() / 2, -1) + 0.25 * torch.softmax(z1.double(), -1)
    assert torch.allclose(p, expected)
    per_sample = output_ensemble_probs(torch.cat([z0, z0]), torch.cat([z1, z1]), torch.tensor([0.0, 1.0]))
    assert torch.allclose(per_sample[0], torch.softmax(z0.double(), -1)[0])
    assert torch.allclose(per_sample[1], torch.softmax(z1.double(), -1)[0])
    grid = output_ensemble_grid(torch.cat([z0, z0]), torch.cat([z1, z1]), torch.tensor([0, 1]), [0.1, 0.9])
    assert grid == {0.1: 50.0, 0.9: 50.0}


def _rows():
    r = []
    for m, vals in {"zeroshot": (60, 50, 40), "finetuned": (80, 30, 20)}.items():
        for d, v in zip(["id", "o1", "o2"], vals):
            r.append(dict(suite="s", backbone="b", method=m, dataset=d, metric="accuracy", value=v))
    return r


def test_ood_average_and_wide_table(tmp_path):
    df = with_ood_average(tidy(_rows()), ["o1", "o2"])
    avg = df[df.dataset == "ood_avg"].set_index("method").value
    assert avg["zeroshot"] == 45 and avg["finetuned"] == 25
    table = wide(df, ["zeroshot", "finetuned"], ["id", "ood_avg"])
    assert list(table.index) == ["ZS", "FT"] and table.loc["FT", "id"] == 80
    write_table(df, table, tmp_path / "t", "caption")
    assert pd.read_csv(tmp_path / "t.csv").columns.tolist() == ["suite", "backbone", "method", "dataset", "metric", "value"]
    assert "| FT" in (tmp_path / "t.md").read_text() and "\\begin{table}" in (tmp_path / "t.tex").read_text()
    with pytest.raises(ValueError, match="OOD average needs all of"):
        with_ood_average(tidy(_rows()), ["o1", "o3"])


def test_nan_logits_cannot_be_cached_or_read(tmp_path):
    with pytest.raises(ValueError, match="non-finite"):
        save_logits(tmp_path / "x.safetensors", torch.tensor([[float("nan"), 1.0]]), torch.tensor([0]))
    from safetensors.torch import save_file
    save_file({"logits": torch.tensor([[1.0, float("inf")]]), "labels": torch.tensor([0])}, str(tmp_path / "y.safetensors"))
    with pytest.raises(ValueError, match="cached logits in .*y.safetensors contain 1 non-finite"):
        load_logits(tmp_path / "y.safetensors")
