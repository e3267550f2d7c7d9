"""Decoded images: bit-identical model inputs and logits to the JPEG path, keys without open_clip, clear errors."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dawin.inputs import architectures, decode, models, pixels
from dawin.inputs.datasets import DatasetError, write_dataset
from dawin.inference.logits import compute_logits

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from logit_caching import make_dataset  # noqa: E402 - random JPEGs at a size the transform resizes


@pytest.mark.parametrize("arch", ["dawin-tiny-rn", "dawin-mini-vit-quickgelu", "ViT-B-32-quickgelu", "RN50"])
def test_the_key_read_from_the_config_is_the_built_models(arch):
    import open_clip

    cfg = open_clip.create_model(arch).visual.preprocess_cfg
    assert architectures.pixels_key_of(arch) == pixels.pixels_key(cfg)


def test_decoded_images_give_bit_identical_inputs_and_logits(tmp_path, tiny_pair):
    root = tmp_path / "data"
    make_dataset(root, 10, 60, n_classes=10)  # 60 px JPEGs, resized to the tiny tower's 32 px
    m0 = tiny_pair[0]
    path = tmp_path / "cache" / f"{architectures.pixels_key_of('dawin-tiny-rn')}.npy"
    assert decode.write_pixels(root, architectures.preprocess_cfg_of("dawin-tiny-rn"), path) == 10
    array = np.load(path)
    assert array.dtype == np.uint8 and array.shape == (10, 32, 32, 3)
    assert json.loads(path.with_suffix(".json").read_text())["n_images"] == 10
    jpeg = pixels.open_dataset(root, m0.visual)
    decoded = pixels.open_dataset(root, m0.visual, pixels.by_root(str(root), str(path)))
    assert decoded.pixels == path and jpeg.pixels is None
    assert all(torch.equal(jpeg[i][0], decoded[i][0]) and jpeg[i][1] == decoded[i][1] for i in range(10))
    cpu = torch.device("cpu")
    assert torch.equal(compute_logits(m0, jpeg, 4, device=cpu)[0], compute_logits(m0, decoded, 4, device=cpu)[0])
    # loader workers map the array themselves (the dataset pickles without it)
    assert torch.equal(compute_logits(m0, decoded, 4, num_workers=2, device=cpu)[0],
                       compute_logits(m0, jpeg, 4, device=cpu)[0])


def test_a_stale_or_foreign_cache_is_refused(tmp_path, tiny_pair):
    root = tmp_path / "data"
    make_dataset(root, 6, 40, n_classes=3)
    visual = tiny_pair[0].visual
    path = tmp_path / "c.npy"
    decode.write_pixels(root, architectures.preprocess_cfg_of("dawin-tiny-rn"), path)
    other = dict(visual.preprocess_cfg, size=64)
    with pytest.raises(DatasetError, match="decoded as 32x32-shortest-bicubic-fill0, the model's preprocessing is 64x64"):
        pixels.with_pixels(pixels.open_dataset(root, visual), path, other)
    # the dataset changed after decoding (one image fewer in its index): named, with the fix
    rows = (root / "index.csv").read_text().splitlines()
    meta = json.loads((root / "dataset.json").read_text())
    write_dataset(root, meta["name"], meta["classnames"], meta["templates"],
                  [(r.split(",")[0], int(r.split(",")[1])) for r in rows[1:-1]])
    with pytest.raises(DatasetError, match=r"another version of dataset .*delete .*c\.npy and rerun snakemake"):
        pixels.open_dataset(root, visual, {str(root): str(path)})
    with pytest.raises(DatasetError, match="decoded images not found"):
        pixels.open_dataset(root, visual, {str(root): str(tmp_path / "none.npy")})


def test_a_failed_decode_leaves_no_cache(tmp_path):
    root = tmp_path / "data"
    make_dataset(root, 4, 40, n_classes=2)
    (root / sorted(p for p in (root / "0000").iterdir())[0]).write_bytes(b"not a jpeg")
    path = tmp_path / "c.npy"
    with pytest.raises(DatasetError, match="cannot be decoded"):
        decode.write_pixels(root, architectures.preprocess_cfg_of("dawin-tiny-rn"), path)
    assert not path.exists()


@pytest.mark.parametrize("cfg", [
    {"size": 32, "resize_mode": "shortest", "interpolation": "bicubic", "fill_color": 0},
    {"size": 224, "resize_mode": "shortest", "interpolation": "bicubic", "fill_color": 0},
    {"size": 64, "resize_mode": "shortest", "interpolation": "bilinear", "fill_color": 0},
    {"size": (40, 56), "resize_mode": "squash", "interpolation": "bicubic", "fill_color": 0},
])
def test_the_torch_free_decoding_is_open_clips_transform_array_for_array(cfg):
    """dawin.inputs.decode.pil_pixels against open_clip's own transform (split at ToTensor), on RGB images of odd,
    even, portrait, landscape, already-sized and smaller-than-the-crop shapes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    ours, theirs = decode.pil_pixels(cfg), decode.split_transform(cfg)[0]
    size = cfg["size"] if isinstance(cfg["size"], int) else cfg["size"][0]
    for w, h in [(size, size), (size + 1, size), (size, size + 3), (333, 500), (500, 333), (97, 61), (17, 23), (640, 641)]:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        a, b = ours(img), theirs(img)
        assert a.dtype == b.dtype == np.uint8 and np.array_equal(a, b), (cfg, w, h)


def test_the_decoding_job_imports_neither_torch_nor_open_clip_and_its_workers_agree(tmp_path):
    import subprocess

    root = tmp_path / "data"
    make_dataset(root, 9, 50, n_classes=3)
    code = ("import sys; from dawin.inputs import architectures, decode; "
            f"n = decode.write_pixels({str(root)!r}, architectures.preprocess_cfg_of('dawin-tiny-rn'), {str(tmp_path / 'a.npy')!r}, num_workers=2, chunksize=2); "
            "print(n, sorted(m for m in ('torch', 'open_clip', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")[-2]
    assert out == "9 []"
    decode.write_pixels(root, architectures.preprocess_cfg_of("dawin-tiny-rn"), tmp_path / "b.npy")
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
