import pytest
import torch

from dawin.method.calibration import fit_temperature, nll


def test_recovers_the_temperature_that_generated_the_labels():
    g = torch.Generator().manual_seed(0)
    true = torch.randn(20000, 10, generator=g) * 3
    labels = torch.multinomial(torch.softmax(true, -1), 1, generator=g).squeeze(1)
    t = fit_temperature(true * 2.0, labels)  # overconfident by a factor 2
    assert t == pytest.approx(2.0, rel=0.05)
    assert nll(true * 2.0, labels, t) < nll(true * 2.0, labels, 1.0)


def test_degenerate_logits_are_refused():
    with pytest.raises(ValueError, match="hit its bound"):
        fit_temperature(torch.tensor([[10.0, 0.0]] * 50), torch.zeros(50, dtype=torch.long))
    with pytest.raises(ValueError, match="hit its bound"):
        fit_temperature(torch.tensor([[1.0, 0.0]] * 50), torch.zeros(50, dtype=torch.long))
    with pytest.raises(ValueError, match="constant across classes"):
        fit_temperature(torch.zeros(50, 3), torch.zeros(50, dtype=torch.long))
    with pytest.raises(ValueError, match="non-finite"):
        fit_temperature(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))
