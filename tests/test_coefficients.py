import math

import pytest
import torch

from dawin.method.coefficients import (domain_coefficients, entropy_ratio_coefficients, multi_model_coefficients,
                                       offset_adjusted_coefficients, random_coefficients, score_ratio_coefficients)
from dawin.method.expertise import confidence, confidence_difference, cross_entropy, entropy, shifted_max_logit


def test_entropy_hand_values():
    z = torch.tensor([[0.0, 0.0, 0.0, 0.0], [math.log(3.0), 0.0, -1e9, -1e9]])
    h = entropy(z)
    assert h[0].item() == pytest.approx(math.log(4))
    # p = (3/4, 1/4): H = -(0.75 ln 0.75 + 0.25 ln 0.25)
    assert h[1].item() == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), abs=1e-6)


def test_entropy_temperature_divides_logits():
    z = torch.tensor([[2.0, 0.0]])
    # T = 2 -> logits (1, 0): p1 = e / (e + 1)
    p = math.e / (math.e + 1)
    assert entropy(z, 2.0).item() == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)))


def test_cross_entropy_and_confidence():
    z = torch.tensor([[math.log(3.0), 0.0]])
    assert cross_entropy(z, torch.tensor([1])).item() == pytest.approx(math.log(4))
    assert confidence(z).item() == pytest.approx(0.75)


def test_nan_logits_are_an_error():
    z = torch.tensor([[0.0, float("nan")], [1.0, 2.0]])
    with pytest.raises(ValueError, match="1 non-finite values in 1 of 2 samples"):
        entropy(z)


def test_eq1_hand_values():
    h0, h1 = torch.tensor([1.0, 0.2, 0.5]), torch.tensor([0.2, 1.0, 0.5])
    lam = entropy_ratio_coefficients(h0, h1)
    expected = [math.exp(-0.2) / (math.exp(-1.0) + math.exp(-0.2)), math.exp(-1.0) / (math.exp(-0.2) + math.exp(-1.0)), 0.5]
    assert lam.tolist() == pytest.approx(expected)


def test_eq2_hand_values():
    h0, h1 = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 0.5, 2.0])
    mu0, sd0 = 2.0, 1.0  # unbiased std of (1, 2, 3)
    mu1, sd1 = 1.0, math.sqrt(((0.5 - 1) ** 2 * 2 + 1.0) / 2)
    offset = (sd0 / mu0 + sd1 / mu1) / 2
    rel = (mu0 + mu1) / mu0
    expected = [(math.exp(-b) + offset / rel) / (math.exp(-a) + math.exp(-b) + offset) for a, b in zip(h0.tolist(), h1.tolist())]
    assert offset_adjusted_coefficients(h0, h1).tolist() == pytest.approx(expected, rel=1e-12)
    assert domain_coefficients(h0, h1, offset_adjustment=False).tolist() == pytest.approx(entropy_ratio_coefficients(h0, h1).tolist())


def test_eq2_degenerate_inputs_raise_clearly():
    with pytest.raises(ValueError, match="mean entropy is 0"):
        offset_adjusted_coefficients(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="non-finite"):
        offset_adjusted_coefficients(torch.tensor([1.0, float("inf")]), torch.ones(2))
    with pytest.raises(ValueError, match="no samples"):
        entropy_ratio_coefficients(torch.zeros(0), torch.zeros(0))


def test_multi_model_softmax_and_two_model_agreement():
    h = torch.tensor([[1.0, 0.2, 0.7], [0.0, 0.0, 0.0]])
    lam = multi_model_coefficients(h)
    e = torch.exp(-h[0].double())
    assert lam[0].tolist() == pytest.approx((e / e.sum()).tolist())
    assert lam[1].tolist() == pytest.approx([1 / 3] * 3)
    two = multi_model_coefficients(torch.stack([torch.tensor([1.0, 0.3]), torch.tensor([0.4, 0.9])], 1))
    assert two[:, 1].tolist() == pytest.approx(entropy_ratio_coefficients(torch.tensor([1.0, 0.3]), torch.tensor([0.4, 0.9])).tolist())


def test_oracle_prefers_the_model_that_is_right():
    z0 = torch.tensor([[4.0, 0.0], [0.0, 4.0]])
    z1 = torch.tensor([[0.0, 4.0], [0.0, 4.0]])
    y = torch.tensor([0, 1])
    lam = entropy_ratio_coefficients(cross_entropy(z0, y), cross_entropy(z1, y))
    assert lam[0] < 0.05 and lam[1] == pytest.approx(0.5)


def test_score_ratio_hand_values_and_exponentiated_form():
    lam = score_ratio_coefficients(torch.tensor([1.0, 3.0, 0.0]), torch.tensor([3.0, 1.0, 2.0]))
    assert lam.tolist() == pytest.approx([0.75, 0.25, 1.0])
    e = score_ratio_coefficients(torch.tensor([0.2]), torch.tensor([0.9]), exponentiate=True)
    assert e.item() == pytest.approx(math.exp(0.9) / (math.exp(0.2) + math.exp(0.9)))


def test_score_ratio_rejects_negative_or_all_zero_scores():
    with pytest.raises(ValueError, match="1 of 2 samples have a negative .*shifted_max_logit"):
        score_ratio_coefficients(torch.tensor([-1.0, 2.0]), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="1 of 2 samples have zero score for both"):
        score_ratio_coefficients(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 2.0]))


def test_confidence_ratio_uses_each_models_own_logits():
    # the authors' bug (zero-shot logits for both models) would give exactly 0.5 here at T0 = T1
    z0 = torch.tensor([[0.0, 0.0]])  # confidence 1/2, confidence difference 0
    z1 = torch.tensor([[math.log(3.0), 0.0]])  # confidence 3/4, confidence difference 1/2
    assert score_ratio_coefficients(confidence(z0), confidence(z1)).item() == pytest.approx(0.75 / 1.25)
    assert score_ratio_coefficients(confidence(z0), confidence(z0)).item() == 0.5  # what the bug computes
    assert score_ratio_coefficients(confidence_difference(z0), confidence_difference(z1)).item() == 1.0
    # max logit: ranges 0 and log 3 -> all weight on the fine-tuned model
    assert score_ratio_coefficients(shifted_max_logit(z0 + 1), shifted_max_logit(z1 - 5)).item() == 1.0


def test_random_coefficients_seeded_and_clamped():
    u = random_coefficients(1000, "uniform", seed=3)
    assert u.dtype == torch.float64 and u.shape == (1000,)
    assert torch.equal(u, random_coefficients(1000, "uniform", seed=3))
    assert not torch.equal(u, random_coefficients(1000, "uniform", seed=4))
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean().item() - 0.5) < 0.05
    g = random_coefficients(20000, "normal", seed=0, mean=0.5, std=0.2)
    assert abs(g.mean().item() - 0.5) < 0.01 and abs(g.std().item() - 0.2) < 0.01
    wide = random_coefficients(1000, "normal", seed=0, mean=0.5, std=5.0)
    assert wide.min().item() == 0.01 and wide.max().item() == 0.99
    assert random_coefficients(2, "normal", seed=0, mean=2.0, std=0.0, low=0.0, high=1.0).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="unknown distribution"):
        random_coefficients(3, "beta", seed=0)
    with pytest.raises(ValueError, match="needs mean and std"):
        random_coefficients(3, "normal", seed=0, mean=0.5)
    with pytest.raises(ValueError, match="no parameters"):
        random_coefficients(3, "uniform", seed=0, low=0.2)
