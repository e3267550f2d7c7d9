"""dawin.method.variants: coefficient kinds and assignments, checked against hand computations."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from dawin.method import coefficients as C
from dawin.method import expertise as E
from dawin.method import variants as V

# The assign() of every Beta-mixture assignment ("mixture", "batch<b>", "scaled<a>") builds its info with
# ``{..., **info}`` where assign_by_mixture returns info as a *list* of per-batch dicts: TypeError.


# --------------------------------------------------------------------------------------------------
# helpers: hand computations
# --------------------------------------------------------------------------------------------------

def _logsoftmax(z, t=1.0):
    z = np.asarray(z, dtype=np.float64) / t
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _entropy_np(z, t=1.0):
    lp = _logsoftmax(z, t)
    return -(np.exp(lp) * lp).sum(axis=1)


def _ce_np(z, y, t=1.0):
    lp = _logsoftmax(z, t)
    return -lp[np.arange(len(y)), np.asarray(y)]


def _eq2_np(h0, h1):
    """Eq. 2 written out: O = (s0/m0 + s1/m1)/2, T = (m0+m1)/m0, l = (e^-H1 + O/T) / (e^-H0 + e^-H1 + O)."""
    m0, m1 = h0.mean(), h1.mean()
    o = (h0.std(ddof=1) / m0 + h1.std(ddof=1) / m1) / 2
    rel = (m0 + m1) / m0
    return (np.exp(-h1) + o / rel) / (np.exp(-h0) + np.exp(-h1) + o)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _domain(name="in", n=40, c=5, t0=0.7, t1=1.6, seed=0, **kw):
    g = torch.Generator().manual_seed(123)
    z0 = torch.randn(n, c, generator=g) * 2
    z1 = torch.randn(n, c, generator=g) * 3
    y = torch.randint(0, c, (n,), generator=g)
    return V.Domain(name, z0, z1, y, t0, t1, seed=seed, **kw)


# --------------------------------------------------------------------------------------------------
# (b) entropy-based kinds
# --------------------------------------------------------------------------------------------------

def test_entropy_kind_is_eq2_on_calibrated_entropies():
    d = _domain()
    got = V.compute("entropy", d)
    assert got.dtype == torch.float64 and got.shape == (40,)
    lib = C.domain_coefficients(E.entropy(d.z0, d.t0), E.entropy(d.z1, d.t1), True)
    torch.testing.assert_close(got, lib, rtol=0, atol=1e-12)
    hand = _eq2_np(_entropy_np(d.z0, d.t0), _entropy_np(d.z1, d.t1))
    np.testing.assert_allclose(got.numpy(), hand, rtol=0, atol=1e-10)


def test_entropy_kind_without_offset_adjustment_is_eq1():
    d = _domain(offset_adjustment=False)
    hand = _sigmoid(_entropy_np(d.z0, d.t0) - _entropy_np(d.z1, d.t1))
    np.testing.assert_allclose(V.compute("entropy", d).numpy(), hand, rtol=0, atol=1e-10)


def test_entropy_no_offset_is_eq1_even_with_offset_adjustment_on():
    d = _domain()
    assert d.offset_adjustment
    hand = _sigmoid(_entropy_np(d.z0, d.t0) - _entropy_np(d.z1, d.t1))
    got = V.compute("entropy_no_offset", d).numpy()
    np.testing.assert_allclose(got, hand, rtol=0, atol=1e-10)
    assert not np.allclose(got, V.compute("entropy", d).numpy(), atol=1e-3)  # Eq. 2 differs


def test_entropy_uncalibrated_uses_unit_temperatures():
    d = _domain(t0=0.7, t1=1.6)
    got = V.compute("entropy_uncalibrated", d).numpy()
    hand = _eq2_np(_entropy_np(d.z0), _entropy_np(d.z1))
    np.testing.assert_allclose(got, hand, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got, V.compute("entropy", replace(d, t0=1.0, t1=1.0)).numpy(), rtol=0, atol=1e-12)
    assert np.abs(got - V.compute("entropy", d).numpy()).max() > 1e-3


def test_cross_entropy_kind_is_sigmoid_of_ce_difference():
    d = _domain()
    ce0 = -torch.log_softmax(d.z0.double() / d.t0, -1)[torch.arange(40), d.labels]
    ce1 = -torch.log_softmax(d.z1.double() / d.t1, -1)[torch.arange(40), d.labels]
    torch.testing.assert_close(V.compute("cross_entropy", d), torch.sigmoid(ce0 - ce1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(V.compute("cross_entropy", d).numpy(),
                               _sigmoid(_ce_np(d.z0, d.labels, d.t0) - _ce_np(d.z1, d.labels, d.t1)), atol=1e-10)


def test_cross_entropy_depends_on_labels_entropy_does_not():
    d = _domain()
    d2 = replace(d, labels=(d.labels + 1) % 5)
    assert not torch.allclose(V.compute("cross_entropy", d), V.compute("cross_entropy", d2))
    torch.testing.assert_close(V.compute("entropy", d), V.compute("entropy", d2), rtol=0, atol=0)


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="unknown coefficient kind 'nope'"):
        V.compute("nope", _domain())


# --------------------------------------------------------------------------------------------------
# (c) random kinds
# --------------------------------------------------------------------------------------------------

RANDOM = ["uniform", "normal_0.5_0.2", "normal_0.8_0.1"]


@pytest.mark.parametrize("kind", RANDOM)
def test_random_kinds_reproducible_per_seed_and_domain(kind):
    d = _domain("in", n=200)
    a = V.compute(kind, d)
    torch.testing.assert_close(a, V.compute(kind, d), rtol=0, atol=0)
    # data-independent: other logits and labels of the same size, name and seed give the same draw
    other = replace(d, z0=d.z1, z1=d.z0, labels=torch.zeros(200, dtype=torch.long))
    torch.testing.assert_close(a, V.compute(kind, other), rtol=0, atol=0)
    assert not torch.allclose(a, V.compute(kind, replace(d, name="v2")))
    assert not torch.allclose(a, V.compute(kind, replace(d, seed=1)))
    assert a.dtype == torch.float64 and a.shape == (200,)
    assert ((a >= 0) & (a <= 1)).all()


def test_random_kind_distributions():
    n = 4000
    d = _domain("r", n=n)
    u = V.compute("uniform", d).numpy()
    assert abs(u.mean() - 0.5) < 0.03 and u.min() < 0.01 and u.max() > 0.99
    nrm = V.compute("normal_0.8_0.1", d).numpy()
    assert abs(nrm.mean() - 0.8) < 0.01 and abs(nrm.std() - 0.1) < 0.01
    assert nrm.max() <= 0.99 and nrm.min() >= 0.01
    n5 = V.compute("normal_0.5_0.2", d).numpy()
    assert abs(n5.mean() - 0.5) < 0.02 and n5.min() >= 0.01 and n5.max() <= 0.99
    # the two normal kinds use different streams (seed includes the parameters)
    z = (n5 - 0.5) / 0.2
    assert not np.allclose(z, (nrm - 0.8) / 0.1)


def test_random_seed_is_per_kind_and_domain():
    d = _domain("in")
    assert d.rng_seed("uniform") == d.rng_seed("uniform")
    assert d.rng_seed("uniform") != replace(d, name="v2").rng_seed("uniform")
    assert d.rng_seed("uniform") != d.rng_seed("normal")


# --------------------------------------------------------------------------------------------------
# (d) score kinds use each model's own logits
# --------------------------------------------------------------------------------------------------

def _confident_vs_uniform(n=12, c=4):
    y = torch.arange(n) % c
    confident = 8.0 * torch.nn.functional.one_hot(y, c).double() + 0.1 * torch.randn(n, c, dtype=torch.float64)
    flat = torch.zeros(n, c, dtype=torch.float64)
    return confident, flat, y


@pytest.mark.parametrize("kind", ["confidence", "confidence_diff", "max_logit"])
def test_score_kinds_favour_the_confident_model(kind):
    confident, flat, y = _confident_vs_uniform()
    l01 = V.compute(kind, V.Domain("in", confident, flat, y, 1.0, 1.0))
    assert (l01 < 0.5).all()  # model 0 is the expert: little weight on model 1
    l10 = V.compute(kind, V.Domain("in", flat, confident, y, 1.0, 1.0))
    assert (l10 > 0.5).all()


def test_confidence_kind_is_exp_ratio_of_own_confidences():
    d = _domain(t0=0.8, t1=1.3)
    p0 = torch.softmax(d.z0.double() / d.t0, -1).max(-1).values
    p1 = torch.softmax(d.z1.double() / d.t1, -1).max(-1).values
    want = torch.exp(p1) / (torch.exp(p0) + torch.exp(p1))
    torch.testing.assert_close(V.compute("confidence", d), want, rtol=0, atol=1e-12)


def test_max_logit_kind_is_plain_ratio_of_shifted_max_logits():
    d = _domain(t0=0.8, t1=1.3)
    s0 = (d.z0.double().max(-1).values - d.z0.double().min(-1).values) / d.t0
    s1 = (d.z1.double().max(-1).values - d.z1.double().min(-1).values) / d.t1
    torch.testing.assert_close(V.compute("max_logit", d), s1 / (s0 + s1), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# (e) pseudo-label kinds
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["pl_average_soft", "pl_average_hard"])
def test_pl_average_needs_average_logits(kind):
    with pytest.raises(ValueError, match="average"):
        V.compute(kind, _domain())


def _agreeing(n=30, c=6):
    g = torch.Generator().manual_seed(7)
    y = torch.randint(0, c, (n,), generator=g)
    onehot = torch.nn.functional.one_hot(y, c).float()
    z0 = torch.randn(n, c, generator=g) * 0.5 + 6 * onehot
    z1 = torch.randn(n, c, generator=g) * 0.5 + 4 * onehot
    return z0, z1, y


def test_pl_ensemble_hard_is_eq2_of_ce_to_agreed_label():
    z0, z1, y = _agreeing()
    d = V.Domain("in", z0, z1, (y + 1) % 6, 0.9, 1.2)  # the true labels must not be used
    assert (z0.argmax(1) == y).all() and (z1.argmax(1) == y).all()
    hand = _eq2_np(_ce_np(z0, y, 0.9), _ce_np(z1, y, 1.2))
    np.testing.assert_allclose(V.compute("pl_ensemble_hard", d).numpy(), hand, rtol=0, atol=1e-10)
    d1 = replace(d, offset_adjustment=False)
    np.testing.assert_allclose(V.compute("pl_ensemble_hard", d1).numpy(),
                               _sigmoid(_ce_np(z0, y, 0.9) - _ce_np(z1, y, 1.2)), rtol=0, atol=1e-10)


def test_pl_ensemble_soft_uses_calibrated_ensemble_target():
    d = _domain(t0=0.8, t1=1.3)
    q = 0.5 * torch.softmax(d.z0.double() / d.t0, -1) + 0.5 * torch.softmax(d.z1.double() / d.t1, -1)
    l0 = -(q * torch.log_softmax(d.z0.double() / d.t0, -1)).sum(-1)
    l1 = -(q * torch.log_softmax(d.z1.double() / d.t1, -1)).sum(-1)
    np.testing.assert_allclose(V.compute("pl_ensemble_soft", d).numpy(), _eq2_np(l0.numpy(), l1.numpy()), atol=1e-10)


def test_pl_average_kinds_use_average_logits():
    d = _domain(t0=0.8, t1=1.3)
    za = torch.randn(40, 5, generator=torch.Generator().manual_seed(3)) * 2
    d = replace(d, z_average=za)
    ya = za.argmax(1)
    hard = _eq2_np(_ce_np(d.z0, ya, d.t0), _ce_np(d.z1, ya, d.t1))
    np.testing.assert_allclose(V.compute("pl_average_hard", d).numpy(), hard, rtol=0, atol=1e-10)
    q = torch.softmax(za.double(), -1)
    l0 = -(q * torch.log_softmax(d.z0.double() / d.t0, -1)).sum(-1)
    l1 = -(q * torch.log_softmax(d.z1.double() / d.t1, -1)).sum(-1)
    np.testing.assert_allclose(V.compute("pl_average_soft", d).numpy(), _eq2_np(l0.numpy(), l1.numpy()), atol=1e-10)


# --------------------------------------------------------------------------------------------------
# (f) assignments
# --------------------------------------------------------------------------------------------------

def _clustered(n=64, seed=0):
    """Coefficients around 0.1, 0.5 and 0.9 (three well separated clusters), shuffled."""
    rng = np.random.default_rng(seed)
    centres = np.array([0.1, 0.5, 0.9])[rng.integers(0, 3, n)]
    return np.clip(centres + rng.normal(0, 0.02, n), 0.01, 0.99)


def test_assign_per_sample_is_identity():
    coef = _clustered()
    out, info = V.assign(coef, "per_sample", 3, 0)
    np.testing.assert_array_equal(out, coef)
    assert out is not coef and out.dtype == np.float64
    assert info == {"assignment": "per_sample", "distinct": len(np.unique(coef))}


def test_assign_unknown_raises():
    with pytest.raises(ValueError, match="unknown assignment"):
        V.assign(_clustered(), "kmeans", 3, 0)


def test_assign_mixture_gives_at_most_k_values():
    coef = _clustered()
    out, info = V.assign(coef, "mixture", 3, 0)
    assert out.shape == coef.shape
    assert len(np.unique(out)) <= 3
    assert info["distinct"] == len(np.unique(out)) and info["assignment"] == "mixture"
    assert np.abs(out - coef).max() < 0.1  # each sample gets its own cluster's mean


def test_assign_batch_fits_one_mixture_per_batch():
    coef = _clustered()
    out, info = V.assign(coef, "batch16", 2, 5)
    order = np.random.default_rng(5).permutation(64)  # assign_by_mixture's batches: a seeded shuffle cut in 16s
    for i in range(0, 64, 16):
        assert len(np.unique(out[order[i:i + 16]])) <= 2
    assert 2 < len(np.unique(out)) <= 8


def test_assign_scaled_halves_the_mixture():
    coef = _clustered()
    mixed, _ = V.assign(coef, "mixture", 3, 0)
    half, info = V.assign(coef, "scaled0.5", 3, 0)
    np.testing.assert_allclose(half, 0.5 * mixed, rtol=0, atol=1e-12)
    doubled, _ = V.assign(coef, "scaled2", 3, 0)
    np.testing.assert_allclose(doubled, np.clip(2 * mixed, 0, 1), rtol=0, atol=1e-12)
