import pytest
import torch

import math

from dawin.merging.fisher import fisher_weighted_average
from dawin.merging.ties import disjoint_merge, elect_signs, ties_merge, trim_top_k
from dawin.robust.soups import model_stock_state as model_stock
from dawin.method.weights import add_task_vectors, lerp, lerp_into, task_vector, weighted_sum


def _sd(seed):
    g = torch.Generator().manual_seed(seed)
    return {"a.weight": torch.randn(3, 4, generator=g), "a.bias": torch.randn(3, generator=g),
            "steps": torch.tensor(seed, dtype=torch.long)}


def test_lerp_matches_direct_arithmetic():
    t0, t1 = _sd(0), _sd(1)
    for lam in (0.0, 0.3, 1.0):
        out = lerp(t0, t1, lam)
        for k in ("a.weight", "a.bias"):
            assert torch.allclose(out[k], (1 - lam) * t0[k] + lam * t1[k], atol=1e-6)
        assert out["steps"].item() == 0  # integer buffers are copied, never interpolated


def test_task_vectors_and_weighted_sum():
    t0, t1, t2 = _sd(0), _sd(1), _sd(2)
    tau1, tau2 = task_vector(t1, t0), task_vector(t2, t0)
    assert set(tau1) == {"a.weight", "a.bias"}
    assert torch.allclose(tau1["a.weight"], t1["a.weight"] - t0["a.weight"])
    merged = add_task_vectors(t0, [tau1, tau2], [0.3, 0.6])
    assert torch.allclose(merged["a.bias"], t0["a.bias"] + 0.3 * tau1["a.bias"] + 0.6 * tau2["a.bias"], atol=1e-6)
    ws = weighted_sum([t0, t1, t2], [0.2, 0.3, 0.5])
    assert torch.allclose(ws["a.weight"], 0.2 * t0["a.weight"] + 0.3 * t1["a.weight"] + 0.5 * t2["a.weight"], atol=1e-6)


def test_lerp_into_writes_in_place():
    lin0, lin1 = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    work = torch.nn.Linear(4, 3)
    ptr = work.weight.data_ptr()
    delta = task_vector(lin1.state_dict(), lin0.state_dict())
    lerp_into(work, lin0.state_dict(), delta, 0.25)
    assert work.weight.data_ptr() == ptr
    assert torch.allclose(work.weight, 0.75 * lin0.weight + 0.25 * lin1.weight, atol=1e-6)


def test_mismatched_state_dicts_are_refused():
    t0, t1 = _sd(0), _sd(1)
    t1.pop("a.bias")
    with pytest.raises(KeyError, match="differ in 1 keys"):
        lerp(t0, t1, 0.5)
    t2 = _sd(2)
    t2["a.weight"] = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="shape mismatch for a.weight"):
        lerp(t0, t2, 0.5)


# ---------------------------------------------------------------- TIES-merging

def _t(*values):
    return torch.tensor(values, dtype=torch.float64)


# Hand-made example, two task vectors of 6 entries each (a: 4 entries, b: 2 entries).
TAU1 = {"a": _t(4.0, -1.0, 0.5, -3.0), "b": _t(0.2, 0.1)}
TAU2 = {"a": _t(-2.0, 3.0, 1.0, -5.0), "b": _t(0.3, -6.0)}


def test_trim_ranks_over_the_whole_flattened_vector():
    # fraction 1/3 of 6 entries keeps int(6/3) + 1 = 3. tau1 magnitudes 4, 1, 0.5, 3 | 0.2, 0.1 -> keep
    # 4, 3, 1: b is zeroed entirely (a per-tensor top third would have kept its 0.2).
    t1 = trim_top_k(TAU1, 1 / 3)
    assert torch.equal(t1["a"], _t(4.0, -1.0, 0.0, -3.0)) and torch.equal(t1["b"], _t(0.0, 0.0))
    # tau2 magnitudes 2, 3, 1, 5 | 0.3, 6 -> keep 6, 5, 3
    t2 = trim_top_k(TAU2, 1 / 3)
    assert torch.equal(t2["a"], _t(0.0, 3.0, 0.0, -5.0)) and torch.equal(t2["b"], _t(0.0, -6.0))
    assert torch.equal(trim_top_k(TAU1, 1.0)["a"], TAU1["a"])
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="fraction must be in"):
            trim_top_k(TAU1, bad)


