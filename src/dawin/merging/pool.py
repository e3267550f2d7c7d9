"""The multi-task model pool: one pre-trained image encoder, M task experts and the tasks' frozen heads.

Merging methods combine image *encoders* only (state dicts of an open_clip ``visual`` tower); each
task keeps its own frozen zero-shot head (as in task_vectors), applied to L2-normalised features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..models import ImageClassifier, create_clip
from ..weights import StateDict, task_vector


@dataclass
class ModelPool:
    architecture: str
    pretrained: dict[str, torch.Tensor]  # encoder state dict (keys of ``visual``)
    experts: dict[str, dict[str, torch.Tensor]]  # task -> fine-tuned encoder state dict, in pool order
    heads: dict[str, torch.Tensor] = field(default_factory=dict)  # task -> frozen head weight (C_t, D)

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
