"""The multi-task model pool: one pre-trained image encoder, M task experts and the tasks' frozen heads.

Merging methods combine image *encoders* only (state dicts of an open_clip ``visual`` tower); each
task keeps its own frozen zero-shot head (as in task_vectors), applied to L2-normalised features.

The methods that learn from images get, per task, a :data:`TaskData`: a preprocessed (N, 3, H, W) tensor or
a map-style dataset read lazily (``dawin.inputs.datasets.ImageFolderDataset`` with the encoder's preprocessing), so
a whole test set (SVHN's 26,032 test images are 15.7 GB as floats at 224 px) is never held in memory; the
methods read only the images they draw, with :func:`example_indices` and :func:`gather_images`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

import numpy as np
import torch

from ..inputs.models import ImageClassifier, create_clip
from ..method.weights import StateDict, task_vector

TaskData = Union[torch.Tensor, torch.utils.data.Dataset]
"""One task's images: a (N, 3, H, W) tensor, or a map-style dataset whose items are an image tensor or an
(image, label, ...) tuple."""


def example_indices(n_images: int, n: int, seed: int, task: str, *keys: int) -> np.ndarray:
    """``n`` distinct positions of ``0..n_images - 1`` drawn uniformly at random, sorted (all of them when
    ``n >= n_images``), from a generator seeded by (seed, the task's name, *keys): a task gets the same draws
    whatever pool it is in, and another key (AdaMerging's step) gives an independent draw."""
    if n >= n_images:
        return np.arange(n_images)
    rng = np.random.default_rng([int(seed), zlib.crc32(task.encode()), *(int(k) for k in keys)])
    return np.sort(rng.choice(n_images, size=n, replace=False))


def stack_images(items: Sequence) -> torch.Tensor:
    """(N, 3, H, W) from dataset items that are images or (image, label, ...) tuples (a DataLoader collate_fn)."""
    return torch.stack([item[0] if isinstance(item, (tuple, list)) else item for item in items])


def gather_images(data: TaskData, indices: Sequence[int]) -> torch.Tensor:
    """The images at ``indices`` of one task's data, stacked; a dataset reads only those."""
    if isinstance(data, torch.Tensor):
        return data[torch.as_tensor(np.asarray(indices), dtype=torch.long)]
    return stack_images([data[int(i)] for i in indices])


@dataclass
class ModelPool:
    architecture: str
    pretrained: dict[str, torch.Tensor]  # encoder state dict (keys of ``visual``)
    experts: dict[str, dict[str, torch.Tensor]]  # task -> fine-tuned encoder state dict, in pool order
    heads: dict[str, torch.Tensor] = field(default_factory=dict)  # task -> frozen head weight (C_t, D)
    # the entries TIES / AdaMerging++ rank a task vector over: the whole state dict of the experts' source files
    # where upstream flattens more than the image tower (task_vectors' pickles, dawin.merging.ties), else None
    trim_entries: int | None = None

    @property
    def tasks(self) -> list[str]:
        return list(self.experts)

    def parameter_names(self) -> set[str]:
        """The encoder's learned parameters: the entries task vectors cover (buffers are not among them)."""
        return {name for name, _ in self.encoder().named_parameters()}

    def task_vectors(self) -> dict[str, dict[str, torch.Tensor]]:
        """tau_j = theta_j - theta_0 for every expert, over the encoder's parameters.

        Buffers (BatchNorm running statistics of ResNet towers; CLIP ViTs have none) are left out, so
        every task-vector method keeps theta0's: summed over experts, running-variance updates can turn
        a variance negative. (AdaMerging's code merges ``named_parameters`` only, for the same reason.)
        """
        names = self.parameter_names()
        return {t: {k: v for k, v in task_vector(sd, self.pretrained).items() if k in names}
                for t, sd in self.experts.items()}

    def encoder(self, state: StateDict | None = None) -> torch.nn.Module:
        """A fresh image tower of the pool's architecture holding ``state`` (default: pre-trained)."""
        visual = create_clip(self.architecture).visual
        visual.load_state_dict(dict(state if state is not None else self.pretrained))
        return visual.eval()

    def classifier(self, task: str, state: StateDict | None = None) -> ImageClassifier:
        """Encoder ``state`` with ``task``'s frozen head (no bias), as an ImageClassifier."""
        weight = self.heads[task]
        head = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            head.weight.copy_(weight)
            head.bias.zero_()
        for p in head.parameters():
            p.requires_grad_(False)
        return ImageClassifier(self.encoder(state), head, self.architecture).eval()