def test_trim_counts_the_zero_entries_of_the_whole_source_state_dict():
    """Issue 24 item 11: ranked as if tau had total_entries entries, the missing ones 0 (task_vectors' untrained
    text side, which AdaMerging flattens with the image tower). TAU1 plus 6 zeros: 12 entries, fraction 1/3 keeps
    int(12/3) + 1 = 5 -> threshold = the 12 - 4 = 8th smallest of 0 x 6, 0.1, 0.2, 0.5, 1, 3, 4 = 0.2."""
    t1 = trim_top_k(TAU1, 1 / 3, total_entries=12)
    assert torch.equal(t1["a"], _t(4.0, -1.0, 0.5, -3.0)) and torch.equal(t1["b"], _t(0.2, 0.0))
    # without the zeros (today's count, 6 entries): 4, 3, 1 only
    assert torch.equal(trim_top_k(TAU1, 1 / 3, total_entries=6)["a"], _t(4.0, -1.0, 0.0, -3.0))
    # 30 entries: keep int(10) + 1 = 11 > the 6 nonzero ones -> the threshold is a zero: everything is kept
    kept = trim_top_k(TAU1, 1 / 3, total_entries=30)
    assert torch.equal(kept["a"], TAU1["a"]) and torch.equal(kept["b"], TAU1["b"])
    with pytest.raises(ValueError, match="total_entries 5 is smaller than the task vector's 6 entries"):
        trim_top_k(TAU1, 1 / 3, total_entries=5)


def _reference_topk_mask(flat: torch.Tensor, fraction: float) -> torch.Tensor:
    """AdaMerging's ``topk_values_mask`` (src/ties_merging_utils.py; FusionBench's ties_merging_utils.py is
    the same), restated: threshold = kthvalue(d - int(d * K)) of |M|, keep |M| >= threshold."""
    d = flat.numel()
    kth = flat.abs().kthvalue(d - int(d * fraction)).values
    return flat.abs() >= kth


