import math

import numpy as np
import pytest
import torch

from dawin.report.analysis import correctness_splits, optimal_coefficients, optimality_check, pearson


def test_correctness_splits_letters_are_zero_shot_then_fine_tuned():
    c0 = np.array([True, True, False, False, True])
    c1 = np.array([True, False, True, False, True])
    s = correctness_splits(c0, c1)
    assert list(s) == ["all", "TT", "TF", "FT", "FF"]
    assert s["all"].all() and np.flatnonzero(s["TT"]).tolist() == [0, 4]
    assert np.flatnonzero(s["TF"]).tolist() == [1] and np.flatnonzero(s["FT"]).tolist() == [2]
    assert np.flatnonzero(s["FF"]).tolist() == [3]
    # CPU torch bool tensors work too
    assert correctness_splits(torch.tensor([True]), torch.tensor([False]))["TF"].tolist() == [True]
    with pytest.raises(ValueError, match="boolean"):
        correctness_splits(np.array([1, 0]), np.array([1, 0]))


def test_pearson_hand_values_and_undefined_cases():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 1, 2]) == pytest.approx(-0.5)  # sum dx*dy = -1, sqrt(sum dx^2 * sum dy^2) = 2
    assert math.isnan(pearson([1.0], [2.0])) and math.isnan(pearson([], []))
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="non-finite"):
        pearson([1, float("nan")], [1, 2])


def test_optimal_coefficients_finds_the_planted_optimum():
    alphas = np.round(np.arange(0.05, 0.96, 0.05), 2)
    planted = np.array([0.05, 0.3, 0.95, 0.5])
    ce = (alphas[:, None] - planted[None, :]) ** 2 + 1.0
    assert optimal_coefficients(ce, alphas).tolist() == pytest.approx(planted.tolist())
    # an exact tie between 0.5 and 0.3 on an unsorted grid: the smaller alpha wins
    assert optimal_coefficients(np.array([[1.0], [2.0], [1.0]]), np.array([0.5, 0.1, 0.3])).tolist() == [0.3]
    with pytest.raises(ValueError, match="shape"):
        optimal_coefficients(ce[:3], alphas)


def test_optimality_check_rows_by_hand():
    opt = np.array([0.2, 0.4, 0.6, 0.8])
    ratio = np.array([0.2, 0.5, 0.6, 0.6])
    out = optimality_check(opt, ratio, wise_alpha=0.8, seed=0)
    assert list(out) == ["optimal_std", "mse_uniform", "mse_wise_ft", "mse_ce_ratio"]
    assert out["optimal_std"] == pytest.approx(math.sqrt(0.2 / 3))  # squared deviations 0.09+0.01+0.01+0.09
    assert out["mse_wise_ft"] == pytest.approx((0.36 + 0.16 + 0.04 + 0.0) / 4)
    assert out["mse_ce_ratio"] == pytest.approx((0.0 + 0.01 + 0.0 + 0.04) / 4)
    u = np.random.default_rng(0).uniform(size=4)
    assert out["mse_uniform"] == pytest.approx(np.mean((opt - u) ** 2))
    assert optimality_check(opt, ratio, 0.8, seed=0) == out
