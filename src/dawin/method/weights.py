"""State-dict arithmetic, as task_vectors' ``TaskVector``: interpolation, weighted sums, task vectors.

Used by WiSE-FT, DaWin's merged models, the soups and every multi-task merging method; each method's own
arithmetic lives with the method (TIES in ``dawin.merging.ties``, Fisher averaging in ``dawin.merging.fisher``,
Model Stock in ``dawin.robust.soups``). State dicts map parameter names to tensors; all inputs of one operation must
share keys and shapes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import torch

StateDict = Mapping[str, torch.Tensor]


def same_keys(*sds: StateDict) -> list[str]:
    """The keys of the first state dict, after checking that every one has the same keys and shapes."""
    keys = list(sds[0].keys())
    for sd in sds[1:]:
        if set(sd.keys()) != set(keys):
            missing = sorted(set(keys) ^ set(sd.keys()))
            raise KeyError(f"state dicts differ in {len(missing)} keys, e.g. {missing[:3]}")
        for k in keys:
            if sd[k].shape != sds[0][k].shape:
                raise ValueError(f"shape mismatch for {k}: {tuple(sds[0][k].shape)} vs {tuple(sd[k].shape)}")
    return keys


def is_mergeable(t: torch.Tensor) -> bool:
    """Whether an entry is combined (floating point) or copied (integer buffers)."""
    return t.is_floating_point()


def lerp(theta0: StateDict, theta1: StateDict, weight: float) -> dict[str, torch.Tensor]:
    """theta(l) = (1 - l) * theta0 + l * theta1 for every floating-point entry (others from theta0)."""
    return weighted_sum([theta0, theta1], [1.0 - weight, weight])


def weighted_sum(state_dicts: Sequence[StateDict], coefficients: Sequence[float]) -> dict[str, torch.Tensor]:
    """sum_j c_j * theta_j; integer buffers are copied from the first state dict."""
    if len(state_dicts) != len(coefficients) or not state_dicts:
        raise ValueError("need one coefficient per state dict")
    keys = same_keys(*state_dicts)
    out: dict[str, torch.Tensor] = {}
    for k in keys:
        ref = state_dicts[0][k]
        if not is_mergeable(ref):
            out[k] = ref.clone()
            continue
        acc = torch.zeros_like(ref, dtype=torch.float32 if ref.dtype in (torch.float16, torch.bfloat16) else ref.dtype)
        for sd, c in zip(state_dicts, coefficients):
            acc.add_(sd[k].to(acc.dtype), alpha=float(c))
        out[k] = acc.to(ref.dtype)
    return out


def task_vector(theta: StateDict, theta0: StateDict) -> dict[str, torch.Tensor]:
    """tau = theta - theta0 (floating-point entries only)."""
    keys = same_keys(theta, theta0)
    return {k: theta[k] - theta0[k] for k in keys if is_mergeable(theta0[k])}


def add_task_vectors(theta0: StateDict, taus: Sequence[StateDict], coefficients: Sequence[float]) -> dict[str, torch.Tensor]:
    """theta0 + sum_j c_j * tau_j; entries absent from the task vectors are copied from theta0."""
    out = {k: v.clone() for k, v in theta0.items()}
    for tau, c in zip(taus, coefficients):
        for k, v in tau.items():
            out[k] += float(c) * v.to(out[k].dtype)
    return out


def relative_distance(theta: StateDict, reference: StateDict, prefix: str = "") -> tuple[float, float]:
    """(||theta - reference|| / ||reference||, max |theta - reference|) over the float tensors whose keys start
    with ``prefix`` in both; e.g. how far task_vectors' theta0 is from the OpenAI weights."""
    keys = [k for k in same_keys({k: v for k, v in theta.items() if k.startswith(prefix) and k in reference},
                                  {k: v for k, v in reference.items() if k.startswith(prefix) and k in theta})
            if is_mergeable(reference[k])]
    if not keys:
        raise ValueError(f"no common floating-point tensors with prefix {prefix!r} to compare")
    diff = sum(float((theta[k].double() - reference[k].double()).pow(2).sum()) for k in keys)
    norm = sum(float(reference[k].double().pow(2).sum()) for k in keys)
    worst = max(float((theta[k].double() - reference[k].double()).abs().max()) for k in keys)
    return (diff / norm) ** 0.5 if norm else float("inf"), worst


def lerp_into(target: torch.nn.Module, theta0: StateDict, delta: StateDict, weight: float) -> None:
    """Write theta0 + weight * delta into ``target``'s parameters in place (no new allocations).

    With delta = theta1 - theta0 this is lerp(theta0, theta1, weight): the cheap form used when
    many merged models of one pair are evaluated one after the other.
    """
    with torch.no_grad():
        for name, p in target.state_dict(keep_vars=True).items():
            if name in delta:
                torch.add(theta0[name], delta[name], alpha=float(weight), out=p.data)


def weights_digest(state: StateDict, prefix: str = "") -> str:
    """sha256 over the entries of ``state`` whose names start with ``prefix`` (name, dtype, shape and bytes of each,
    in name order): two models with this digest equal hold the same weights there."""
    h = hashlib.sha256()
    for name in sorted(k for k in state if k.startswith(prefix)):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class DistinctWeights:
    """Checks that the models of one set (a multi-task pool with its theta0, the runs of a soup) hold distinct image
    towers: a file that stands in for another (a mirror or Drive file holding the wrong model: Drive files have
    no published hash) would otherwise pass every check and silently count one model twice.

    ``add(name, state)`` digests the entries under ``prefix`` (:func:`weights_digest`) and raises ``ValueError``
    naming both models when an earlier one has the same; ``name`` should say the role and the file."""

    def __init__(self, what: str, prefix: str = ""):
        self.what, self.prefix, self.seen = what, prefix, {}

    def add(self, name: str, state: StateDict) -> None:
        digest = weights_digest(state, self.prefix)
        if digest in self.seen:
            n = sum(k.startswith(self.prefix) for k in state)
            raise ValueError(f"{self.what}: {self.seen[digest]} and {name} hold identical image towers (all {n} "
                             f"tensors; sha256 {digest[:16]}): one file stands in for the other. Check where each "
                             "came from (a converted checkpoint's .json sidecar names its upstream file and sha256; "
                             "a mirror or Drive file may hold the wrong model) and replace the wrong one")
        self.seen[digest] = name
