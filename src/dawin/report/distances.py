"""Distances between image datasets (paper, Figure G): MMD on CLIP image features and FID on Inception features.

Figure G shows an 8 x 8 matrix of distances between the multi-task datasets, computed with

* MMD on the image features of the pre-trained OpenAI CLIP ViT-B/32 image encoder (``clip.visual``), and
* FID on the 2048-d pool features of the ImageNet pre-trained Inception-V3.

Conventions fixed here (the paper does not state them):

* **Features** (:func:`image_features`): a seeded random subset of ``n`` images per dataset (all of them if
  the dataset is smaller); CLIP features are L2-normalised (``normalize=True``), Inception features are not.
* **MMD** (:func:`mmd2`, :func:`mmd`): Gaussian RBF kernel ``k(a, b) = exp(-||a - b||^2 / (2 sigma^2))``,
  unbiased U-statistic estimator of MMD^2 (Gretton et al., JMLR 2012, Eq. 3). With ``bandwidth=None``,
  ``sigma`` is the *median heuristic*: the median of the Euclidean distances ``||z_i - z_j||`` over all
  pairs ``i < j`` of the pooled sample ``z = [x; y]``. The reported distance is
  ``mmd = sqrt(max(mmd2, 0))`` (the unbiased MMD^2 can be slightly negative when the distributions agree).
  For a matrix with ONE kernel shared by every pair, compute ``sigma`` with :func:`median_bandwidth` over
  all datasets and pass ``functools.partial(mmd, bandwidth=sigma)`` as the metric.
* **FID** (:func:`frechet_distance`, :func:`fid`): ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2))`` with
  ``S`` the unbiased (ddof = 1) sample covariance, following pytorch-fid / the TTUR reference code: when
  ``sqrtm(S1 S2)`` is not finite (singular product), ``eps * I`` is added to both covariances and the square
  root recomputed; imaginary parts from round-off are dropped when the diagonal's imaginary part is within
  ``1e-3`` of 0, otherwise a ``ValueError`` is raised. The value is returned as computed (not clamped), so it
  may be a tiny negative number for identical inputs.
* **Matrix diagonal** (:func:`distance_matrix`): 0 by default (the distance of a distribution to itself);
  ``diagonal="halves"`` instead measures the metric between two disjoint random halves of each feature
  set, a sampling noise floor.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence
from urllib.parse import urlparse

import numpy as np
import scipy.linalg
import torch

from ..inference.logits import default_device, loader

ArrayLike = np.ndarray | torch.Tensor | Sequence[float] | float

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_SIZE = 299
INCEPTION_DIM = 2048


# --- features -----------------------------------------------------------------------------------------


def subset_indices(size: int, n: int, seed: int) -> list[int]:
    """A seeded random subset of ``n`` indices of ``range(size)`` (all of them if ``size <= n``), sorted.

    The subset is ``torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n]``, so it depends
    only on ``(size, n, seed)``; sorting keeps the reads in index order.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if size <= 0:
        raise ValueError("the dataset is empty")
    if size <= n:
        return list(range(size))
    g = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(size, generator=g)[:n].tolist())


