"""The 8 multi-task datasets (test and train splits): shipped class names / templates / sizes, and every builder
on tiny fakes in the real formats (.mat, idx.gz, the DTD tarball, GTSRB's zips, HF parquet shards), served from
127.0.0.1 or read from tmp dirs. The parquet reading itself needs pyarrow: those tests are skipped where it is not
installed."""

import csv
import gzip
import hashlib
import http.server
import importlib.util
import io
import json
import re
import tarfile
import threading
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from dawin.inputs import multitask_datasets as mt
from dawin.inputs.datasets import DatasetError, load_dataset
from dawin.inputs.download import DownloadError

HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None
needs_pyarrow = pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow is not installed: parquet shards cannot be read")


def index(root: Path) -> list[tuple[str, int]]:
    with open(root / "index.csv", newline="") as f:
        return [(r["path"], int(r["label"])) for r in csv.DictReader(f)]


def meta(root: Path, name: str = "dataset.json") -> dict:
    return json.loads((root / name).read_text())


def jpeg(seed: int, size=(6, 5)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (seed * 40 % 255, 20, 200 - seed)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over ``tmp_path/www``; yields (www folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = partial(type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}),
                      directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- shipped metadata ------------------------------------------------------------------------------


def test_class_and_template_counts_pinned():
    tasks = mt.load_task_metadata()
    assert tuple(tasks) == mt.TASKS
    assert {k: len(t.classnames) for k, t in tasks.items()} == {
        "sun397": 397, "stanford_cars": 196, "resisc45": 45, "eurosat": 10, "svhn": 10, "gtsrb": 43, "mnist": 10,
        "dtd": 47}
    # task_vectors src/datasets/templates.py: Cars 8, DTD 8, EuroSAT 3, GTSRB 3, MNIST 1, RESISC45 18, SUN397 2, SVHN 1
    assert {t.task_vectors_name: len(t.templates) for t in tasks.values()} == {
        "Cars": 8, "DTD": 8, "EuroSAT": 3, "GTSRB": 3, "MNIST": 1, "RESISC45": 18, "SUN397": 2, "SVHN": 1}
    assert {k: t.expected_images for k, t in tasks.items()} == {
        "sun397": 19_850, "stanford_cars": 8_041, "resisc45": 6_300, "eurosat": 2_700, "svhn": 26_032,
        "gtsrb": 12_630, "mnist": 10_000, "dtd": 1_880} == mt.EXPECTED_IMAGES
    for t in tasks.values():
        assert all(tpl.format(c="x") != tpl and "{c}" in tpl for tpl in t.templates)


def test_class_names_and_templates_pinned():
    t = mt.load_task_metadata()
    sun = t["sun397"].classnames
    assert (sun[0], sun[1], sun[-1]) == ("abbey", "airplane cabin", "youth hostel")
    # task_vectors' order: sorted ImageFolder folders "<letter>_<name>" with [2:] and "_" -> " "
    key = [c[0] + "_" + c.replace(" ", "_") for c in sun]
    assert key == sorted(key)
    cars = t["stanford_cars"].classnames
    assert (cars[0], cars[5], cars[-1]) == ("AM General Hummer SUV 2000", "Acura Integra Type R 2001",
                                            "smart fortwo Convertible 2012")  # devkit order, not alphabetical
    res = t["resisc45"].classnames
    assert (res[0], res[2], res[-1]) == ("airplane", "baseball diamond", "wetland") and list(res) == sorted(res)
    assert t["eurosat"].classnames == (
        "annual crop land", "forest", "brushland or shrubland", "highway or road",
        "industrial buildings or commercial buildings", "pasture land", "permanent crop land",
        "residential buildings or homes or apartments", "river", "lake or sea")
    assert t["svhn"].classnames == t["mnist"].classnames == tuple("0123456789")
    gt = t["gtsrb"].classnames
    assert (gt[0], gt[14], gt[42]) == ("red and white circle 20 kph speed limit", "stop",
                                       "white circle with gray strike bar indicating no passing for trucks has ended")
    dtd = t["dtd"].classnames
    assert (dtd[0], dtd[30], dtd[-1]) == ("banded", "polka-dotted", "zigzagged") and list(dtd) == sorted(dtd)
    assert t["mnist"].templates == t["svhn"].templates == ('a photo of the number: "{c}".',)
    assert t["eurosat"].templates[0] == "a centered satellite photo of {c}."
    assert t["gtsrb"].templates[1].format(c="stop") == 'a centered photo of a "stop" traffic sign.'
    assert t["dtd"].templates[-1] == "a photo of the {c} object."
    assert t["resisc45"].templates[0] == "satellite imagery of {c}."
    assert t["sun397"].templates[1] == "a photo of the {c}."
    for task in t.values():  # provenance with commits
        assert all(re.search(r"@[0-9a-f]{40}:", task.sources[k]) for k in ("classnames", "templates"))
    assert {k: next(iter(v)) for k, v in mt.SOURCES.items()} == {
        "sun397": "hf", "stanford_cars": "hf", "resisc45": "hf", "eurosat": "hf", "svhn": "torchvision",
        "gtsrb": "hf", "mnist": "torchvision", "dtd": "hf"}
    assert mt.SOURCES["gtsrb"]["hf"]["repo"] == "tanganke/gtsrb" and "vgg" in mt.SOURCES["dtd"]
    assert set(mt.MULTITASK_BUILDERS) == set(mt.TASKS)


def test_train_splits_sources_and_sizes_pinned(tmp_path):
    # Fisher / RegMean read each task's train split (FusionBench config/dataset/image_classification/train/*.yaml)
    assert mt.EXPECTED_TRAIN_IMAGES == {
        "sun397": {"hf": None}, "stanford_cars": {"hf": None}, "resisc45": {"hf": 18_900}, "eurosat": {"hf": None},
        "svhn": {"torchvision": 73_257}, "gtsrb": {"hf": 26_640, "torchvision": 26_640},
        "mnist": {"torchvision": 60_000}, "dtd": {"hf": 3_760, "vgg": 1_880}}
    assert mt.expected_split_images("dtd", "train") == 3_760
    assert mt.expected_split_images("dtd", "train", "vgg") == 1_880
    assert mt.expected_split_images("svhn") == 26_032
    for task, spec in mt.SOURCES.items():
        if "hf" in spec:
            assert mt.source_spec(task, "hf", "train")["pattern"] == "data/train-*.parquet"
            assert mt.source_spec(task, "hf")["pattern"] == "data/test-*.parquet"
    # URLs and md5s as in torchvision 0.29.1 (svhn.py split_list["train"], mnist.py resources, gtsrb.py)
    files = {t: {f: s["md5"] for f, s in mt.source_spec(t, "torchvision", "train")["files"].items()}
             for t in ("svhn", "mnist", "gtsrb")}
    assert files == {
        "svhn": {"train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373"},
        "mnist": {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                  "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432"},
        "gtsrb": {"GTSRB-Training_fixed.zip": "513f3c79a4c5141765e10e952eaa2478"}}
    assert list(mt.source_spec("dtd", "vgg", "train")["files"]) == ["dtd-r1.0.1.tar.gz"]  # the same tarball
    with pytest.raises(DatasetError, match="unknown split 'val'; one of test, train"):
        mt.prepare_task("svhn", tmp_path, split="val")


# --- SVHN: .mat ------------------------------------------------------------------------------------


def test_svhn_mat_labels_order_pixels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    (tmp_path / "src").mkdir()
    savemat(tmp_path / "src" / "test_32x32.mat", {"X": x, "y": np.array([[10], [1], [3], [10], [9]], np.uint8)})
    root = tmp_path / "svhn"
    rec = mt.build_svhn(tmp_path / "src", root, expected_images=5, expected_classes=None)
    assert index(root) == [("test/000/000000.png", 0), ("test/001/000001.png", 1), ("test/003/000002.png", 3),
                           ("test/000/000003.png", 0), ("test/009/000004.png", 9)]
    assert np.array_equal(np.asarray(Image.open(root / "test/003/000002.png")), x[:, :, :, 2])
    ds = load_dataset(root)
    assert len(ds) == 5 and ds.classnames == list("0123456789") and ds.templates == ['a photo of the number: "{c}".']
    assert meta(root)["split"] == "test" and meta(root)["task_vectors_name"] == "SVHN"
    v = meta(root, "verify.json")
    assert v == rec and v["n_images"] == 5 and v["n_classes"] == 10 and v["n_classes_present"] == 4
    assert v["index_sha256"] == hashlib.sha256((root / "index.csv").read_bytes()).hexdigest()
    for expected, word in ((6, "partial"), (4, "larger")):
        with pytest.raises(DatasetError, match=f"{word}.*expected {expected} images, found 5"):
            mt.build_svhn(tmp_path / "src" / "test_32x32.mat", tmp_path / f"bad{expected}", expected_images=expected)
        assert not (tmp_path / f"bad{expected}" / "verify.json").exists()
    with pytest.raises(DatasetError, match="expected 10 classes, found 4"):  # the default: all classes present
        mt.build_svhn(tmp_path / "src", tmp_path / "few", expected_images=5)
    assert not (tmp_path / "few" / "verify.json").exists()
    with pytest.raises(DatasetError, match="ufldl.stanford.edu"):
        mt.build_svhn(tmp_path / "absent", tmp_path / "x")


def test_svhn_train_split_reads_train_32x32(tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "src").mkdir()
    for split, n in (("test", 2), ("train", 3)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        savemat(tmp_path / "src" / f"{split}_32x32.mat", {"X": x, "y": np.array([[10], [4], [7]][:n], np.uint8)})
    root = tmp_path / "svhn_train"
    rec = mt.build_svhn(tmp_path / "src", root, split="train", expected_images=3, expected_classes=None)
    assert index(root) == [("train/000/000000.png", 0), ("train/004/000001.png", 4), ("train/007/000002.png", 7)]
    assert meta(root)["split"] == "train" and rec["split"] == "train" and rec["layout"] == "train_32x32.mat"
    assert load_dataset(root)[2][1] == 7
    with pytest.raises(DatasetError, match="expected 73257 images, found 3"):  # the published train size
        mt.build_svhn(tmp_path / "src", tmp_path / "t2", split="train")
    with pytest.raises(DatasetError, match="no train_32x32.mat"):
        mt.build_svhn(tmp_path / "absent", tmp_path / "t3", split="train")


# --- MNIST: idx.gz over HTTP -----------------------------------------------------------------------


def idx(array: np.ndarray) -> bytes:
    head = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    # mtime=0: gzip stamps the current second into its header, which made the bytes depend on the clock
    return gzip.compress(head + array.astype(np.uint8).tobytes(), mtime=0)


def test_mnist_prepare_over_http(tmp_path, server):
    www, base = server
    rng = np.random.default_rng(1)
    images, labels = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8), np.array([7, 2, 1, 0], np.uint8)
    (www / "mnist").mkdir()
    (www / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(idx(images))
    (www / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(idx(labels))
    urls = {f: [f"{base}/gone/{f}", f"{base}/mnist/{f}"]
            for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
    root = tmp_path / "data" / "mnist"
    rec = mt.prepare_task("mnist", root, downloads=tmp_path / "dl", urls=urls, progress=False,
                          expected_images=4, expected_classes=None)
    assert [label for _, label in index(root)] == [7, 2, 1, 0]
    assert index(root)[1] == ("test/002/000001.png", 2)
    assert np.array_equal(np.asarray(Image.open(root / "test/002/000001.png")), images[1])
    assert rec["via"] == "torchvision" and rec["download"]["files"][0]["md5"] is None  # replaced URLs: no md5
    assert rec["download"]["files"][1]["sha256"] == hashlib.sha256(idx(labels)).hexdigest()
    assert (tmp_path / "dl" / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file()
    with pytest.raises(DatasetError, match="expected 10000 images, found 4"):  # default size, files re-used
        mt.prepare_task("mnist", tmp_path / "data" / "m2", downloads=tmp_path / "dl", urls=urls, progress=False)
    with pytest.raises(DownloadError, match=r"(?s)t10k-images-idx3-ubyte\.gz.*HTTP 404.*by hand"):
        mt.prepare_task("mnist", tmp_path / "data" / "m3", downloads=tmp_path / "dl3", progress=False,
                        urls={f: [f"{base}/gone/{f}"] for f in urls})
    (tmp_path / "trunc.gz").write_bytes(gzip.compress(idx(images)[:-10]))
    with pytest.raises(DatasetError, match="not an idx file|truncated"):
        mt.read_idx(tmp_path / "trunc.gz")
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte"):
        mt.build_mnist(tmp_path / "absent", tmp_path / "x")
    # the train split: train-*-ubyte.gz, downloaded into the same folder beside the test files
    train_images, train_labels = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), np.array([5, 0, 4], np.uint8)
    (www / "mnist" / "train-images-idx3-ubyte.gz").write_bytes(idx(train_images))
    (www / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(idx(train_labels))
    train_urls = {f: [f"{base}/mnist/{f}"] for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")}
    rec = mt.prepare_task("mnist", tmp_path / "data" / "mnist_train", split="train", downloads=tmp_path / "dl",
                          urls=train_urls, progress=False, expected_images=3, expected_classes=None)
    assert index(tmp_path / "data" / "mnist_train") == [("train/005/000000.png", 5), ("train/000/000001.png", 0),
                                                        ("train/004/000002.png", 4)]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "data" / "mnist_train" / "train/004/000002.png")),
                          train_images[2])
    assert rec["split"] == "train"
    assert rec["source_files"] == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert sorted(p.name for p in (tmp_path / "dl" / "mnist").glob("*.gz")) == sorted([*urls, *train_urls])
    with pytest.raises(DatasetError, match="expected 60000 images, found 3"):
        mt.build_mnist(tmp_path / "dl" / "mnist", tmp_path / "m4", split="train")


# --- DTD: VGG tarball, split test1 -----------------------------------------------------------------


def test_dtd_vgg_tarball_test1(tmp_path, server):
    www, base = server
    stage = tmp_path / "stage" / "dtd"
    listed = ["zigzagged/zigzagged_0001.jpg", "banded/banded_0002.jpg", "polka-dotted/polka-dotted_0003.jpg"]
    for k, rel in enumerate(listed + ["banded/banded_0009.jpg"]):  # the last one is in train1 only
        (stage / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / "images" / rel).write_bytes(jpeg(k))
    (stage / "labels").mkdir()
    (stage / "labels" / "test1.txt").write_text("\n".join(listed) + "\n")
    (stage / "labels" / "train1.txt").write_text("banded/banded_0009.jpg\n")
    with tarfile.open(www / "dtd-r1.0.1.tar.gz", "w:gz") as tf:
        tf.add(stage, arcname="dtd")
    root = tmp_path / "data" / "dtd"
    rec = mt.prepare_task("dtd", root, downloads=tmp_path / "dl", via="vgg", progress=False,
                          urls={"dtd-r1.0.1.tar.gz": [f"{base}/dtd-r1.0.1.tar.gz"]},
                          expected_images=3, expected_classes=None)
    assert index(root) == [("test/046/000000.jpg", 46), ("test/000/000001.jpg", 0), ("test/030/000002.jpg", 30)]
    assert (root / "test/030/000002.jpg").read_bytes() == jpeg(2)  # copied byte for byte
    assert rec["via"] == "vgg" and "test1.txt" in rec["layout"]
    ds = load_dataset(root)
    assert ds.classnames[46] == "zigzagged" and len(ds.templates) == 8 and ds[0][0].size == (6, 5)
    # the train split of partition 1 (labels/train1.txt) from the same, already downloaded, tarball
    rec = mt.prepare_task("dtd", tmp_path / "data" / "dtd_train", split="train", downloads=tmp_path / "dl",
                          via="vgg", progress=False, urls={"dtd-r1.0.1.tar.gz": [f"{base}/gone.tar.gz"]},
                          expected_images=1, expected_classes=None)
    assert index(tmp_path / "data" / "dtd_train") == [("train/000/000000.jpg", 0)]
    assert (tmp_path / "data" / "dtd_train" / "train/000/000000.jpg").read_bytes() == jpeg(3)
    assert rec["split"] == "train" and "train1.txt" in rec["layout"]
    extracted = tmp_path / "dl" / "dtd" / "extracted"
    with pytest.raises(DatasetError, match="expected 1880 images, found 1"):  # the size of train1.txt
        mt.build_dtd(extracted, tmp_path / "dtr", split="train")
    next(extracted.rglob("banded_0002.jpg")).unlink()
    with pytest.raises(DatasetError, match=r"partial: expected 3 images \(test1.txt\), found 2"):
        mt.build_dtd(extracted, tmp_path / "d2", expected_images=3, expected_classes=None)
    with pytest.raises(DatasetError, match="expected 1880 images, found 3"):
        mt.build_dtd(extracted, tmp_path / "d3")
    with pytest.raises(DatasetError, match="dtd-r1.0.1.tar.gz"):
        mt.build_dtd(tmp_path / "absent", tmp_path / "x")


# --- GTSRB: torchvision's zips ---------------------------------------------------------------------


def test_gtsrb_torchvision_zips(tmp_path, server):
    www, base = server
    ppm = []
    for k in range(3):
        buf = io.BytesIO()
        Image.new("RGB", (5, 7), (k * 50, 90, 10)).save(buf, "PPM")
        ppm.append(buf.getvalue())
    with zipfile.ZipFile(www / "GTSRB_Final_Test_Images.zip", "w") as z:
        for k, data in enumerate(ppm):
            z.writestr(f"GTSRB/Final_Test/Images/{k:05d}.ppm", data)
        z.writestr("GTSRB/Final_Test/Images/GT-final_test.test.csv", "Filename;Width\n")
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"] + [
        f"{k:05d}.ppm;5;7;0;0;4;6;{c}" for k, c in enumerate((14, 0, 42))]
    with zipfile.ZipFile(www / "GTSRB_Final_Test_GT.zip", "w") as z:
        z.writestr("GT-final_test.csv", "\n".join(rows) + "\n")
    root = tmp_path / "data" / "gtsrb"
    urls = {f: [f"{base}/{f}"] for f in ("GTSRB_Final_Test_Images.zip", "GTSRB_Final_Test_GT.zip")}
    rec = mt.prepare_task("gtsrb", root, downloads=tmp_path / "dl", via="torchvision", urls=urls, progress=False,
                          expected_images=3, expected_classes=None)
    assert index(root) == [("test/014/000000.ppm", 14), ("test/000/000001.ppm", 0), ("test/042/000002.ppm", 42)]
    assert (root / "test/042/000002.ppm").read_bytes() == ppm[2]
    assert load_dataset(root)[1][0].size == (5, 7) and rec["n_classes"] == 43
    with pytest.raises(DatasetError, match="expected 12630 images, found 3"):
        mt.build_gtsrb(tmp_path / "dl" / "gtsrb" / "extracted", tmp_path / "g2")
    with pytest.raises(DatasetError, match="tanganke/gtsrb"):
        mt.build_gtsrb(tmp_path / "absent", tmp_path / "x")


def test_gtsrb_torchvision_training_zip(tmp_path, server):
    www, base = server
    with zipfile.ZipFile(www / "GTSRB-Training_fixed.zip", "w") as z:
        for cls, files in (("00042", ["00000_00001.ppm"]), ("00000", ["00001_00000.ppm", "00000_00000.ppm"])):
            for k, f in enumerate(files):
                buf = io.BytesIO()
                Image.new("RGB", (4, 6), (int(cls) * 5, 30 * k, 10)).save(buf, "PPM")
                z.writestr(f"GTSRB/Training/{cls}/{f}", buf.getvalue())
            z.writestr(f"GTSRB/Training/{cls}/GT-{cls}.csv", "Filename;ClassId\n")
    root = tmp_path / "data" / "gtsrb_train"
    rec = mt.prepare_task("gtsrb", root, split="train", downloads=tmp_path / "dl", via="torchvision", progress=False,
                          urls={"GTSRB-Training_fixed.zip": [f"{base}/GTSRB-Training_fixed.zip"]},
                          expected_images=3, expected_classes=None)
    # torchvision's GTSRB(split="train"): class folders sorted, label = folder, files sorted within
    assert index(root) == [("train/000/000000.ppm", 0), ("train/000/000001.ppm", 0), ("train/042/000002.ppm", 42)]
    assert load_dataset(root)[2][0].size == (4, 6) and rec["split"] == "train"
    with pytest.raises(DatasetError, match="expected 26640 images, found 3"):
        mt.build_gtsrb(tmp_path / "dl" / "gtsrb" / "extracted", tmp_path / "g2", split="train")
    with pytest.raises(DatasetError, match="GTSRB-Training_fixed.zip"):
        mt.build_gtsrb(tmp_path / "absent", tmp_path / "x", split="train")


# --- HF parquet shards -----------------------------------------------------------------------------


def test_shard_listing_and_label_name_check(tmp_path):
    data = tmp_path / "src" / "data"
    data.mkdir(parents=True)
    for f in ("test-00001-of-00002.parquet", "test-00000-of-00002.parquet", "train-00000-of-00001.parquet"):
        (data / f).write_bytes(b"PAR1")
    assert [f.name for f in mt.parquet_shards(tmp_path / "src")] == ["test-00000-of-00002.parquet",
                                                                     "test-00001-of-00002.parquet"]
    (data / "test-00001-of-00002.parquet").unlink()
    with pytest.raises(DatasetError, match="partial.*00000..00001 of 00002, found 1"):
        mt.parquet_shards(tmp_path / "src")
    assert mt.parquet_shards(tmp_path / "absent") == []
    names = list(mt.task_info("eurosat").classnames)
    md = {b"huggingface": json.dumps({"info": {"features": {
        "image": {"_type": "Image"}, "label": {"names": names, "_type": "ClassLabel"}}}}).encode()}
    assert mt._hf_columns(mt.hf_features(md), ["image", "label"]) == ("image", "label", names)
    assert mt._hf_columns(None, ["img", "labels"]) == ("img", "labels", None)
    mt.check_label_names("eurosat", [n.upper().replace(" ", "_") for n in names], "x")  # case, "_" ignored
    with pytest.raises(DatasetError, match="label 0 is 'forest' there, 'annual crop land' here"):
        mt.check_label_names("eurosat", [names[1], names[0]] + names[2:], "x")
    with pytest.raises(DatasetError, match="has 9 label names, expected 10"):
        mt.check_label_names("eurosat", names[:9], "x")
    with pytest.raises(DatasetError, match="tanganke/sun397"):
        mt.build_sun397(tmp_path / "absent", tmp_path / "x")


def write_parquet(path: Path, images: list[bytes], labels: list[int], names: list[str] | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({"image": pa.array([{"bytes": b, "path": None} for b in images], type=struct),
                      "label": pa.array(labels, pa.int64())})
    if names is not None:
        feats = {"image": {"_type": "Image"}, "label": {"names": names, "_type": "ClassLabel"}}
        table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": feats}})})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def test_hf_prepare_downloads_shards_over_http(tmp_path, server, monkeypatch):
    www, base = server
    shard = "data/test-00000-of-00001.parquet"
    served = www / "datasets" / "tanganke" / "eurosat" / "resolve" / "main" / shard
    names = list(mt.task_info("eurosat").classnames)
    if HAS_PYARROW:
        write_parquet(served, [jpeg(0), jpeg(1), jpeg(2)], [9, 0, 4], names)
    else:
        served.parent.mkdir(parents=True)
        served.write_bytes(b"PAR1 not really parquet PAR1")
    root, dl = tmp_path / "data" / "eurosat", tmp_path / "dl"
    kwargs = dict(downloads=dl, endpoint=base, progress=False, expected_images=3, expected_classes=None)
    if HAS_PYARROW:
        rec = mt.prepare_task("eurosat", root, files=[shard], **kwargs)
        assert index(root) == [("test/009/000000.jpg", 9), ("test/000/000001.jpg", 0), ("test/004/000002.jpg", 4)]
        assert rec["label_names"] == "match" and rec["download"]["repo"] == "tanganke/eurosat"
    else:
        with pytest.raises(DatasetError, match="needs pyarrow"):
            mt.prepare_task("eurosat", root, files=[shard], **kwargs)
    assert (dl / "eurosat" / shard).read_bytes() == served.read_bytes()  # downloaded through download.fetch
    # the listing path: the hub gives the commit and each shard's LFS sha256 and size, which fetch checks
    sha = hashlib.sha256(served.read_bytes()).hexdigest()
    calls = []

    def fake_list(repo, revision, pattern, endpoint):
        calls.append((repo, revision, pattern, endpoint))
        return "main", [(shard, served.stat().st_size, "0" * 64)]

    monkeypatch.setattr(mt, "hf_list", fake_list)
    with pytest.raises(DownloadError, match=r"(?s)sha256 mismatch.*hf download tanganke/eurosat"):
        mt.prepare_task("eurosat", tmp_path / "e2", **{**kwargs, "downloads": tmp_path / "dl2"})
    assert calls == [("tanganke/eurosat", "main", "data/test-*.parquet", base)]
    with pytest.raises(DownloadError):  # the train split lists the train shards
        mt.prepare_task("eurosat", tmp_path / "e2t", split="train", **{**kwargs, "downloads": tmp_path / "dl2t"})
    assert calls[-1] == ("tanganke/eurosat", "main", "data/train-*.parquet", base)
    monkeypatch.setattr(mt, "hf_list", lambda *a: ("main", [(shard, served.stat().st_size, sha)]))
    if HAS_PYARROW:
        rec = mt.prepare_task("eurosat", tmp_path / "e3", **{**kwargs, "downloads": tmp_path / "dl3"})
        assert rec["download"]["files"] == [{"path": shard, "sha256": sha}]
    else:
        with pytest.raises(DatasetError, match="needs pyarrow"):
            mt.prepare_task("eurosat", tmp_path / "e3", **{**kwargs, "downloads": tmp_path / "dl3"})
        assert (tmp_path / "dl3" / "eurosat" / shard).is_file()


@needs_pyarrow
def test_parquet_builders_order_names_counts(tmp_path):
    src = tmp_path / "src"
    names = list(mt.task_info("dtd").classnames)
    write_parquet(src / "data" / "test-00001-of-00002.parquet", [jpeg(3)], [46], names)
    write_parquet(src / "data" / "test-00000-of-00002.parquet", [jpeg(1), jpeg(2)], [5, 0], names)
    rec = mt.build_dtd(src, tmp_path / "dtd", expected_images=3, expected_classes=None)
    assert index(tmp_path / "dtd") == [("test/005/000000.jpg", 5), ("test/000/000001.jpg", 0),
                                       ("test/046/000002.jpg", 46)]
    assert (tmp_path / "dtd" / "test/046/000002.jpg").read_bytes() == jpeg(3)
    assert rec["source_files"] == ["test-00000-of-00002.parquet", "test-00001-of-00002.parquet"]
    with pytest.raises(DatasetError, match="expected 1880 images, found 3"):
        mt.build_dtd(src, tmp_path / "d2")
    swapped = [names[1], names[0]] + names[2:]
    write_parquet(tmp_path / "s2" / "test-00000-of-00001.parquet", [jpeg(1)], [0], swapped)
    with pytest.raises(DatasetError, match="label order"):
        mt.build_dtd(tmp_path / "s2", tmp_path / "d3", expected_images=1, expected_classes=None)
    rec = mt.build_dtd(tmp_path / "s2", tmp_path / "d4", expected_images=1, expected_classes=None,
                       check_label_names=False)
    assert rec["label_names"] == "not checked"
    write_parquet(tmp_path / "s3" / "test-00000-of-00001.parquet", [jpeg(1)], [47], None)
    with pytest.raises(DatasetError, match="label 47, outside 0..46"):
        mt.build_dtd(tmp_path / "s3", tmp_path / "d5", expected_images=1, expected_classes=None)
    assert not (tmp_path / "d5" / "test").exists()
    write_parquet(tmp_path / "s4" / "test-00000-of-00001.parquet", [b"not an image"], [0], None)
    with pytest.raises(DatasetError, match="not a readable image"):
        mt.build_sun397(tmp_path / "s4", tmp_path / "d6", expected_images=1, expected_classes=None)
    # the train split: the train-*.parquet shards beside the test ones, written under train/
    write_parquet(src / "data" / "train-00000-of-00001.parquet", [jpeg(4), jpeg(5)], [46, 7], names)
    rec = mt.build_dtd(src, tmp_path / "dtd_train", split="train", expected_images=2, expected_classes=None)
    assert index(tmp_path / "dtd_train") == [("train/046/000000.jpg", 46), ("train/007/000001.jpg", 7)]
    assert rec["source_files"] == ["train-00000-of-00001.parquet"] and meta(tmp_path / "dtd_train")["split"] == "train"
    with pytest.raises(DatasetError, match="expected 3760 images, found 2"):  # tanganke/dtd's train split
        mt.build_dtd(src, tmp_path / "d7", split="train")
    with pytest.raises(DatasetError, match="no train parquet shards"):
        mt.build_resisc45(tmp_path / "s2", tmp_path / "d8", split="train")


def test_unknown_task_and_source(tmp_path):
    with pytest.raises(DatasetError, match="unknown multi-task dataset 'cifar10'"):
        mt.prepare_task("cifar10", tmp_path)
    with pytest.raises(DatasetError, match="unknown source 'vgg'; one of hf, torchvision"):
        mt.prepare_task("gtsrb", tmp_path, via="vgg")


def test_prepare_reads_the_mirror_folder_before_the_network(tmp_path):
    """paper.mirror: URL files as <mirror>/<file name of the URL>, hub shards as <mirror>/hf/datasets/<repo>/<path>;
    nothing is reachable here (URLs on a closed port, no hub), so every file must come from the mirror."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    rng = np.random.default_rng(2)
    images, labels = rng.integers(0, 256, (2, 28, 28), dtype=np.uint8), np.array([3, 8], np.uint8)
    (mirror / "t10k-images-idx3-ubyte.gz").write_bytes(idx(images))
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(idx(labels))
    closed = {f: [f"http://127.0.0.1:9/mnist/{f}"] for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
    rec = mt.prepare_task("mnist", tmp_path / "mnist", downloads=tmp_path / "dl", urls=closed, mirror=mirror,
                          progress=False, expected_images=2, expected_classes=None)
    assert [label for _, label in index(tmp_path / "mnist")] == [3, 8]
    assert rec["download"]["files"][0]["sha256"] == hashlib.sha256(idx(images)).hexdigest()
    # a staged copy passes the same checks as a download: a wrong md5 is refused (and the network is not there)
    with pytest.raises(DownloadError, match="t10k-images-idx3-ubyte"):
        mt.prepare_task("mnist", tmp_path / "m2", downloads=tmp_path / "dl2", urls=closed, mirror=mirror,
                        md5={"t10k-images-idx3-ubyte.gz": "0" * 32}, progress=False, expected_images=2,
                        expected_classes=None)
    if not HAS_PYARROW:
        return
    shard = "data/test-00000-of-00001.parquet"
    write_parquet(mirror / "hf/datasets/tanganke/eurosat" / shard, [jpeg(0), jpeg(1)], [2, 7],
                  list(mt.task_info("eurosat").classnames))
    (mirror / "hf/datasets/tanganke/eurosat/data/train-00000-of-00001.parquet").write_bytes(b"not this split")
    rec = mt.prepare_task("eurosat", tmp_path / "eurosat", downloads=tmp_path / "dl", endpoint="http://127.0.0.1:9",
                          mirror=mirror, progress=False, expected_images=2, expected_classes=None)
    assert [label for _, label in index(tmp_path / "eurosat")] == [2, 7]
    assert rec["download"]["commit"] is None and [f["path"] for f in rec["download"]["files"]] == [shard]
