import math

import pytest
import torch

from dawin.method.expertise import (confidence_difference, correctness, cross_entropy, pseudo_label_loss,
                                    shifted_max_logit)


def test_confidence_difference_hand_values():
    # p = (1/2, 1/3, 1/6) -> 1/2 - 1/3 = 1/6; tied top-2 -> 0
    z = torch.tensor([[math.log(3.0), math.log(2.0), 0.0], [1.0, 1.0, 0.0]])
    d = confidence_difference(z)
    assert d[0].item() == pytest.approx(1 / 6)
    assert d[1].item() == 0.0
    # T = 2 halves the logits: z/2 = (log 2, 0) -> p = (2/3, 1/3)
    assert confidence_difference(torch.tensor([[2 * math.log(2.0), 0.0]]), 2.0).item() == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="C >= 2"):
        confidence_difference(torch.zeros(3, 1))


def test_shifted_max_logit_is_nonnegative_range():
    z = torch.tensor([[-5.0, -1.0, -3.0], [2.0, 2.0, 2.0]])
    assert shifted_max_logit(z).tolist() == [4.0, 0.0]
    assert shifted_max_logit(z, 2.0).tolist() == [2.0, 0.0]


def test_soft_pseudo_label_loss_and_hard_label_agreement():
    z = torch.tensor([[math.log(3.0), 0.0]])  # p = (3/4, 1/4)
    q = torch.tensor([[0.5, 0.5]])
    assert pseudo_label_loss(z, q).item() == pytest.approx(-(0.5 * math.log(0.75) + 0.5 * math.log(0.25)))
    onehot = torch.tensor([[0.0, 1.0]])
    assert pseudo_label_loss(z, onehot).item() == pytest.approx(cross_entropy(z, onehot.argmax(1)).item())
    with pytest.raises(ValueError, match="1 of 1 pseudo-label rows"):
        pseudo_label_loss(z, torch.tensor([[0.7, 0.7]]))
    with pytest.raises(ValueError, match="shape"):
        pseudo_label_loss(z, torch.tensor([0.5, 0.5]))


def test_correctness():
    z = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0]])
    assert correctness(z, torch.tensor([0, 1, 1])).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="labels"):
        correctness(z, torch.tensor([0, 1]))


def test_logits_equal_for_every_sample_are_refused():
    from dawin.method.expertise import check_informative

    z = torch.tensor([[1.0, 2.0, 0.5]]).repeat(4, 1)
    with pytest.raises(ValueError, match="cache are the same for all 4 samples"):
        check_informative(z, "cache")
    z[2, 0] = 1.5
    assert check_informative(z) is z and check_informative(z[:1]) is not None  # one sample: nothing to compare
