import pytest
import torch

from dawin.inputs import models


@pytest.fixture(scope="session")
def tiny_clip():
    torch.manual_seed(0)
    return models.create_clip("dawin-tiny-rn")


@pytest.fixture(scope="session")
def tiny_pair(tiny_clip):
    """A zero-shot-like and a 'fine-tuned' classifier of the tiny architecture with different weights."""
    torch.manual_seed(1)
    w = torch.randn(10, 64)
    m0 = models.ImageClassifier.from_clip(tiny_clip, "dawin-tiny-rn", w)
    m1 = models.ImageClassifier.from_clip(models.create_clip("dawin-tiny-rn"), "dawin-tiny-rn", torch.randn(10, 64))
    with torch.no_grad():
        m1.head.bias.normal_()
    return m0.eval(), m1.eval()
