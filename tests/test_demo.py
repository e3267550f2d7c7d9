"""The demo's data and training are functions of the seed alone."""

import numpy as np
import torch

from dawin.demo import train, world
from dawin.demo.synth import sample_split


def test_images_depend_only_on_seed_domain_and_split():
    a = [np.asarray(im) for im, _ in sample_split(world.SHAPES, world.DOMAINS["r"], 6, seed=0, split="test")]
    b = [np.asarray(im) for im, _ in sample_split(world.SHAPES, world.DOMAINS["r"], 6, seed=0, split="test")]
    c = [np.asarray(im) for im, _ in sample_split(world.SHAPES, world.DOMAINS["r"], 6, seed=0, split="val")]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_pretraining_is_deterministic_whatever_ran_before():
    torch.set_num_threads(2)
    runs = []
    for noise in (1, 2):  # consume the global RNG differently before each run
        torch.rand(noise)
        clip = train.seeded_clip("dawin-tiny-rn", 0)
        clip = train.pretrain_clip(clip, "dawin-tiny-rn", world.SHAPES, world.PRETRAIN_DOMAINS,
                                   n_per_domain=8, epochs=1, batch_size=8, lr=1e-3, seed=0)
        runs.append(clip.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
