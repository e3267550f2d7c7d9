"""Tests for dawin.method.mixtures: Beta / Dirichlet mixtures over DaWin interpolation coefficients."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn.exceptions import NotFittedError

from dawin.method import mixtures
from dawin.method.mixtures import (
    BetaMixture,
    assign_by_mixture,
    DirichletMixture,
)

# ----------------------------------------------------------------------------- fixtures

BETA_WEIGHTS = np.array([0.3, 0.4, 0.3])
BETA_PARAMS = np.array([[2.0, 20.0], [20.0, 20.0], [20.0, 2.0]])
DIR_WEIGHTS = np.array([0.5, 0.5])
DIR_ALPHAS = np.array([[30.0, 5.0, 5.0], [5.0, 5.0, 30.0]])


@pytest.fixture(scope="module")
def beta_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    z = rng.choice(3, size=50_000, p=BETA_WEIGHTS)
    x = rng.beta(BETA_PARAMS[z, 0], BETA_PARAMS[z, 1])
    return x, z


@pytest.fixture(scope="module")
def beta_fit(beta_data: tuple[np.ndarray, np.ndarray]) -> BetaMixture:
    return BetaMixture(3, seed=0).fit(beta_data[0])


@pytest.fixture(scope="module")
def dir_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    z = rng.choice(2, size=20_000, p=DIR_WEIGHTS)
    g = rng.gamma(DIR_ALPHAS[z])
    return g / g.sum(axis=1, keepdims=True), z


@pytest.fixture(scope="module")
def dir_fit(dir_data: tuple[np.ndarray, np.ndarray]) -> DirichletMixture:
    return DirichletMixture(2, seed=0).fit(dir_data[0])


# ------------------------------------------------------------------------ Beta: recovery


def test_beta_recovers_known_three_component_mixture(
    beta_fit: BetaMixture, beta_data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, z = beta_data
    true_means = BETA_PARAMS[:, 0] / BETA_PARAMS.sum(axis=1)  # 0.0909, 0.5, 0.9091
    assert beta_fit.n_components_ == 3
    np.testing.assert_allclose(beta_fit.cluster_coefficients(), true_means, atol=0.02)
    np.testing.assert_allclose(beta_fit.weights_, BETA_WEIGHTS, atol=0.03)
    assert np.all(np.diff(beta_fit.cluster_coefficients()) > 0)  # sorted ascending
    assert (beta_fit.predict(x) == z).mean() > 0.90
    assert np.isfinite(beta_fit.mean_log_likelihood_)
    assert beta_fit.converged_ and 1 <= beta_fit.n_iter_ < 1000


def test_beta_e_step_matches_scipy_beta_logpdf(
    beta_fit: BetaMixture, beta_data: tuple[np.ndarray, np.ndarray]
) -> None:
    x = beta_data[0][:500]
    logpdf = stats.beta.logpdf(x[:, None], beta_fit.alpha_, beta_fit.beta_)
    log_joint = logpdf + np.log(beta_fit.weights_)
    expected = np.exp(log_joint - np.logaddexp.reduce(log_joint, axis=1, keepdims=True))
    resp = beta_fit.responsibilities(x)
    np.testing.assert_allclose(resp, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0)
    ll = np.logaddexp.reduce(log_joint, axis=1).mean()
    assert beta_fit.log_likelihood(x) == pytest.approx(ll, rel=1e-10)


def test_beta_one_m_step_by_hand() -> None:
    # K-means splits A = {0.1, 0.2, 0.3, 0.2} from B = {0.7, 0.9}. After one M-step:
    # A: m = 0.2, v = (0.01 + 0 + 0.01 + 0)/4 = 0.005, s = 0.16/0.005 - 1 = 31 -> a = 6.2, b = 24.8
    # B: m = 0.8, v = (0.01 + 0.01)/2 = 0.01,          s = 0.16/0.01 - 1 = 15 -> a = 12,  b = 3
    x = np.array([0.1, 0.2, 0.3, 0.2, 0.7, 0.9])
    bm = BetaMixture(2, max_iter=1).fit(x)
    np.testing.assert_allclose(bm.alpha_, [6.2, 12.0], rtol=1e-10)
    np.testing.assert_allclose(bm.beta_, [24.8, 3.0], rtol=1e-10)
    np.testing.assert_allclose(bm.weights_, [4 / 6, 2 / 6], rtol=1e-12)
    assert bm.n_iter_ == 1 and not bm.converged_
    np.testing.assert_array_equal(bm.predict(x), [0, 0, 0, 0, 1, 1])


@pytest.mark.parametrize(
    ("x", "a", "b"),
    [
        # m = 0.5, v = 0.2401 > 0.25/4 -> capped, s = 3
        ([0.01, 0.99], 1.5, 1.5),
        # m = 0.275, v = 0.151875 > 0.275*0.725/4 = 0.0498 -> capped, s = 3
        ([0.05, 0.05, 0.05, 0.95], 3 * 0.275, 3 * 0.725),
    ],
)
def test_beta_variance_cap_gives_precision_three(x: list[float], a: float, b: float) -> None:
    bm = BetaMixture(1).fit(x)
    assert bm.alpha_[0] + bm.beta_[0] == pytest.approx(3.0, rel=1e-12)
    assert bm.alpha_[0] == pytest.approx(a, rel=1e-12)
    assert bm.beta_[0] == pytest.approx(b, rel=1e-12)


# --------------------------------------------------------------------- Beta: degenerate


def test_beta_all_equal_values_give_one_component() -> None:
    with pytest.warns(UserWarning, match="1 distinct"):
        bm = BetaMixture(3).fit(np.full(100, 0.37))
    assert bm.n_components_ == 1
    assert bm.cluster_coefficients()[0] == pytest.approx(0.37, abs=1e-9)
    assert np.all(np.isfinite(bm.concentrations_)) and np.isfinite(bm.mean_log_likelihood_)
    np.testing.assert_array_equal(bm.predict([0.37, 0.1, 0.9]), [0, 0, 0])
    assert not np.isnan(bm.responsibilities([0.0, 0.37, 1.0])).any()


def test_beta_exact_zero_and_one_are_clipped() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([np.zeros(50), np.ones(50), rng.uniform(size=200)])
    bm = BetaMixture(2, eps=1e-4).fit(x)
    assert np.all(np.isfinite(bm.concentrations_)) and np.all(bm.concentrations_ > 0)
    assert np.all(np.isfinite(bm.weights_)) and np.isfinite(bm.mean_log_likelihood_)
    assert np.isfinite(bm.log_likelihood([0.0, 1.0]))
    # Predicting 0 and 1 is the same as predicting the clipped values.
    np.testing.assert_array_equal(bm.predict([0.0, 1.0]), bm.predict([1e-4, 1 - 1e-4]))


def test_beta_k_reduced_to_number_of_distinct_values() -> None:
    x = np.array([0.2] * 10 + [0.8] * 5)
    with pytest.warns(UserWarning, match="n_components=5 exceeds the 2 distinct"):
        bm = BetaMixture(5).fit(x)
    assert bm.n_components_ == 2
    np.testing.assert_allclose(bm.cluster_coefficients(), [0.2, 0.8], atol=1e-6)
    np.testing.assert_allclose(bm.weights_, [10 / 15, 5 / 15], atol=1e-9)
    labels = bm.predict(x)
    assert set(labels.tolist()) <= {0, 1}
    np.testing.assert_array_equal(labels, [0] * 10 + [1] * 5)


def test_beta_no_warning_when_k_fits() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BetaMixture(2).fit([0.1, 0.2, 0.8, 0.9])


@pytest.mark.parametrize(
    ("x", "match"),
    [
        ([0.5, -0.1, 1.2, 1.5], r"3 of 4 values lie outside \[0, 1\]"),
        ([0.5, np.nan, 0.2, np.inf], r"2 of 4 values are not finite"),
        ([], "empty"),
        (np.zeros((3, 2)), "1-D"),
    ],
)
def test_beta_invalid_input_raises(x: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BetaMixture(2).fit(x)


def test_beta_predict_validates_and_requires_fit() -> None:
    with pytest.raises(NotFittedError):
        BetaMixture(2).predict([0.5])
    bm = BetaMixture(2).fit([0.1, 0.2, 0.8, 0.9])
    with pytest.raises(ValueError, match="1 of 2 values lie outside"):
        bm.predict([0.5, 2.0])


def test_em_drops_components_without_mass() -> None:
    # K-means never returns an empty cluster, so the rule "components with N_k < MIN_MASS
    # are dropped and K shrinks" is exercised on the EM loop directly: start from
    # responsibilities where one column is empty and another has 1e-9 mass in total.
    x = np.array([0.1, 0.15, 0.2, 0.8, 0.85, 0.9])
    X = np.column_stack([x, 1 - x])
    resp = np.zeros((6, 4))
    resp[:3, 0] = 1.0
    resp[3:, 2] = 1.0
    resp[0, 3], resp[0, 0] = 1e-9, 1.0 - 1e-9
    res = mixtures._run_em(X, resp, tol=1e-8, max_iter=50)
    assert res.conc.shape == (2, 2) and res.weights.shape == (2,)
    np.testing.assert_allclose(res.conc[:, 0] / res.conc.sum(axis=1), [0.15, 0.85], atol=1e-3)
    assert np.all(np.isfinite(res.conc)) and res.converged


def test_beta_determinism_and_seed_use(beta_data: tuple[np.ndarray, np.ndarray]) -> None:
    x = beta_data[0][:5000]
    a, b = BetaMixture(3, seed=7).fit(x), BetaMixture(3, seed=7).fit(x)
    np.testing.assert_array_equal(a.concentrations_, b.concentrations_)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    assert a.mean_log_likelihood_ == b.mean_log_likelihood_ and a.n_iter_ == b.n_iter_


def test_constructor_rejects_bad_hyperparameters() -> None:
    bad = ({"n_components": 0}, {"n_components": 2, "eps": 0.0}, {"n_components": 2, "tol": 0})
    for kwargs in bad:
        with pytest.raises(ValueError):
            BetaMixture(**kwargs)
    with pytest.raises(ValueError):
        DirichletMixture(2, n_restarts=0)


# -------------------------------------------------------------------- Dirichlet: recovery


def test_dirichlet_recovers_known_two_component_mixture(
    dir_fit: DirichletMixture, dir_data: tuple[np.ndarray, np.ndarray]
) -> None:
    x, z = dir_data
    true_means = DIR_ALPHAS / DIR_ALPHAS.sum(axis=1, keepdims=True)
    # sorted lexicographically by mean: (5,5,30) first, (30,5,5) second
    order = [1, 0]
    assert dir_fit.n_components_ == 2
    assert dir_fit.alpha_.shape == (2, 3)
    np.testing.assert_allclose(dir_fit.cluster_coefficients(), true_means[order], atol=0.02)
    np.testing.assert_allclose(dir_fit.weights_, DIR_WEIGHTS[order], atol=0.03)
    # precision recovered within 15% (true s = 40)
    np.testing.assert_allclose(dir_fit.alpha_.sum(axis=1), 40.0, rtol=0.15)
    assert (dir_fit.predict(x) == np.array(order)[z]).mean() > 0.99


def test_dirichlet_e_step_matches_scipy(
    dir_fit: DirichletMixture, dir_data: tuple[np.ndarray, np.ndarray]
) -> None:
    x = dir_data[0][:200]
    logpdf = np.stack([stats.dirichlet.logpdf(x.T, a) for a in dir_fit.alpha_], axis=1)
    log_joint = logpdf + np.log(dir_fit.weights_)
    ll = np.logaddexp.reduce(log_joint, axis=1).mean()
    assert dir_fit.log_likelihood(x) == pytest.approx(ll, rel=1e-10)
    expected = np.exp(log_joint - np.logaddexp.reduce(log_joint, axis=1, keepdims=True))
    np.testing.assert_allclose(dir_fit.responsibilities(x), expected, rtol=1e-9, atol=1e-12)


def test_dirichlet_k1_coefficient_is_sample_mean(dir_data: tuple[np.ndarray, np.ndarray]) -> None:
    x = dir_data[0]
    dm = DirichletMixture(1).fit(x)
    np.testing.assert_allclose(dm.cluster_coefficients()[0], x.mean(axis=0), atol=0.01)
    np.testing.assert_allclose(dm.weights_, [1.0])


def test_dirichlet_with_two_columns_matches_beta_mixture() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.beta(3, 12, 2000), rng.beta(12, 3, 2000)])
    bm = BetaMixture(2).fit(x)
    dm = DirichletMixture(2).fit(np.column_stack([x, 1 - x]))
    np.testing.assert_allclose(dm.alpha_, bm.concentrations_, rtol=1e-6)
    np.testing.assert_allclose(dm.weights_, bm.weights_, rtol=1e-6)


def test_dirichlet_determinism(dir_data: tuple[np.ndarray, np.ndarray]) -> None:
    x = dir_data[0][:4000]
    a, b = DirichletMixture(2, seed=5).fit(x), DirichletMixture(2, seed=5).fit(x)
    np.testing.assert_array_equal(a.alpha_, b.alpha_)
    np.testing.assert_array_equal(a.weights_, b.weights_)


# ------------------------------------------------------------------ Dirichlet: degenerate


def test_dirichlet_all_equal_rows_and_distinct_reduction() -> None:
    row = np.array([0.2, 0.3, 0.5])
    with pytest.warns(UserWarning, match="1 distinct"):
        dm = DirichletMixture(2).fit(np.tile(row, (50, 1)))
    assert dm.n_components_ == 1
    np.testing.assert_allclose(dm.cluster_coefficients()[0], row, atol=1e-9)
    assert np.all(np.isfinite(dm.alpha_)) and np.isfinite(dm.mean_log_likelihood_)
    np.testing.assert_array_equal(dm.predict(np.tile(row, (3, 1))), [0, 0, 0])

    rows = np.array([[0.1, 0.1, 0.8]] * 6 + [[0.7, 0.2, 0.1]] * 4)
    with pytest.warns(UserWarning, match="n_components=5 exceeds the 2 distinct"):
        dm = DirichletMixture(5).fit(rows)
    assert dm.n_components_ == 2
    expected = [[0.1, 0.1, 0.8], [0.7, 0.2, 0.1]]
    np.testing.assert_allclose(dm.cluster_coefficients(), expected, atol=1e-6)
    np.testing.assert_array_equal(dm.predict(rows), [0] * 6 + [1] * 4)


def test_dirichlet_zeros_are_clipped() -> None:
    rng = np.random.default_rng(4)
    x = np.vstack([np.eye(3)[rng.integers(0, 3, 30)], rng.dirichlet([2, 2, 2], 100)])
    dm = DirichletMixture(2).fit(x)
    assert np.all(np.isfinite(dm.alpha_)) and np.all(dm.alpha_ > 0)
    assert np.isfinite(dm.mean_log_likelihood_)
    assert np.isfinite(dm.log_likelihood(np.eye(3)))
    np.testing.assert_allclose(dm.cluster_coefficients().sum(axis=1), 1.0)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        ([[0.5, 0.5, 0.1], [0.2, 0.3, 0.5], [0.3, 0.3, 0.3]], r"2 of 3 rows do not sum to 1"),
        ([[1.2, -0.2, 0.0], [0.2, 0.3, 0.5]], r"1 of 2 rows contain negative"),
        ([[np.nan, 0.5, 0.5], [0.2, 0.3, 0.5]], r"1 of 2 rows contain non-finite"),
        (np.empty((0, 3)), "empty"),
        ([0.2, 0.8], r"\(N, M\)"),
    ],
)
def test_dirichlet_invalid_input_raises(x: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DirichletMixture(2).fit(x)


def test_dirichlet_predict_checks_column_count(dir_fit: DirichletMixture) -> None:
    with pytest.raises(ValueError, match="expected 3 columns"):
        dir_fit.predict([[0.5, 0.5]])


# ------------------------------------------------------------------ assign_by_mixture


def _two_clusters(n: int) -> tuple[np.ndarray, np.ndarray]:
    # alternating tight clusters around 0.2 and 0.8: the original order is known by construction
    rng = np.random.default_rng(1)
    truth = np.where(np.arange(n) % 2 == 0, 0.2, 0.8)
    return truth + rng.uniform(-0.01, 0.01, size=n), truth


def test_assign_by_mixture_on_all_samples_equals_one_direct_fit() -> None:
    x, _ = _two_clusters(300)
    assigned, info = assign_by_mixture(x, 2, seed=5)
    mix = BetaMixture(2, seed=5).fit(x)
    np.testing.assert_array_equal(assigned, mix.cluster_coefficients()[mix.predict(x)])
    assert len(info) == 1 and info[0]["n_samples"] == 300
    np.testing.assert_array_equal(info[0]["sizes"], [150, 150])


def test_assign_by_mixture_per_batch_recovers_clusters_in_original_order() -> None:
    x, truth = _two_clusters(230)
    assigned, info = assign_by_mixture(x, 2, seed=0, batch_size=50)
    assert [b["n_samples"] for b in info] == [50, 50, 50, 50, 30]  # last batch >= K: kept on its own
    assert all(b["sizes"].sum() == b["n_samples"] for b in info)
    np.testing.assert_allclose(assigned, truth, atol=0.01)  # each sample got its own cluster's mean, in place
    # each batch is an independent fit on the documented seeded permutation
    order = np.random.default_rng(0).permutation(230)
    first = order[:50]
    mix = BetaMixture(2, seed=0).fit(x[first])
    np.testing.assert_array_equal(assigned[first], mix.cluster_coefficients()[mix.predict(x[first])])
    np.testing.assert_array_equal(info[0]["coefficients"], mix.cluster_coefficients())


def test_assign_by_mixture_merges_a_last_batch_smaller_than_k() -> None:
    x, truth = _two_clusters(201)
    assigned, info = assign_by_mixture(x, 2, seed=0, batch_size=50)
    assert [b["n_samples"] for b in info] == [50, 50, 50, 51]
    np.testing.assert_allclose(assigned, truth, atol=0.01)
    with pytest.raises(ValueError, match="batch_size"):
        assign_by_mixture(x, 2, batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        assign_by_mixture(np.zeros(0), 2)
