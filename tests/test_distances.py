import functools
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dawin.report import distances as dist


# --- MMD ----------------------------------------------------------------------------------------------


def test_mmd2_unbiased_hand_value():
    # x = (0, 1, 2), y = (0, 1, 3), sigma = 1, k = exp(-d^2 / 2); a = e^-1/2, b = e^-2, c = e^-9/2
    # Kxx off-diagonal mean = (2a + b)/3, Kyy = (a + b + c)/3, Kxy mean = (2 + 4a + 2b + c)/9
    # -> MMD^2_u = (a + 2b + c - 4) / 9  (negative: the unbiased estimate is not clamped)
    a, b, c = math.exp(-0.5), math.exp(-2.0), math.exp(-4.5)
    expected = (a + 2 * b + c - 4) / 9
    x, y = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([[0.0], [1.0], [3.0]])
    assert dist.mmd2(x, y, bandwidth=1.0) == pytest.approx(expected, rel=1e-12)
    # pooled distances (15 pairs): 0,0,1,1,1,1,1,1,1,2,2,2,2,3,3 -> median 1, same value
    assert dist.median_bandwidth(x, y) == 1.0
    assert dist.mmd2(x, y) == pytest.approx(expected, rel=1e-12)
    assert dist.mmd(x, y) == 0.0  # sqrt(max(negative, 0))
    # sigma = 2: k = exp(-d^2 / 8)
    a2, b2, c2 = math.exp(-1 / 8), math.exp(-4 / 8), math.exp(-9 / 8)
    assert dist.mmd2(x, y, bandwidth=2.0) == pytest.approx((a2 + 2 * b2 + c2 - 4) / 9, rel=1e-12)


def test_mmd2_symmetric_and_positive_for_separated_points():
    x, y = np.array([[0.0], [1.0]]), np.array([[10.0], [11.0]])
    # sigma = 1: Kxx off = Kyy off = e^-1/2; x-y distances 10, 11, 9, 10 -> MMD^2_u = 2 e^-1/2 - 2 mean(Kxy)
    kxy = (2 * math.exp(-100 / 2) + math.exp(-121 / 2) + math.exp(-81 / 2)) / 4
    expected = 2 * math.exp(-0.5) - 2 * kxy
    assert dist.mmd2(x, y, 1.0) == pytest.approx(expected, rel=1e-12)
    assert dist.mmd2(y, x, 1.0) == pytest.approx(expected, rel=1e-12)
    assert dist.mmd(x, y, 1.0) == pytest.approx(math.sqrt(expected), rel=1e-12)


def test_mmd_same_vs_shifted_gaussians():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 5, generator=g)
    y = torch.randn(600, 5, generator=g)
    z = torch.randn(600, 5, generator=g) + 1.0
    same, shifted = dist.mmd2(x, y), dist.mmd2(x, z)
    assert abs(same) < 5e-3
    assert shifted > 0.05
    assert shifted > 20 * abs(same)
    assert dist.mmd(x, z) == pytest.approx(math.sqrt(shifted))


def test_mmd_errors():
    with pytest.raises(ValueError, match="different dimensions"):
        dist.mmd2(torch.zeros(3, 2), torch.zeros(3, 3), 1.0)
    with pytest.raises(ValueError, match="at least 2 points"):
        dist.mmd2(torch.zeros(1, 2), torch.zeros(3, 2), 1.0)
    with pytest.raises(ValueError, match="bandwidth"):
        dist.mmd2(torch.zeros(3, 2), torch.ones(3, 2), 0.0)
    with pytest.raises(ValueError, match="median pairwise distance is 0"):
        dist.mmd2(torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="non-finite"):
        dist.mmd2(torch.tensor([0.0, float("nan")]), torch.zeros(2), 1.0)


# --- FID ----------------------------------------------------------------------------------------------


def test_frechet_distance_1d_gaussians():
    # (m1 - m2)^2 + (sd1 - sd2)^2 with variances 4 and 9 (sd 2 and 3): 4 + 1 = 5
    assert dist.frechet_distance(1.0, 4.0, 3.0, 9.0) == pytest.approx(5.0, rel=1e-12)
    assert dist.frechet_distance([0.0], [[1.0]], [0.0], [[1.0]]) == pytest.approx(0.0, abs=1e-12)


def test_frechet_distance_diagonal_is_sum_over_dims():
    m1, m2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([4.0, 1.0, 0.25])
    expected = sum((a - b) ** 2 + (math.sqrt(s) - math.sqrt(t)) ** 2 for a, b, s, t in zip(m1, m2, v1, v2))
    assert expected == pytest.approx((1 + 1) + (0 + 1) + (4 + 0))  # per dim: mean term + sd term
    assert dist.frechet_distance(m1, np.diag(v1), m2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_singular_covariances():
    # rank-1 covariances: sqrtm of the singular product is still finite (0 here): Tr = 1 + 1 - 0
    s1, s2 = np.diag([1.0, 0.0]), np.diag([0.0, 1.0])
    assert dist.frechet_distance(np.zeros(2), s1, np.zeros(2), s2) == pytest.approx(2.0, abs=1e-6)


def test_frechet_distance_errors():
    with pytest.raises(ValueError, match="covariances must be"):
        dist.frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="same length"):
        dist.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(2))
    with pytest.raises(ValueError, match="non-finite"):
        dist.frechet_distance(np.zeros(1), [[np.inf]], np.zeros(1), [[1.0]])


