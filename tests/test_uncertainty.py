"""dawin.report.uncertainty: bootstrap intervals against the binomial standard error, paired comparisons."""

import numpy as np
import pytest

from dawin.report import uncertainty as U


def _correct(n, p, seed):
    return (np.random.default_rng(seed).random(n) < p).astype(np.uint8)


def test_interval_matches_the_binomial_standard_error():
    c = _correct(2000, 0.8, 0)
    lo, hi = U.accuracy_interval({"in": c}, ["in"], n_boot=4000)
    acc = 100 * c.mean()
    se = 100 * np.sqrt(c.mean() * (1 - c.mean()) / len(c))  # 0.89 points
    assert lo < acc < hi
    assert abs((hi - lo) - 2 * 1.96 * se) < 0.25 * se  # the normal approximation's width, within sampling error


def test_binomial_draws_are_the_index_bootstrap():
    """Drawing the resample's number of correct images from Binomial(n, k/n) is the bootstrap of the images:
    same mean and spread as resampling indices explicitly, and the paired multinomial likewise."""
    a, b = _correct(400, 0.7, 5), _correct(400, 0.6, 6)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 400, size=(20000, 400))
    explicit, explicit_diff = 100 * a[idx].mean(1), 100 * (a[idx].astype(float) - b[idx]).mean(1)
    drawn = U.resampled_accuracies({"in": a}, ["in"], n_boot=20000)
    assert abs(drawn.mean() - explicit.mean()) < 0.05 and abs(drawn.std() / explicit.std() - 1) < 0.03
    d = U.paired_difference({"in": a}, {"in": b}, ["in"], n_boot=20000)
    lo, hi = U.interval(explicit_diff)
    assert abs(d["low"] - lo) < 0.3 and abs(d["high"] - hi) < 0.3


def test_average_over_sets_resamples_each_set():
    sets = {"a": _correct(500, 0.5, 1), "b": _correct(500, 0.9, 2)}
    r = U.resampled_accuracies(sets, ["a", "b"], n_boot=3000)
    mean = 100 * (sets["a"].mean() + sets["b"].mean()) / 2
    assert abs(r.mean() - mean) < 0.2
    se = 100 * np.sqrt(sets["a"].mean() * (1 - sets["a"].mean()) / 500 + sets["b"].mean() * (1 - sets["b"].mean()) / 500) / 2
    assert abs(r.std() - se) < 0.1 * se


def test_replicates_are_reproducible_and_paired_by_dataset():
    c = {"in": _correct(300, 0.7, 3)}
    np.testing.assert_array_equal(U.resampled_accuracies(c, ["in"], 100), U.resampled_accuracies(c, ["in"], 100))
    # identical correctness gives a zero difference in every replicate: the draws are shared
    d = U.paired_difference(c, c, ["in"], n_boot=200)
    assert d == {"difference": 0.0, "low": 0.0, "high": 0.0, "p_not_better": 1.0}


def test_paired_difference_sees_a_small_consistent_gain():
    """b equals a except on 15 of 500 images, which only a gets right: +3 points, paired interval above 0,
    although the two unpaired intervals overlap."""
    b = _correct(500, 0.6, 4)
    a = b.copy()
    a[np.flatnonzero(b == 0)[:15]] = 1
    d = U.paired_difference({"in": a}, {"in": b}, ["in"], n_boot=2000)
    assert d["difference"] == pytest.approx(3.0)
    assert 0 < d["low"] < 3.0 < d["high"] and d["p_not_better"] < 0.01
    lo_a, _ = U.accuracy_interval({"in": a}, ["in"])
    _, hi_b = U.accuracy_interval({"in": b}, ["in"])
    assert lo_a < hi_b


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="non-empty 1-d"):
        U.accuracy_interval({"in": np.array([])}, ["in"])
    with pytest.raises(ValueError, match="0/1"):
        U.accuracy_interval({"in": np.array([0, 2])}, ["in"])
    with pytest.raises(ValueError, match="different numbers of images"):
        U.paired_difference({"in": np.ones(3)}, {"in": np.ones(4)}, ["in"])


def test_verdict():
    assert U.verdict(78.7, 77.0, 80.0) == "inside"
    assert U.verdict(81.0, 77.0, 80.0) == "above"
    assert U.verdict(70.0, 77.0, 80.0) == "below"