@torch.no_grad()
def image_features(encoder: torch.nn.Module, dataset, n: int, seed: int, batch_size: int = 256,
                   num_workers: int = 0, device: torch.device | None = None,
                   normalize: bool = True) -> torch.Tensor:
    """Features (float32, ``(min(n, len(dataset)), D)``, on the CPU) of a seeded random subset of ``dataset``.

    ``dataset[i]`` is ``(image tensor, label)`` with the encoder's preprocessing already applied (as the
    project's datasets do through their ``transform``). ``encoder`` maps a batch of images to ``(B, D)``
    features (e.g. ``clip.visual`` or :func:`inception_feature_extractor`'s model); it is put in eval mode
    and run in float32. With ``normalize`` each row is divided by its L2 norm (use it for CLIP, not for FID).
    Rows are in increasing dataset index order of the subset (:func:`subset_indices`).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    indices = subset_indices(len(dataset), n, seed)
    device = device or default_device()
    encoder = encoder.to(device).eval()
    outs = []
    for x, _ in loader(dataset, batch_size, num_workers, indices):
        z = encoder(x.to(device, non_blocking=True))
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[0] != x.shape[0]:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"the encoder must return (batch, D) features; got {shape} for a batch of {x.shape[0]}")
        outs.append(z.float().cpu())
    feats = torch.cat(outs)
    if not torch.isfinite(feats).all():
        raise ValueError("the encoder produced non-finite features")
    if normalize:
        norms = feats.norm(dim=1, keepdim=True)
        if (norms == 0).any():
            raise ValueError("cannot L2-normalise: some feature vectors are exactly zero")
        feats = feats / norms
    return feats


# --- MMD ----------------------------------------------------------------------------------------------


def _as_2d(x: ArrayLike, what: str) -> torch.Tensor:
    """``x`` as a float64 CPU tensor (N, D); a 1-D input is N points of dimension 1."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().to("cpu", torch.float64)
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2:
        raise ValueError(f"{what} must be (N, D) (or 1-D), got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} has non-finite values")
    return t


def median_bandwidth(*samples: ArrayLike) -> float:
    """Median heuristic: the median Euclidean distance over all pairs ``i < j`` of the pooled ``samples``.

    For an even number of pairs it is the mean of the two middle values (``numpy.median``).
    """
    if not samples:
        raise ValueError("median_bandwidth needs at least one sample")
    ts = [_as_2d(s, f"sample {k}") for k, s in enumerate(samples)]
    if len({t.shape[1] for t in ts}) != 1:
        raise ValueError(f"samples have different dimensions: {[t.shape[1] for t in ts]}")
    z = torch.cat(ts)
    if z.shape[0] < 2:
        raise ValueError("the median heuristic needs at least 2 points")
    iu = torch.triu_indices(z.shape[0], z.shape[0], offset=1)
    d = torch.cdist(z, z)[iu[0], iu[1]]
    sigma = float(np.median(d.numpy()))
    if sigma <= 0:
        raise ValueError("the median pairwise distance is 0 (more than half the pairs coincide): pass a bandwidth")
    return sigma


def _rbf(a: torch.Tensor, b: torch.Tensor, sigma: float) -> torch.Tensor:
    d2 = torch.cdist(a, b).square()
    return torch.exp(-d2 / (2.0 * sigma * sigma))


def mmd2(x: ArrayLike, y: ArrayLike, bandwidth: float | None = None) -> float:
    """Unbiased estimate of the squared MMD between the samples ``x`` (m, D) and ``y`` (n, D).

    ``MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
    - 2/(m n) sum_{i, j} k(x_i, y_j)`` with ``k(a, b) = exp(-||a - b||^2 / (2 sigma^2))`` and
    ``sigma = bandwidth`` or, when None, :func:`median_bandwidth` of the pooled ``x`` and ``y``.
    Computed in float64; it can be negative. Needs m, n >= 2.
    """
    xt, yt = _as_2d(x, "x"), _as_2d(y, "y")
    if xt.shape[1] != yt.shape[1]:
        raise ValueError(f"x and y have different dimensions: {xt.shape[1]} vs {yt.shape[1]}")
    m, n = xt.shape[0], yt.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 points per sample, got {m} and {n}")
    sigma = median_bandwidth(xt, yt) if bandwidth is None else float(bandwidth)
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"bandwidth must be a positive finite number, got {bandwidth}")
    kxx, kyy, kxy = _rbf(xt, xt, sigma), _rbf(yt, yt, sigma), _rbf(xt, yt, sigma)
    # the diagonals are exp(0) = 1 exactly
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def mmd(x: ArrayLike, y: ArrayLike, bandwidth: float | None = None) -> float:
    """The MMD distance reported in the figure: ``sqrt(max(mmd2(x, y, bandwidth), 0))``."""
    return math.sqrt(max(mmd2(x, y, bandwidth), 0.0))