def test_fid_identical_and_shifted_features():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 8, generator=g, dtype=torch.float64)
    assert dist.fid(x, x) == pytest.approx(0.0, abs=1e-8)
    # a shift by c in every dim adds ||c||^2 exactly (same covariance)
    assert dist.fid(x, x + 0.5) == pytest.approx(8 * 0.25, abs=1e-8)
    # fewer samples than dimensions: singular covariances still give ~0 for identical sets
    small = torch.randn(5, 16, generator=g)
    assert dist.fid(small, small) == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError, match="at least 2"):
        dist.fid(torch.zeros(1, 3), torch.zeros(4, 3))


def test_feature_statistics_unbiased_covariance():
    mu, cov = dist.feature_statistics(np.array([[0.0, 0.0], [2.0, 2.0]]))
    assert mu.tolist() == [1.0, 1.0]
    assert cov.tolist() == [[2.0, 2.0], [2.0, 2.0]]  # ddof = 1


# --- features -----------------------------------------------------------------------------------------


class _Images(torch.utils.data.Dataset):
    def __init__(self, n: int):
        g = torch.Generator().manual_seed(3)
        self.x = torch.randn(n, 3, 4, 4, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], i % 2


def _encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 6))


def test_image_features_shape_normalised_deterministic():
    ds, enc = _Images(20), _encoder()
    cpu = torch.device("cpu")
    f1 = dist.image_features(enc, ds, n=7, seed=5, batch_size=3, device=cpu)
    f2 = dist.image_features(enc, ds, n=7, seed=5, batch_size=4, device=cpu)
    assert f1.shape == (7, 6) and f1.dtype == torch.float32
    assert torch.allclose(f1.norm(dim=1), torch.ones(7), atol=1e-6)
    assert torch.allclose(f1, f2, atol=1e-6)
    # rows are the encoder's normalised outputs on the seeded subset, in index order
    idx = dist.subset_indices(20, 7, 5)
    assert idx == sorted(idx) and len(set(idx)) == 7
    with torch.no_grad():
        ref = enc(ds.x[idx])
    assert torch.allclose(f1, ref / ref.norm(dim=1, keepdim=True), atol=1e-6)
    assert dist.subset_indices(20, 7, 6) != idx
    raw = dist.image_features(enc, ds, n=7, seed=5, device=cpu, normalize=False)
    assert torch.allclose(raw, ref, atol=1e-6)


def test_image_features_all_when_fewer_and_errors():
    ds, enc = _Images(5), _encoder()
    f = dist.image_features(enc, ds, n=100, seed=0, device=torch.device("cpu"))
    assert f.shape == (5, 6)
    assert dist.subset_indices(5, 100, 0) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="n must be positive"):
        dist.image_features(enc, ds, n=0, seed=0)
    with pytest.raises(ValueError, match=r"\(batch, D\)"):
        dist.image_features(torch.nn.Identity(), ds, n=3, seed=0, device=torch.device("cpu"))


# --- matrix -------------------------------------------------------------------------------------------


def test_distance_matrix_symmetric_zero_diagonal_in_dict_order():
    feats = {"b": np.array([[0.0], [1.0]]), "a": np.array([[3.0], [5.0]]), "c": np.array([[0.0], [2.0]])}
    metric = lambda x, y: abs(float(np.mean(x)) - float(np.mean(y)))  # noqa: E731
    m, names = dist.distance_matrix(feats, metric)
    assert names == ["b", "a", "c"]
    assert m.tolist() == [[0.0, 3.5, 0.5], [3.5, 0.0, 3.0], [0.5, 3.0, 0.0]]


def test_distance_matrix_mmd_fid_and_halves():
    g = torch.Generator().manual_seed(2)
    feats = {"p": torch.randn(80, 3, generator=g), "q": torch.randn(80, 3, generator=g) + 2.0,
             "r": torch.randn(80, 3, generator=g)}
    m, names = dist.distance_matrix(feats, functools.partial(dist.mmd, bandwidth=1.0))
    assert names == ["p", "q", "r"]
    assert np.array_equal(m, m.T) and np.all(np.diag(m) == 0)
    assert m[0, 1] > m[0, 2]
    assert m[0, 1] == pytest.approx(dist.mmd(feats["p"], feats["q"], 1.0))
    f, _ = dist.distance_matrix(feats, dist.fid)
    assert np.array_equal(f, f.T) and np.all(np.diag(f) == 0)
    assert f[0, 1] == pytest.approx(dist.fid(feats["p"], feats["q"]))
    h, _ = dist.distance_matrix(feats, dist.fid, diagonal="halves", seed=1)
    assert np.array_equal(h, h.T) and np.all(np.diag(h) > 0) and np.all(np.diag(h) < f[0, 1])
    # the halves diagonal is the metric between two disjoint seeded halves
    perm = torch.randperm(80, generator=torch.Generator().manual_seed(1))
    p = feats["p"].double()
    assert h[0, 0] == pytest.approx(dist.fid(p[perm[:40]], p[perm[40:]]))
    with pytest.raises(ValueError, match="diagonal"):
        dist.distance_matrix(feats, dist.fid, diagonal="self")
    with pytest.raises(ValueError, match="no feature sets"):
        dist.distance_matrix({}, dist.fid)


