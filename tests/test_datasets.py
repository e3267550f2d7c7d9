import json

import pytest
import torch
from PIL import Image

from dawin.inputs import datasets


def _make(root, n=6, n_cls=3):
    items = []
    for i in range(n):
        y = i % n_cls
        (root / f"c{y}").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (i * 10, 0, 0)).save(root / f"c{y}/{i}.png")
        items.append((f"c{y}/{i}.png", y))
    datasets.write_dataset(root, "toy", [f"class {c}" for c in range(n_cls)], ["a {c}."], items)
    return items


def test_roundtrip_keeps_index_order(tmp_path):
    items = _make(tmp_path)
    ds = datasets.load_dataset(tmp_path)
    assert ds.paths == [p for p, _ in items] and ds.labels == [y for _, y in items]
    img, y = ds[4]
    assert img.getpixel((0, 0)) == (40, 0, 0) and y == 1


def test_partial_dataset_counts_images(tmp_path):
    _make(tmp_path)
    (tmp_path / "c1/4.png").unlink()
    with pytest.raises(datasets.DatasetError, match="partial: expected 6 images, found 5"):
        datasets.load_dataset(tmp_path)


def test_absent_dataset_says_what_to_do(tmp_path):
    with pytest.raises(datasets.DatasetError, match="no dataset at .*run the dataset's rule first"):
        datasets.load_dataset(tmp_path / "nope")


@pytest.mark.parametrize("damage", ["empty", "truncated", "not an image"])
def test_a_damaged_image_names_itself_the_dataset_and_the_fix(tmp_path, damage):
    _make(tmp_path)
    image = tmp_path / "c1/4.png"
    data = image.read_bytes()
    image.write_bytes({"empty": b"", "truncated": data[:len(data) // 2], "not an image": b"hello"}[damage])
    ds = datasets.load_dataset(tmp_path)  # the file is there: the damage shows when it is decoded
    with pytest.raises(datasets.DatasetError, match=f"{image}: image 4 of dataset toy cannot be decoded .*delete "
                                                    f"{tmp_path} and rerun snakemake"):
        ds[4]


@pytest.mark.parametrize("name, content, message", [
    ("dataset.json", "{not json", r"dataset.json: not a dataset description \(Expecting property name"),
    ("dataset.json", '{"name": "toy"}', r"dataset.json: not a dataset description \(no 'classnames'\)"),
    ("index.csv", "file,label\nc1/4.png,1\n", r"index.csv: not a dataset index \(no column 'path'\)"),
    ("index.csv", "path,label\nc1/4.png,one\n", r"index.csv: not a dataset index \(invalid literal for int"),
    ("index.csv", "path,label\nc1/4.png,7\n", r"labels outside 0..2 in index.csv \(3 classes in dataset.json\)"),
])
def test_a_damaged_index_or_description_names_the_file_and_the_fix(tmp_path, name, content, message):
    _make(tmp_path)
    if name == "index.csv":  # one row, as dataset.json then expects
        meta = json.loads((tmp_path / "dataset.json").read_text())
        (tmp_path / "dataset.json").write_text(json.dumps({**meta, "n_images": 1}))
    (tmp_path / name).write_text(content)
    with pytest.raises(datasets.DatasetError, match=f"{message}.*delete {tmp_path} and rerun snakemake"):
        datasets.load_dataset(tmp_path)


def test_an_empty_dataset_is_an_error(tmp_path):
    datasets.write_dataset(tmp_path, "toy", ["a", "b"], ["a {c}."], [])
    with pytest.raises(datasets.DatasetError, match="the dataset has no images"):
        datasets.load_dataset(tmp_path)


def test_projections():
    z = torch.arange(12.0).view(2, 6)
    assert torch.equal(datasets.subset_projection([5, 0])(z), z[:, [5, 0]])
    groups = [[0, 3], [1], [2, 4, 5]]
    z2 = torch.randn(4, 6)
    expected = torch.stack([z2[:, g].amax(1) for g in groups], 1)
    assert torch.equal(datasets.group_max_projection(groups)(z2), expected)
