"""CUDA paths (skipped without a GPU): the evaluators and logit caching under fp16 autocast agree with fp32 CPU."""

import numpy as np
import pytest
import torch

from dawin.inference.evaluation import GroupedEvaluator, LoopPerSampleEvaluator, PerSampleEvaluator, evaluate_grid
from dawin.inference.logits import compute_logits, compute_logits_pair

from test_evaluation import TensorSet

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CPU, GPU = torch.device("cpu"), torch.device("cuda")


def _close(a, b):
    # fp16 autocast: logits of the tiny model agree to ~1e-2 relative; predictions almost always
    assert torch.allclose(a, b, rtol=2e-2, atol=2e-2), (a - b).abs().max()


def test_evaluators_on_cuda_match_cpu(tiny_pair):
    m0, m1 = tiny_pair
    x, coef = torch.randn(10, 3, 32, 32), np.array([0.2, 0.7] * 5)
    data = TensorSet(x)
    for Evaluator in (GroupedEvaluator, PerSampleEvaluator, LoopPerSampleEvaluator):
        _close(Evaluator(batch_size=4, device=GPU).evaluate(m0, m1, data, coef),
               Evaluator(batch_size=4, device=CPU).evaluate(m0, m1, data, coef))
    gpu = evaluate_grid(m0, m1, data, [0.0, 0.5, 1.0], batch_size=4, device=GPU)
    cpu = evaluate_grid(m0, m1, data, [0.0, 0.5, 1.0], batch_size=4, device=CPU)
    for w in cpu:
        _close(gpu[w], cpu[w])
    z0, z1 = compute_logits_pair(m0, m1, data, 4, device=GPU)
    _close(z0, compute_logits(m0, data, 4, device=CPU)[0])
    _close(z1, compute_logits(m1, data, 4, device=CPU)[0])
