"""The batched exact per-sample evaluator against the loop one (one merge and one forward per image)."""

import copy

import numpy as np
import pytest
import torch
from open_clip.transformer import VisionTransformer

from dawin.inputs import models
from dawin.inference.evaluation import LoopPerSampleEvaluator, PerSampleEvaluator
from dawin.inference.interpolation import UncoveredOpError, split_classifier

from test_evaluation import TensorSet

CPU = torch.device("cpu")
COEF = np.array([0.0, 1.0, 0.37, 0.81])  # the two endpoints and a different value per sample


def _pair(arch: str, n_classes: int = 7):
    """theta0: a random CLIP tower + head; theta1: every float entry moved (BatchNorm statistics included)."""
    torch.manual_seed(0)
    clip = models.create_clip(arch)
    m0 = models.ImageClassifier.from_clip(clip, arch, torch.randn(n_classes, clip.visual.output_dim))
    m1 = copy.deepcopy(m0)
    with torch.no_grad():
        for name, v in m1.state_dict().items():
            if v.is_floating_point():
                v.add_(0.05 * v.std().nan_to_num(1.0).clamp_min(1e-3) * torch.randn_like(v))
                if name.endswith("running_var"):
                    v.abs_()
    return m0.eval(), m1.eval()


@pytest.fixture(scope="module", params=["dawin-tiny-rn", "dawin-mini-vit-quickgelu", "ViT-B-32-quickgelu"])
def pair(request):
    size = 224 if request.param.startswith("ViT-B") else 32
    return (*_pair(request.param), size)


def _both(m0, m1, x, coef, dtype):
    a0, a1 = copy.deepcopy(m0).to(dtype), copy.deepcopy(m1).to(dtype)
    data = TensorSet(x.to(dtype))
    return (PerSampleEvaluator(batch_size=len(x), device=CPU).evaluate(a0, a1, data, coef),
            LoopPerSampleEvaluator(batch_size=len(x), device=CPU).evaluate(a0, a1, data, coef))


def test_batched_equals_the_loop_in_float64_and_float32(pair):
    m0, m1, size = pair
    x = torch.randn(len(COEF), 3, size, size, generator=torch.Generator().manual_seed(1))
    got, ref = _both(m0, m1, x, COEF, torch.float64)
    assert got.dtype == torch.float64 and (got - ref).abs().max() < 1e-9
    got, ref = _both(m0, m1, x, COEF, torch.float32)
    assert (got - ref).abs().max() <= 1e-4 * ref.abs().max()
    with torch.no_grad():  # the endpoints are the two models themselves
        assert torch.allclose(got[0], m0(x[:1])[0], rtol=1e-4, atol=1e-5)
        assert torch.allclose(got[1], m1(x[1:2])[0], rtol=1e-4, atol=1e-5)
        assert not torch.allclose(got[2], m0(x[2:3])[0], rtol=1e-3, atol=1e-3)


def test_a_sample_does_not_depend_on_its_batch():
    m0, m1 = _pair("dawin-mini-vit-quickgelu")
    net = split_classifier(m0.double(), m1.double())
    x = torch.randn(6, 3, 32, 32, dtype=torch.float64)
    lam = torch.tensor([0.3, 0.9, 0.1, 0.3, 0.5, 0.7], dtype=torch.float64)
    with torch.no_grad():
        whole = net(x, lam)
        alone = torch.cat([net(x[i:i + 1], lam[i:i + 1]) for i in range(6)])
        others = net(torch.cat([x[:1], torch.randn(3, 3, 32, 32, dtype=torch.float64)]), torch.tensor([0.3, 1, 0, 0.5], dtype=torch.float64))
    assert (whole - alone).abs().max() < 1e-12 and (whole[0] - others[0]).abs().max() < 1e-12


def test_the_models_are_left_as_they_were():
    m0, m1 = _pair("dawin-tiny-rn")
    before = {k: v.clone() for k, v in m0.state_dict().items()}
    net = split_classifier(m0, m1)
    with torch.no_grad():
        net(torch.randn(2, 3, 32, 32), torch.tensor([0.2, 0.6]))
    assert all(torch.equal(before[k], v) for k, v in m0.state_dict().items())
    assert type(m0.visual.attnpool).__name__ == "AttentionPool2d"
    with pytest.raises(ValueError, match="3 coefficients for a batch of 2"):
        net(torch.randn(2, 3, 32, 32), torch.tensor([0.2, 0.6, 0.1]))


@pytest.mark.parametrize("options, name", [
    (dict(ls_init_value=0.1), "LayerScale"),
    (dict(qk_norm=True), "CustomResidualAttentionBlock"),
    (dict(attentional_pool=True), "AttentionalPooler"),
])
def test_an_uncovered_op_is_refused_by_name(options, name):
    visual = VisionTransformer(image_size=32, patch_size=16, width=32, layers=1, heads=2, mlp_ratio=2.0,
                               output_dim=16, **options)
    model = models.ImageClassifier(visual, torch.nn.Linear(16, 3), "custom")
    with pytest.raises(UncoveredOpError, match=name):
        PerSampleEvaluator(device=CPU).evaluate(model, copy.deepcopy(model), TensorSet(torch.zeros(2, 3, 32, 32)),
                                                np.array([0.1, 0.2]))
    loop = LoopPerSampleEvaluator(device=CPU).evaluate(model, copy.deepcopy(model), TensorSet(torch.zeros(2, 3, 32, 32)),
                                                       np.array([0.1, 0.2]))
    assert loop.shape == (2, 3)  # the loop runs any architecture