@pytest.mark.parametrize("n", [7, 10, 99, 1000, 4097])
def test_trim_keeps_what_the_reference_ties_code_keeps(n):
    # int(0.2 n) + 1 entries (e.g. 3 of 10), not round(0.2 n) (2 of 10)
    g = torch.Generator().manual_seed(n)
    tau = {"w": torch.randn(n - n // 3, generator=g, dtype=torch.float64),
           "b": torch.randn(n // 3, generator=g, dtype=torch.float64)}
    kept = trim_top_k(tau, 0.2)
    flat_kept = torch.cat([kept["w"], kept["b"]]) != 0
    assert int(flat_kept.sum()) == int(0.2 * n) + 1
    assert torch.equal(flat_kept, _reference_topk_mask(torch.cat([tau["w"], tau["b"]]), 0.2))


def test_elect_signs_and_disjoint_merge_by_hand():
    t1, t2 = trim_top_k(TAU1, 1 / 3), trim_top_k(TAU2, 1 / 3)
    signs = elect_signs([t1, t2])
    # sums: a = [4+0, -1+3, 0+0, -3-5] = [4, 2, 0, -8]; b = [0, -6]
    assert torch.equal(signs["a"], _t(1.0, 1.0, 0.0, -1.0)) and torch.equal(signs["b"], _t(0.0, -1.0))
    total = disjoint_merge([t1, t2], signs, "sum")
    # a[1]: tau1's -1 disagrees with +, only tau2's 3 counts; a[3]: both agree, -3 - 5 = -8
    assert torch.equal(total["a"], _t(4.0, 3.0, 0.0, -8.0)) and torch.equal(total["b"], _t(0.0, -6.0))
    mean = disjoint_merge([t1, t2], signs, "mean")
    # divided by the number of agreeing nonzero entries: 1, 1, (none -> 0), 2; b: (none), 1
    assert torch.equal(mean["a"], _t(4.0, 3.0, 0.0, -4.0)) and torch.equal(mean["b"], _t(0.0, -6.0))
    with pytest.raises(ValueError, match="reduce must be one of"):
        disjoint_merge([t1, t2], signs, "max")


def test_a_cancelling_entry_elects_sign_zero_and_merges_to_zero():
    taus = [{"x": _t(2.0, 1.0)}, {"x": _t(-2.0, 1.0)}]
    signs = elect_signs(taus)
    assert torch.equal(signs["x"], _t(0.0, 1.0))  # 2 - 2 = 0: no sign, no task selected
    assert torch.equal(disjoint_merge(taus, signs, "sum")["x"], _t(0.0, 2.0))


def test_ties_merge_is_theta0_plus_lam_times_disjoint_sum():
    theta0 = {"a": _t(1.0, 1.0, 1.0, 1.0), "b": _t(0.0, 0.0), "steps": torch.tensor(7)}
    out = ties_merge(theta0, [TAU1, TAU2], fraction=1 / 3, lam=0.3)
    assert torch.allclose(out["a"], _t(1.0 + 0.3 * 4, 1.0 + 0.3 * 3, 1.0, 1.0 - 0.3 * 8))
    assert torch.allclose(out["b"], _t(0.0, -0.3 * 6))
    assert out["steps"].item() == 7
    mean = ties_merge(theta0, [TAU1, TAU2], fraction=1 / 3, lam=1.0, reduce="mean")
    assert torch.allclose(mean["a"], _t(5.0, 4.0, 1.0, -3.0))


# ---------------------------------------------------------------- Model Stock

def test_model_stock_two_runs_at_sixty_degrees():
    w0 = {"w": _t(1.0, 1.0), "orth": _t(0.0, 0.0), "n": torch.tensor(3)}
    d1 = _t(1.0, 0.0)
    d2 = 3.0 * _t(math.cos(math.pi / 3), math.sin(math.pi / 3))  # 60 degrees; length does not matter
    w1 = {"w": w0["w"] + d1, "orth": _t(1.0, 0.0), "n": torch.tensor(5)}
    w2 = {"w": w0["w"] + d2, "orth": _t(0.0, 2.0), "n": torch.tensor(6)}
    merged, ratios = model_stock(w0, [w1, w2])
    # cos = 1/2 -> t = 2 * 0.5 / (1 + 0.5) = 2/3; merged = w0 + t * (d1 + d2) / 2
    assert ratios["w"] == pytest.approx(2 / 3)
    assert torch.allclose(merged["w"], w0["w"] + (2 / 3) * (d1 + d2) / 2)
    # orthogonal task vectors: cos = 0 -> t = 0 -> the pre-trained weights
    assert ratios["orth"] == 0.0 and torch.equal(merged["orth"], w0["orth"])
    assert merged["n"].item() == 3 and "n" not in ratios  # integer entries come from theta0


def test_model_stock_three_runs_average_pairwise_cosines():
    w0 = {"w": torch.zeros(3, dtype=torch.float64)}
    runs = [{"w": torch.eye(3, dtype=torch.float64)[i] + 1.0} for i in range(3)]
    # d_i = e_i + 1: |d_i|^2 = 6, d_i . d_j = 5 -> cos = 5/6, t = 3 (5/6) / (1 + 2 (5/6)) = 15/16
    merged, ratios = model_stock(w0, runs)
    assert ratios["w"] == pytest.approx(15 / 16)
    assert torch.allclose(merged["w"], (15 / 16) * torch.full((3,), 4 / 3, dtype=torch.float64))


def test_model_stock_degenerate_cases():
    w0 = {"w": _t(0.0, 0.0)}
    same = {"w": _t(1.0, 2.0)}
    merged, ratios = model_stock(w0, [same, dict(same)])  # cos = 1 -> t = 1 -> the common run
    assert ratios["w"] == pytest.approx(1.0) and torch.allclose(merged["w"], same["w"])
    merged, ratios = model_stock(w0, [{"w": _t(1.0, 0.0)}, {"w": _t(-1.0, 0.0)}])  # cos = -1 clamped to 0
    assert ratios["w"] == 0.0 and torch.equal(merged["w"], w0["w"])
    merged, ratios = model_stock(w0, [{"w": _t(0.0, 0.0)}, {"w": _t(2.0, 4.0)}])  # zero-norm run: t = 1
    assert ratios["w"] == 1.0 and torch.allclose(merged["w"], _t(1.0, 2.0))
    with pytest.raises(ValueError, match="at least two fine-tuned runs"):
        model_stock(w0, [same])


# ---------------------------------------------------------------- Fisher-weighted averaging

def test_fisher_weighted_average_matches_direct_formula():
    sds = [_sd(0), _sd(1), _sd(2)]
    g = torch.Generator().manual_seed(5)
    fishers = [{k: torch.rand(sd[k].shape, generator=g) for k in ("a.weight", "a.bias")} for sd in sds]
    out = fisher_weighted_average(sds, fishers)
    for k in ("a.weight", "a.bias"):
        direct = sum(f[k] * sd[k] for f, sd in zip(fishers, sds)) / sum(f[k] for f in fishers)
        assert torch.allclose(out[k], direct, atol=1e-6)
    eps_out = fisher_weighted_average(sds, fishers, eps=0.5)
    direct = sum((f["a.bias"] + 0.5) * sd["a.bias"] for f, sd in zip(fishers, sds)) / sum(f["a.bias"] + 0.5 for f in fishers)
    assert torch.allclose(eps_out["a.bias"], direct, atol=1e-6)
    assert out["steps"].item() == 0  # integer entries from the first state dict


def test_fisher_weighted_average_falls_back_to_the_mean():
    sds = [_sd(0), _sd(1)]
    mean = weighted_sum(sds, [0.5, 0.5])
    equal = [{"a.weight": torch.full((3, 4), 2.0)}, {"a.weight": torch.full((3, 4), 2.0)}]
    out = fisher_weighted_average(sds, equal)
    assert torch.allclose(out["a.weight"], mean["a.weight"], atol=1e-6)
    assert torch.allclose(out["a.bias"], mean["a.bias"], atol=1e-6)  # no Fisher for a.bias: plain mean
    zero = [{"a.weight": torch.zeros(3, 4)}, {"a.weight": torch.zeros(3, 4)}]
    zero[1]["a.weight"][0, 0] = 1.0  # only entry (0, 0) has Fisher mass: it is taken from model 1
    out = fisher_weighted_average(sds, zero)
    assert out["a.weight"][0, 0] == sds[1]["a.weight"][0, 0]
    assert torch.allclose(out["a.weight"][1:], mean["a.weight"][1:], atol=1e-6)
    with pytest.raises(ValueError, match="one Fisher per state dict"):
        fisher_weighted_average(sds, zero[:1])


def test_relative_distance_by_hand():
    from dawin.method.weights import relative_distance

    ref = {"visual.a": _t(3.0, 4.0), "visual.b": _t(0.0), "head.weight": _t(100.0)}
    theta = {"visual.a": _t(3.0, 4.0), "visual.b": _t(5.0), "head.weight": _t(0.0), "text": _t(1.0)}
    assert relative_distance(theta, ref, "visual.") == (1.0, 5.0)  # ||(0,0,5)|| / ||(3,4,0)||
    assert relative_distance(ref, ref) == (0.0, 0.0)
    with pytest.raises(ValueError, match="no common"):
        relative_distance(theta, ref, "nothing.")
