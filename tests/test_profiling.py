import numpy as np
import pytest
import torch

from dawin.inputs import models
from dawin.inference.logits import compute_logits, compute_logits_pair
from dawin.inference.profiling import (dawin_pipeline, flops_per_sample, measure, mergeable_parameters, merged_passes,
                                       profile_inference, single_passes, subset)


class TensorSet(torch.utils.data.Dataset):
    """In-memory images with labels and the identity projection, like a dataset of datasets.py."""

    def __init__(self, x, labels):
        self.x, self.labels = x, labels

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.labels[i]

    projection = staticmethod(lambda z: z)


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    m0 = models.ImageClassifier.from_clip(models.create_clip("dawin-tiny-rn"), "dawin-tiny-rn", torch.randn(3, 64))
    m1 = models.ImageClassifier.from_clip(models.create_clip("dawin-tiny-rn"), "dawin-tiny-rn", torch.randn(3, 64))
    return m0.eval(), m1.eval()


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return TensorSet(torch.randn(24, 3, 32, 32, generator=g), torch.randint(0, 3, (24,), generator=g).tolist())


def test_linear_flops_count_multiply_adds_twice():
    assert flops_per_sample(torch.nn.Linear(4, 3), torch.randn(5, 4)) == 2 * 4 * 3


def test_logits_pair_equals_two_passes(pair, data):
    z0, z1 = compute_logits_pair(*pair, data, batch_size=5, device=torch.device("cpu"))
    assert torch.equal(z0, compute_logits(pair[0], data, batch_size=5, device=torch.device("cpu"))[0])
    assert torch.equal(z1, compute_logits(pair[1], data, batch_size=5, device=torch.device("cpu"))[0])


def test_parallel_dawin_gives_the_same_logits(pair, data):
    kw = dict(n_components=2, batch_size=8, device=torch.device("cpu"))
    a, b = dawin_pipeline(*pair, data, **kw), dawin_pipeline(*pair, data, parallel=True, **kw)
    assert torch.equal(a.logits, b.logits) and np.array_equal(a.coefficients, b.coefficients)
    assert 1 <= a.merges <= 2


def test_cpu_peak_memory_sees_a_temporary_tensor():
    m = measure(lambda: torch.ones(1000, 1000).sum(), "cpu")  # a 4 MB temporary, freed inside
    assert m.seconds > 0 and 4_000_000 <= m.peak_bytes < 5_000_000 and m.result == 1e6


def test_subset_keeps_projection_and_labels(data):
    s = subset(data, 10, seed=1)
    assert len(s) == 10 and s.projection is data.projection and list(s.indices) == sorted(s.indices)
    assert s.labels == [data.labels[i] for i in s.indices]
    with pytest.raises(ValueError, match="cannot draw 25"):
        subset(data, 25)


def test_profile_inference(pair, data):
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    df = profile_inference(*pair, data, grid=grid, n_components=2, batch_size=8, device=torch.device("cpu"),
                           per_sample_limit=6).set_index("method")
    assert list(df.index) == ["wise_ft", "dawin", "dawin_parallel", "dawin_per_sample", "dawin_per_sample_loop"]
    assert (df.seconds > 0).all() and (df.peak_memory_mb > 0).all() and (df.device == "cpu").all()
    assert df.loc["wise_ft", "forward_passes_per_sample"] == len(grid)
    loop = df.loc["dawin_per_sample_loop"]
    assert loop.extrapolated and loop.measured_samples == 6 and loop.merges == 6
    batched = df.loc["dawin_per_sample"]  # all samples, no merged model materialised, ~2 passes for the split one
    assert not batched.extrapolated and batched.measured_samples == len(data) and batched.merges == 0
    assert 3.5 <= batched.forward_passes_per_sample <= 4.1 and not df.loc["dawin", "extrapolated"]
    one = flops_per_sample(pair[0], data.x[:8]) / 1e9
    assert 2.9 <= df.loc["dawin", "gflops_per_sample"] / one <= 3.2
    assert 2.9 <= df.loc["dawin_parallel", "gflops_per_sample"] / one <= 3.2
    # WiSE-FT: H forwards plus (1 + 2 H * batches) merges of every parameter.
    merges = (1 + 2 * len(grid) * 3) * mergeable_parameters(pair[0]) / len(data) / 1e9
    assert df.loc["wise_ft", "gflops_per_sample"] == pytest.approx(len(grid) * one + merges)


def test_merged_passes_time_each_way_against_one_single_pass(pair, data):
    coef = np.random.default_rng(0).uniform(0.05, 0.95, len(data))
    df = merged_passes(*pair, data, coef, n_components=2, batch_size=8, device=torch.device("cpu"),
                       loop_limit=5).set_index("pass")
    assert list(df.index) == ["single", "per_sample", "per_sample_loop", "clustered"]
    assert df.loc["single", "ratio"] == 1.0 and (df.seconds > 0).all()
    assert df.loc["per_sample_loop", "measured_samples"] == 5 and df.loc["per_sample", "measured_samples"] == len(data)


def test_single_passes_time_each_data_path(pair, data):
    df = single_passes(pair[0], {"jpeg": data, "decoded": data}, batch_size=8, device=torch.device("cpu"))
    assert list(df.method) == ["single_pass_jpeg", "single_pass_decoded"] and (df.seconds > 0).all()
    assert df.seconds_per_sample.tolist() == pytest.approx((df.seconds / len(data)).tolist())
