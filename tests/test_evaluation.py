import numpy as np
import torch

from dawin.inference.evaluation import GroupedEvaluator, PerSampleEvaluator
from dawin.method.weights import lerp


# Exactness is checked in fp32 on the CPU, where the direct reference runs; on CUDA the evaluators use
# fp16 autocast (tests/test_gpu.py compares the two within fp16 tolerance there).
CPU = torch.device("cpu")


class TensorSet(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], 0

    projection = staticmethod(lambda z: z)


def _direct(m0, m1, x, coef):
    """Each sample through its own merged model, built from scratch."""
    import copy
    out = []
    for xi, c in zip(x, coef):
        m = copy.deepcopy(m0)
        m.load_state_dict(lerp(m0.state_dict(), m1.state_dict(), float(c)))
        with torch.no_grad():
            out.append(m(xi[None]))
    return torch.cat(out)


def test_clustered_equals_each_sample_with_its_cluster_model(tiny_pair):
    m0, m1 = tiny_pair
    x = torch.randn(9, 3, 32, 32)
    membership = np.array([2, 0, 1, 2, 2, 0, 1, 0, 2])
    coef = np.array([0.1, 0.55, 0.9])[membership]
    got = GroupedEvaluator(batch_size=4, device=CPU).evaluate(m0, m1, TensorSet(x), coef)
    assert torch.allclose(got, _direct(m0, m1, x, coef), atol=1e-5)


def test_per_sample_is_exact(tiny_pair):
    m0, m1 = tiny_pair
    x = torch.randn(5, 3, 32, 32)
    coef = np.array([0.0, 0.2, 0.37, 0.8, 1.0])
    got = PerSampleEvaluator(batch_size=2, device=CPU).evaluate(m0, m1, TensorSet(x), coef)
    assert torch.allclose(got, _direct(m0, m1, x, coef), atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(got[0], m0(x[:1])[0], atol=1e-5) and torch.allclose(got[4], m1(x[4:])[0], atol=1e-5)


def test_bad_coefficients_are_refused(tiny_pair):
    import pytest
    m0, m1 = tiny_pair
    with pytest.raises(ValueError, match="2 coefficients for 3 samples"):
        GroupedEvaluator().evaluate(m0, m1, TensorSet(torch.zeros(3, 3, 32, 32)), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="1 non-finite"):
        PerSampleEvaluator().evaluate(m0, m1, TensorSet(torch.zeros(2, 3, 32, 32)), np.array([0.1, np.nan]))


def test_weight_grid_matches_one_merge_per_weight(tiny_pair):
    from dawin.inference.evaluation import evaluate_grid

    m0, m1 = tiny_pair
    x = torch.randn(5, 3, 32, 32)
    grid = evaluate_grid(m0, m1, TensorSet(x), [0.0, 0.4, 1.0], batch_size=2, device=CPU)
    for w, z in grid.items():
        assert torch.allclose(z, _direct(m0, m1, x, np.full(5, w)), atol=1e-5)
