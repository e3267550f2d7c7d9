import pytest
import torch

from dawin.weights import add_task_vectors, lerp, lerp_into, task_vector, weighted_sum


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
