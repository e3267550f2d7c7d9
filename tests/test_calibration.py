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


@pytest.mark.parametrize("content, message", [
    ({"zeroshot": 1.2, "finetuned": -0.5}, "temperature of 'finetuned' is -0.5"),
    ({"zeroshot": float("nan"), "finetuned": 1.0}, "temperature of 'zeroshot' is nan"),
    ({"zeroshot": 1.2}, "temperature of 'finetuned' is None"),
    ({"zeroshot": True, "finetuned": 1.0}, "temperature of 'zeroshot' is True"),
])
def test_temperatures_that_mean_nothing_are_refused_naming_the_file(tmp_path, content, message):
    import json

    from dawin.method.calibration import read_temperatures

    path = tmp_path / "temperatures.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=f"{path}: {message}.*delete the file and rerun"):
        read_temperatures(path)
    path.write_text(json.dumps({"zeroshot": 1.5, "finetuned": 0.8, "other": "x"}))
    assert read_temperatures(path) == {"zeroshot": 1.5, "finetuned": 0.8}
