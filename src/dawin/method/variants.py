"""Coefficient variants: how per-sample coefficients are made (*kind*) and how they are used (*assignment*).

A merged-model evaluation is one (kind, assignment) pair, e.g. DaWin = (``entropy``, ``mixture``),
DaWin w/o mixture = (``entropy``, ``per_sample``), the sample-wise oracle of Table 1 =
(``cross_entropy``, ``per_sample``). Kinds are computed per test domain from cached logits (the
offset of Eq. 2 is a per-domain statistic); assignments turn a domain's coefficients into the ones the
merged models are built with. Every ablation of the paper is a pair of this registry:

| kind                    | per-sample coefficient                                          | used by          |
|-------------------------|-----------------------------------------------------------------|------------------|
| entropy                 | Eq. 2 on calibrated entropies (Eq. 1 if offset adjustment off) | DaWin            |
| entropy_no_offset       | Eq. 1 on calibrated entropies                                   | Table A          |
| entropy_uncalibrated    | as ``entropy`` with T = 1                                       | Table E          |
| entropy_authors_temperatures | as ``entropy``; the caller's Domain holds the authors' T    | Table E          |
| cross_entropy           | Eq. 1 on the true label's cross-entropies (needs labels)        | Table 1 oracle   |
| uniform, normal_*       | random draws, data-independent                                  | Table D          |
| max_logit, confidence, confidence_diff | ratio of each model's own score (exp-ratio for the confidences, as the authors ran them) | Table D |
| pl_{ensemble,average}_{soft,hard} | as ``entropy`` with pseudo-label losses in place of H | Figure 5   |

Assignments: ``per_sample`` (exact), ``mixture`` (Beta mixture over the domain, each sample takes its
cluster's mean), ``batch<b>`` (a mixture per batch of b samples, Table B), ``scaled<a>`` (the mixture's
coefficients times a, Figure A).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from . import coefficients as C
from . import expertise as E
from .mixtures import assign_by_mixture
from ..registry import KINDS as REGISTERED, check_names, parse_assignment


@dataclass(frozen=True)
class Domain:
    """Cached logits of one test domain and what the coefficient kinds need besides them."""

    name: str
    z0: torch.Tensor  # zero-shot logits (N, C)
    z1: torch.Tensor  # fine-tuned logits (N, C)
    labels: torch.Tensor
    t0: float  # temperatures fitted on the ID held-out split
    t1: float
    offset_adjustment: bool = True
    seed: int = 0
    z_average: torch.Tensor | None = None  # logits of the weight average theta(0.5), for pseudo labels

    def rng_seed(self, kind: str) -> int:
        """A seed per (config seed, kind, domain): random kinds differ across domains, reproducibly."""
        return int(zlib.crc32(f"{self.seed}/{kind}/{self.name}".encode()))


def _entropy(d: Domain) -> torch.Tensor:
    return C.domain_coefficients(E.entropy(d.z0, d.t0), E.entropy(d.z1, d.t1), d.offset_adjustment)


def _entropy_no_offset(d: Domain) -> torch.Tensor:
    return C.entropy_ratio_coefficients(E.entropy(d.z0, d.t0), E.entropy(d.z1, d.t1))


def _entropy_uncalibrated(d: Domain) -> torch.Tensor:
    return C.domain_coefficients(E.entropy(d.z0), E.entropy(d.z1), d.offset_adjustment)


def _cross_entropy(d: Domain) -> torch.Tensor:
    return C.entropy_ratio_coefficients(E.cross_entropy(d.z0, d.labels, d.t0), E.cross_entropy(d.z1, d.labels, d.t1))


def _random(distribution: str, **params) -> Callable[[Domain], torch.Tensor]:
    def kind(d: Domain) -> torch.Tensor:
        return C.random_coefficients(len(d.labels), distribution, d.rng_seed(distribution + str(params)), **params)
    return kind


def _score(score: Callable[[torch.Tensor, float], torch.Tensor], exponentiate: bool = False) -> Callable[[Domain], torch.Tensor]:
    # each model's score from its own logits (the authors' ablation used the zero-shot logits twice);
    # their confidence rows were exp-ratios (expconf_ratio, expconfdiff_ratio), the max-logit row plain
    return lambda d: C.score_ratio_coefficients(score(d.z0, d.t0), score(d.z1, d.t1), exponentiate=exponentiate)


def _pseudo_label(source: str, soft: bool) -> Callable[[Domain], torch.Tensor]:
    """Figure 5: the loss of each model against a pseudo label replaces the entropy in Eq. 2."""

    def kind(d: Domain) -> torch.Tensor:
        if source == "ensemble":  # y^ = (f(x; theta0) + f(x; theta1)) / 2, on calibrated probabilities
            target = 0.5 * torch.softmax(d.z0.double() / d.t0, -1) + 0.5 * torch.softmax(d.z1.double() / d.t1, -1)
        else:  # y~ = f(x; (theta0 + theta1) / 2)
            if d.z_average is None:
                raise ValueError("pseudo labels of the weight average need its cached logits (model 'average')")
            target = torch.softmax(E.check_finite(d.z_average).double(), -1)
        if soft:
            l0, l1 = E.pseudo_label_loss(d.z0, target, d.t0), E.pseudo_label_loss(d.z1, target, d.t1)
        else:
            hard = target.argmax(-1)
            l0, l1 = E.cross_entropy(d.z0, hard, d.t0), E.cross_entropy(d.z1, hard, d.t1)
        return C.domain_coefficients(l0, l1, d.offset_adjustment)

    return kind


KIND_FUNCTIONS: dict[str, Callable[[Domain], torch.Tensor]] = {
    "entropy": _entropy,
    "entropy_no_offset": _entropy_no_offset,
    "entropy_uncalibrated": _entropy_uncalibrated,
    "entropy_authors_temperatures": _entropy,  # the Domain carries the authors' temperatures (dawin.registry.Kind)
    "cross_entropy": _cross_entropy,
    "uniform": _random("uniform"),
    "normal_0.5_0.2": _random("normal", mean=0.5, std=0.2),
    "normal_0.8_0.1": _random("normal", mean=0.8, std=0.1),
    "max_logit": _score(E.shifted_max_logit),
    "confidence_diff": _score(E.confidence_difference, exponentiate=True),
    "confidence": _score(E.confidence, exponentiate=True),
    "pl_ensemble_soft": _pseudo_label("ensemble", True),
    "pl_ensemble_hard": _pseudo_label("ensemble", False),
    "pl_average_soft": _pseudo_label("average", True),
    "pl_average_hard": _pseudo_label("average", False),
}
check_names("coefficient kinds", REGISTERED, KIND_FUNCTIONS, __name__)


def compute(kind: str, domain: Domain) -> torch.Tensor:
    """The per-sample coefficients of ``kind`` on one domain (float64, in [0, 1])."""
    if kind not in KIND_FUNCTIONS:
        raise ValueError(f"unknown coefficient kind {kind!r}; known: {sorted(KIND_FUNCTIONS)}")
    coef = KIND_FUNCTIONS[kind](domain).double()
    if not torch.isfinite(coef).all() or (coef < 0).any() or (coef > 1).any():
        raise ValueError(f"{kind} on {domain.name}: coefficients outside [0, 1] or non-finite")
    return coef


def assign(coefficients: np.ndarray, assignment: str, n_components: int, seed: int, **mixture) -> tuple[np.ndarray, dict]:
    """The coefficients the merged models are built with, and what the mixture found (``info``)."""
    spec = parse_assignment(assignment)
    coef = np.asarray(coefficients, dtype=np.float64)
    if not spec["mixture"]:
        return coef.copy(), {"assignment": assignment, "distinct": int(len(np.unique(coef)))}
    assigned, info = assign_by_mixture(coef, n_components, seed, batch_size=spec["batch_size"], **mixture)
    assigned = np.clip(assigned * spec["scale"], 0.0, 1.0)
    return assigned, {"assignment": assignment, "distinct": int(len(np.unique(assigned))), "batches": info}
