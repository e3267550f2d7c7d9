import pandas as pd
import pytest
import torch

from dawin.baselines import (dynamic_classifier_selection, dynamic_output_ensemble, greedy_soup,
                             oracle_domain_coefficient, output_ensemble_grid, output_ensemble_probs,
                             select_on_validation)
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


def test_dcs_takes_the_lower_entropy_models_prediction():
    z0 = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    z1 = torch.tensor([[0.0, 1.0, 0.0], [0.0, 5.0, 0.0], [0.0, 1.0, 1.0]])
    # sample 0: ZS is peaked -> ZS; sample 1: ZS is uniform -> FT; sample 2: equal entropies -> ZS (tie rule)
    from dawin.expertise import entropy
    assert entropy(z0)[2] == entropy(z1)[2]  # the tie is exact (same probabilities, permuted)
    p = dynamic_classifier_selection(z0, z1)
    sm0, sm1 = torch.softmax(z0.double(), -1), torch.softmax(z1.double(), -1)
    assert torch.equal(p[0], sm0[0]) and torch.equal(p[1], sm1[1]) and torch.equal(p[2], sm0[2])
    # temperatures change the entropies: a large T0 flattens ZS on sample 0 below FT's certainty
    assert torch.equal(dynamic_classifier_selection(z0, z1, t0=100.0)[0], sm1[0])


def test_doe_is_the_per_sample_weighted_probability_average():
    z0 = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    z1 = torch.tensor([[0.0, 3.0], [1.0, 0.0]])
    lam = torch.tensor([0.2, 0.9], dtype=torch.float64)
    p = dynamic_output_ensemble(z0, z1, lam, t0=2.0, t1=0.5)
    for i in range(2):
        expected = (1 - lam[i]) * torch.softmax(z0[i].double() / 2.0, -1) + lam[i] * torch.softmax(z1[i].double() / 0.5, -1)
        assert torch.allclose(p[i], expected)
    with pytest.raises(ValueError, match="one coefficient per sample"):
        dynamic_output_ensemble(z0, z1, torch.tensor([0.5]))
    with pytest.raises(ValueError, match="1 coefficients lie outside"):
        dynamic_output_ensemble(z0, z1, torch.tensor([0.5, 1.5]))


def test_greedy_soup_skips_a_harmful_ingredient():
    val = {"a": 70.0, "b": 80.0, "c": 75.0, "d": 60.0}
    # a soup's accuracy: +2 per extra ingredient, -10 if "c" is in it, and "d" only ties (not added: strict >)
    def evaluate(soup):
        acc = 80.0 + 2 * (len(soup) - 1) - (10.0 if "c" in soup else 0.0)
        return acc - (2.0 if "d" in soup else 0.0)
    soup, history = greedy_soup(["a", "b", "c", "d"], val, evaluate)
    assert soup == ["b", "a"]
    assert [h["candidate"] for h in history] == ["b", "c", "a", "d"]
    assert [h["added"] for h in history] == [True, False, True, False]
    assert history[1]["accuracy"] == 72.0 and history[3]["accuracy"] == 82.0
    with pytest.raises(ValueError, match="no held-out accuracy for 1"):
        greedy_soup(["a", "z"], val, evaluate)


def test_oracle_domain_coefficient_beats_the_validation_choice_on_test():
    val = {0.1: 60.0, 0.5: 70.0, 0.9: 65.0}
    test = {0.1: 50.0, 0.5: 55.0, 0.9: 58.0, 0.7: 58.0}
    assert select_on_validation(val) == 0.5
    alpha, acc = oracle_domain_coefficient(test)
    assert (alpha, acc) == (0.7, 58.0)  # tie between 0.7 and 0.9 -> smaller
    assert acc >= max(test.values())
