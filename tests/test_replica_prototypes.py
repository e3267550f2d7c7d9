"""Class images the replica models recognise (dawin.replicas.prototypes) and their use by the dataset replicas."""

import numpy as np
import pytest
import torch
from PIL import Image

from dawin.inputs import models
from dawin.replicas import data as D
from dawin.replicas import models as R
from dawin.replicas.prototypes import _PatchEmbedding, accuracy, class_prototypes, render

ARCH = R.ARCHITECTURE


@pytest.fixture(scope="module")
def clip():
    return R.theta0_clip(ARCH, seed=0)


def test_patch_embedding_is_the_patch_convolution(clip):
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    conv = clip.visual.conv1
    torch.testing.assert_close(_PatchEmbedding(conv)(x), conv(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="kernel size must equal stride"):
        _PatchEmbedding(torch.nn.Conv2d(3, 8, 3, stride=1))


def test_the_search_finds_images_each_class_wins(clip):
    names = ["dog", "cat", "car", "tree", "boat", "house"]
    head = models.zeroshot_head(clip, ARCH, names, ["a photo of a {c}.", "a drawing of a {c}."])
    cfg = clip.visual.preprocess_cfg
    kw = dict(image_size=cfg["size"][0], mean=cfg["mean"], std=cfg["std"])
    before = clip.state_dict()["visual.proj"].clone()
    protos = class_prototypes(clip, {"things": [head], "mnist": [head]}, steps=100, **kw)
    assert set(protos) == {"things", "mnist"} and protos["things"].shape == (6, 8, 8, 3)
    assert protos["things"].min() >= 0 and protos["things"].max() <= 1
    assert np.array_equal(protos["mnist"][..., 0], protos["mnist"][..., 2])  # grey domain: equal channels
    assert torch.equal(clip.state_dict()["visual.proj"], before)  # the caller's model is left alone
    # rendered the way a dataset image is (random 24..32 px, resize + crop, noise), every class is recognised
    assert accuracy(clip, head, protos["things"], **kw) > 0.8  # 5 or 6 of 6
    # while random pictures are not (chance is 1/6)
    assert accuracy(clip, head, np.random.default_rng(0).random((6, 8, 8, 3)), **kw) < 0.4


def test_dataset_images_come_from_prototypes_inside_painting():
    proto = np.random.default_rng(1).random((3, 8, 8, 3))
    stripes = D.pixels(2, 0, 7, 0, (12, 10))
    with D.painting({"imagenet": proto}):
        px = D.pixels(2, 0, 7, 0, (12, 10))
        unmapped = D.pixels(1005, 0, 7, 0, (12, 10))  # beyond the prototypes (ObjectNet's unmapped folders)
        other_domain = D.pixels(2, 0, 7, 0, (12, 10), domain="sun397")
    expected = render(proto[2], (12, 10), np.random.default_rng([0, 7, 2, 0]))
    assert px.shape == (12, 10, 3) and np.array_equal(px, expected)
    plain = Image.fromarray(np.rint(proto[2] * 255).astype(np.uint8)).resize((10, 12), Image.BILINEAR)
    assert np.abs(px - np.asarray(plain, float)).mean() < 8  # the prototype, plus a little noise
    assert np.array_equal(unmapped, D.pixels(1005, 0, 7, 0, (12, 10)))
    assert np.array_equal(other_domain, stripes)
    assert np.array_equal(D.pixels(2, 0, 7, 0, (12, 10)), stripes)  # outside the block: stripes again