# --- Inception ----------------------------------------------------------------------------------------


def test_inception_weights_location():
    assert dist.inception_weights_url() == "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"
    assert dist.inception_weights_file().name == "inception_v3_google-0cc3c7bd.pth"
    assert dist.inception_weights_file().parent.name == "checkpoints"


def test_inception_available_in_this_environment():
    ok, msg = dist.inception_available()
    expected = dist.inception_weights_file()
    if expected.is_file():
        assert ok
    else:
        assert not ok
        assert str(expected) in msg and "inception_v3_google-0cc3c7bd.pth" in msg
        assert torch.hub.get_dir() in msg and "curl -L -o" in msg
        with pytest.raises(FileNotFoundError, match="inception_v3_google-0cc3c7bd.pth"):
            dist.inception_feature_extractor()


def test_inception_missing_in_empty_hub_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    ok, msg = dist.inception_available()
    assert not ok
    assert str(tmp_path / "hub" / "checkpoints" / "inception_v3_google-0cc3c7bd.pth") in msg
    ok, msg = dist.inception_available(tmp_path / "w.pth")
    assert not ok and str(tmp_path / "w.pth") in msg
    with pytest.raises(FileNotFoundError, match="w.pth"):
        dist.inception_feature_extractor(tmp_path / "w.pth")


def test_inception_hash_check(tmp_path):
    bad = tmp_path / "inception_v3_google-0cc3c7bd.pth"
    bad.write_bytes(b"not the weights")
    assert dist.inception_available(bad)[0]
    with pytest.raises(ValueError, match="sha256"):
        dist.inception_feature_extractor(bad)


def test_inception_extractor_from_local_file(tmp_path):
    from PIL import Image
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    state = inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict()
    path = tmp_path / "random_inception.pth"
    torch.save(state, path)
    del state
    model, transform = dist.inception_feature_extractor(path, check_hash=False)
    assert not model.training and isinstance(model.fc, torch.nn.Identity) and model.AuxLogits is None
    x = transform(Image.new("L", (40, 30), color=128))
    assert x.shape == (3, 299, 299)
    # gray 128 -> (128/255 - mean) / std per channel
    expected = (128 / 255 - torch.tensor(dist.IMAGENET_MEAN)) / torch.tensor(dist.IMAGENET_STD)
    assert torch.allclose(x[:, 150, 150], expected, atol=1e-5)
    with torch.no_grad():
        out = model(x[None])
    assert out.shape == (1, dist.INCEPTION_DIM)


def _fetch_inception_job(url, base, out, lock):
    """workflow/scripts/fetch_inception.py as rule fetch_inception runs it, with a stand-in `snakemake` object."""
    import runpy
    from types import SimpleNamespace

    params = SimpleNamespace(spec={"url": [url]}, lock=str(lock), mirror=None, rewrites={"https://": f"{base}/"}, md5={})
    job = SimpleNamespace(params=params, output=[str(out)], threads=1, log=[])
    runpy.run_path(str(Path(__file__).parents[1] / "workflow/scripts/fetch_inception.py"), init_globals={"snakemake": job})


def test_paper_inputs_fetch_the_inception_weights_checked_and_locked(tmp_path):
    # issue 24, item 15: fetched with the other inputs (through the URL rewrites, from a loopback server), accepted
    # once the sha256 starts with the prefix in torchvision's file name, then recorded in the lock
    from dawin.inputs.checkpoints import read_lock
    from dawin.replicas.rehearsal import write_inception_replica
    from dawin.replicas.server import serve

    site = tmp_path / "site"
    url = write_inception_replica(site, seed=0)
    served = site / "download.pytorch.org/models" / url.rsplit("/", 1)[1]
    httpd, base = serve(site)
    try:
        out, lock = tmp_path / "dl" / served.name, tmp_path / "lock.json"
        _fetch_inception_job(url, base, out, lock)
        assert read_lock(lock) == {"inception-v3": hashlib.sha256(served.read_bytes()).hexdigest()}
        model, _ = dist.inception_feature_extractor(out)
        assert model(torch.zeros(1, 3, 299, 299)).shape == (1, 2048)
        # a file whose sha256 does not start with its name's prefix is refused, removed, and locks nothing
        data = bytearray(served.read_bytes())
        data[-1] ^= 1
        served.write_bytes(bytes(data))
        with pytest.raises(ValueError, match="does not start with"):
            _fetch_inception_job(url, base, tmp_path / "dl2" / served.name, tmp_path / "lock2.json")
        assert not (tmp_path / "dl2" / served.name).exists() and not (tmp_path / "lock2.json").exists()
    finally:
        httpd.shutdown()
        httpd.server_close()