# --- FID ----------------------------------------------------------------------------------------------


def _sqrtm(a: np.ndarray) -> np.ndarray:
    """``scipy.linalg.sqrtm`` without its singular-matrix warning (the caller checks finiteness itself)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        return scipy.linalg.sqrtm(a)


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike,
                     eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2))`` with ``S = sigma``, in float64:

    ``scipy.linalg.sqrtm`` of the product (its singular-matrix warning silenced); if it is not finite, ``eps * I`` is added to both covariances
    (pytorch-fid). A complex result whose diagonal has an imaginary part above ``1e-3`` raises
    ``ValueError``; smaller imaginary parts (round-off) are discarded. For D = 1 the means may be scalars
    and the covariances scalars (variances).
    """
    m1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    m2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    s2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = m1.shape[0]
    if m1.ndim != 1 or m2.shape != m1.shape:
        raise ValueError(f"means must be vectors of the same length, got {m1.shape} and {m2.shape}")
    if s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"covariances must be ({d}, {d}), got {s1.shape} and {s2.shape}")
    for name, a in (("mu1", m1), ("mu2", m2), ("sigma1", s1), ("sigma2", s2)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} has non-finite values")
    diff = m1 - m2
    covmean = _sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(d) * eps
        covmean = _sqrtm((s1 + offset) @ (s2 + offset))
        if not np.isfinite(covmean).all():
            raise ValueError("sqrtm(sigma1 sigma2) is not finite even after adding eps * I")
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        if imag > 1e-3:
            raise ValueError(f"sqrtm(sigma1 sigma2) has a significant imaginary component ({imag:.3g})")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def feature_statistics(feats: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased (ddof = 1) covariance (D, D) of the rows of ``feats`` (N >= 2, D), float64."""
    f = _as_2d(feats, "features").numpy()
    if f.shape[0] < 2:
        raise ValueError(f"the covariance needs at least 2 feature vectors, got {f.shape[0]}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def fid(x_feats: ArrayLike, y_feats: ArrayLike, eps: float = 1e-6) -> float:
    """FID between two feature matrices (N, D): :func:`frechet_distance` of their :func:`feature_statistics`."""
    mu1, s1 = feature_statistics(x_feats)
    mu2, s2 = feature_statistics(y_feats)
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature dimensions differ: {mu1.shape[0]} vs {mu2.shape[0]}")
    return frechet_distance(mu1, s1, mu2, s2, eps)


# --- Inception-V3 -------------------------------------------------------------------------------------


def inception_weights_url() -> str:
    """URL of torchvision's ``Inception_V3_Weights.IMAGENET1K_V1``."""
    from torchvision.models import Inception_V3_Weights

    return Inception_V3_Weights.IMAGENET1K_V1.url


def inception_weights_file() -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` caches the weights: ``<torch.hub.get_dir()>/checkpoints/<file>``."""
    filename = os.path.basename(urlparse(inception_weights_url()).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _resolve_weights(weights_path: str | os.PathLike | None) -> tuple[Path | None, str]:
    """(existing file or None, message saying what was found or what to fetch, and how)."""
    url = inception_weights_url()
    expected = Path(weights_path) if weights_path is not None else inception_weights_file()
    if expected.is_file():
        return expected, f"Inception-V3 weights found at {expected}"
    where = (f"at weights_path={expected}" if weights_path is not None
             else f"in the torch hub cache (torch.hub.get_dir() = {torch.hub.get_dir()})")
    msg = (f"Inception-V3 ImageNet weights (torchvision Inception_V3_Weights.IMAGENET1K_V1, {url}) not found "
           f"{where}; expected the file {expected}. They are not downloaded here. On a machine with internet run\n"
           f"  mkdir -p {expected.parent} && curl -L -o {expected} {url}\n"
           f"or  python -c \"import torch; torch.hub.load_state_dict_from_url('{url}')\"  (then copy "
           f"<torch.hub.get_dir()>/checkpoints/{os.path.basename(urlparse(url).path)} to {expected})")
    return None, msg


def inception_available(weights_path: str | os.PathLike | None = None) -> tuple[bool, str]:
    """Whether the Inception-V3 weight file exists (at ``weights_path`` or in the hub cache), and a message.

    Only checks that the file exists; nothing is downloaded.
    """
    path, msg = _resolve_weights(weights_path)
    return path is not None, msg


def check_weights_hash(path: Path) -> None:
    """torchvision's convention: the file name ends with ``-<sha256 prefix>.<ext>``; raise ``ValueError`` if the
    file's sha256 does not start with it."""
    m = re.search(r"-([a-f0-9]+)\.", path.name)
    if m is None:
        return
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if not h.hexdigest().startswith(m.group(1)):
        raise ValueError(f"{path}: sha256 {h.hexdigest()[:16]}... does not start with {m.group(1)} (corrupt file?)")


def inception_transform() -> Callable:
    """PIL image -> (3, 299, 299) tensor: RGB, bilinear resize (antialiased) to 299 x 299, ImageNet mean/std."""
    from torchvision import transforms as T

    return T.Compose([
        T.Lambda(lambda img: img.convert("RGB")),
        T.Resize((INCEPTION_SIZE, INCEPTION_SIZE), interpolation=T.InterpolationMode.BILINEAR, antialias=True),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def inception_feature_extractor(weights_path: str | os.PathLike | None = None,
                                check_hash: bool = True) -> tuple[torch.nn.Module, Callable]:
    """ImageNet Inception-V3 giving the 2048-d pool features, and its input transform.

    The model is torchvision's ``inception_v3`` as built for ``IMAGENET1K_V1`` (``transform_input=True``,
    i.e. it takes ImageNet-normalised input), loaded from the weight file (``weights_path`` or the torch hub
    cache, see :func:`inception_weights_file`), with the auxiliary head removed, ``fc`` replaced by
    ``Identity`` and in eval mode, so ``model(x)`` is ``(B, 2048)``. The transform is
    :func:`inception_transform` (use it as the dataset's ``transform``). Raises ``FileNotFoundError`` naming
    the expected file and how to fetch it when the weights are absent; it never downloads. With
    ``check_hash`` the file's sha256 is checked against the prefix in its name (torchvision convention).
    """
    from torchvision.models import inception_v3

    path, msg = _resolve_weights(weights_path)
    if path is None:
        raise FileNotFoundError(msg)
    if check_hash:
        check_weights_hash(Path(path))
    model = inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.aux_logits = False
    model.AuxLogits = None
    model.fc = torch.nn.Identity()
    return model.eval(), inception_transform()


# --- matrix -------------------------------------------------------------------------------------------


def distance_matrix(features: Mapping[str, ArrayLike], metric: Callable[[ArrayLike, ArrayLike], float],
                    diagonal: str = "zero", seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Symmetric matrix ``D[i, j] = metric(features[a_i], features[a_j])`` over the names in dict order.

    Each unordered pair is computed once (``i < j``) and mirrored. The diagonal is 0 with
    ``diagonal="zero"`` (default); with ``"halves"`` it is ``metric`` between two disjoint halves of a
    seeded random permutation of each feature set's rows (a sampling noise floor; needs >= 4 rows for MMD
    and FID).
    """
    if diagonal not in ("zero", "halves"):
        raise ValueError(f"diagonal must be 'zero' or 'halves', got {diagonal!r}")
    names = list(features)
    if not names:
        raise ValueError("no feature sets given")
    k = len(names)
    out = np.zeros((k, k), dtype=np.float64)
    for i in range(k):
        for j in range(i + 1, k):
            out[i, j] = out[j, i] = float(metric(features[names[i]], features[names[j]]))
        if diagonal == "halves":
            f = _as_2d(features[names[i]], names[i])
            perm = torch.randperm(f.shape[0], generator=torch.Generator().manual_seed(seed))
            half = f.shape[0] // 2
            out[i, i] = float(metric(f[perm[:half]], f[perm[half:2 * half]]))
    return out, names
