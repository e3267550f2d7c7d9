import pandas as pd
import pytest
import torch

from dawin.robust.baselines import (dynamic_classifier_selection, dynamic_output_ensemble,
                                    oracle_domain_coefficient, output_ensemble_grid, output_ensemble_probs,
                                    select_on_validation)
from dawin.method.expertise import accuracy
from dawin.inference.logits import load_logits, save_logits
from dawin.robust.soups import greedy_recipe
from dawin.report.tidy import tidy, with_ood_average


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


def test_ood_average():
    df = with_ood_average(tidy(_rows()), ["o1", "o2"])
    avg = df[df.dataset == "ood_avg"].set_index("method").value
    assert avg["zeroshot"] == 45 and avg["finetuned"] == 25
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
    from dawin.method.expertise import entropy
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
    soup, history = greedy_recipe(["a", "b", "c", "d"], val, evaluate)
    assert soup == ["b", "a"]
    assert [h["candidate"] for h in history] == ["b", "c", "a", "d"]
    assert [h["added"] for h in history] == [True, False, True, False]
    assert history[1]["accuracy"] == 72.0 and history[3]["accuracy"] == 82.0
    with pytest.raises(ValueError, match="no held-out accuracy for 1"):
        greedy_recipe(["a", "z"], val, evaluate)


def test_oracle_domain_coefficient_beats_the_validation_choice_on_test():
    val = {0.1: 60.0, 0.5: 70.0, 0.9: 65.0}
    test = {0.1: 50.0, 0.5: 55.0, 0.9: 58.0, 0.7: 58.0}
    assert select_on_validation(val) == 0.5
    alpha, acc = oracle_domain_coefficient(test)
    assert (alpha, acc) == (0.7, 58.0)  # tie between 0.7 and 0.9 -> smaller
    assert acc >= max(test.values())


def test_robust_baselines_choose_on_id_val_and_score_every_method():
    """metrics.py's method loop: each method's predictions against the labels, the weights chosen on the
    held-out split, WiSE-FT and the domain-wise oracle read from the sweep at their coefficients."""
    from dawin.robust.baselines import robust_baselines

    g = torch.Generator().manual_seed(0)
    sets, grid = ["val", "in", "v2"], [0.25, 0.5, 0.75]
    logits = {(m, d): (torch.randn(40, 5, generator=g) * 3, torch.randint(0, 5, (40,), generator=g))
              for m in ("zeroshot", "finetuned", "average") for d in sets}
    for d in sets:  # one label vector per dataset
        y = logits["zeroshot", d][1]
        for m in ("finetuned", "average"):
            logits[m, d] = (logits[m, d][0], y)
    sweep_pred = {d: {a: torch.randint(0, 5, (40,), generator=g) for a in [0.0, *grid, 1.0]} for d in sets}
    sweep_acc = {d: {a: float((p == logits["zeroshot", d][1]).double().mean() * 100) for a, p in preds.items()}
                 for d, preds in sweep_pred.items()}
    coef = {d: torch.rand(40, generator=g, dtype=torch.float64) for d in sets}
    acc, correct, chosen = robust_baselines(logits, sweep_acc, sweep_pred, coef, "val", ["in", "v2"], grid, 0.8, 1.3)
    z0, y = logits["zeroshot", "val"]
    assert chosen["output_ensemble"] == select_on_validation(output_ensemble_grid(z0, logits["finetuned", "val"][0], y, grid, 0.8, 1.3))
    assert chosen["wise_ft"] == select_on_validation({a: sweep_acc["val"][a] for a in grid})
    for d in ("in", "v2"):
        (z0, y), (z1, _) = logits["zeroshot", d], logits["finetuned", d]
        assert acc["zeroshot", d] == accuracy(z0, y) and acc["average", d] == accuracy(logits["average", d][0], y)
        assert acc["doe", d] == accuracy(dynamic_output_ensemble(z0, z1, coef[d], 0.8, 1.3), y)
        assert acc["wise_ft", d] == sweep_acc[d][chosen["wise_ft"]]
        oracle = max(sweep_acc[d].values())
        assert acc["oracle_domain", d] == oracle and sweep_acc[d][chosen["oracle_domain"][d]] == oracle
        for (m, dd), c in correct.items():  # the correctness behind every accuracy
            if dd == d:
                assert float(c.double().mean() * 100) == pytest.approx(acc[m, d])
    assert {m for m, _ in acc} == {"zeroshot", "finetuned", "average", "output_ensemble", "wise_ft", "dcs", "doe",
                                  "oracle_domain"}
