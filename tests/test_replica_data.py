"""The dataset replicas of the paper suite (dawin.replicas.data) go through the project's own downloaders and
builders, served from 127.0.0.1 as their upstream would serve them, and yield every class with the expected
counts and labels."""

import csv
import hashlib
import http.server
import json
import threading
from functools import partial
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import yaml

from dawin.inputs import multitask_datasets as mt
from dawin.inputs import paper_datasets as pd
from dawin.inputs.datasets import DatasetError, load_dataset
from dawin.replicas import data as rd

CONFIG = Path(__file__).resolve().parents[1] / "config" / "paper.yaml"
PER_CLASS = 1


def index(root: Path) -> list[tuple[str, int]]:
    with open(root / "index.csv", newline="") as f:
        return [(r["path"], int(r["label"])) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


@pytest.fixture(scope="module")
def replicas(tmp_path_factory, config):
    """(folder, write_dataset_replicas' answer) for the whole paper config, written once for this module."""
    base = tmp_path_factory.mktemp("replicas")
    return base, rd.write_dataset_replicas(config, base / "site", base / "manual", per_class=PER_CLASS, seed=0)


@pytest.fixture(scope="module")
def server(replicas):
    """A local HTTP server over the replica site; yields its base URL."""
    handler = partial(type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}),
                      directory=str(replicas[0] / "site"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def local(base: str, url: str) -> str:
    """The replica server's address of an upstream URL (https://host/path -> http://127.0.0.1:PORT/host/path)."""
    return f"{base}/{quote(rd.site_path(url))}"


def assert_every_class(rec: dict, counts: dict) -> None:
    assert rec["n_images"] == counts["images"]
    assert rec["n_classes"] == rec["n_classes_present"] == counts["classes"]
    assert rec["images_per_class"] == {"min": PER_CLASS, "max": PER_CLASS}


# --- what the replicas cover and what the overlay must say ---------------------------------------------


def test_every_source_has_a_writer_and_every_dataset_a_count(replicas, config):
    _, out = replicas
    assert set(rd.ROBUST_COUNTS) == set(pd.BUILDERS) and set(rd.ARCHIVES) == set(pd.SOURCES)
    assert {(t, via) for t in mt.TASKS for via in mt.SOURCES[t]} == set(rd.SOURCE_WRITERS)
    trains = {f"{t}_train" for t, spec in config["multitask"]["tasks"].items() if "train" in spec}
    assert set(out["counts"]) == set(config["paper"]["datasets"]) | trains
    assert out["counts"]["imagenet"] == {"images": 1000, "classes": 1000}
    assert out["counts"]["objectnet"] == {"images": 113, "classes": 113}
    assert out["counts"]["sun397_train"] == {"images": 397, "classes": 397}
    assert out["heldout"] == {"expected_train_images": 2000, "expected_images": 1000, "expected_per_class": 1}
    assert set(out["manual"]) == set(config["paper"]["manual"])
    # md5 overrides: exactly the files whose source pins a published md5
    pinned = {n for n in pd.SOURCES if pd.SOURCES[n].get("md5")}
    assert {k for k, v in out["md5"].items() if isinstance(v, str)} == pinned == {"imagenet_r", "imagenet_a"}
    assert out["md5"]["svhn"].keys() == {"test_32x32.mat", "train_32x32.mat"}
    assert out["md5"]["gtsrb"].keys() == {"GTSRB_Final_Test_Images.zip", "GTSRB_Final_Test_GT.zip",
                                          "GTSRB-Training_fixed.zip"}
    assert all(out["md5"][k] != pd.SOURCES[k]["md5"] for k in pinned)  # a replica cannot match the real file
    url = "https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar"
    assert out["files"][url]["path"] == "people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar"
    shard = out["hf"]["tanganke/eurosat"][0]
    assert shard["site_path"] == "hf/datasets/tanganke/eurosat/resolve/main/data/test-00000-of-00001.parquet"
    for f in [*out["files"].values(), *(s for shards in out["hf"].values() for s in shards)]:
        data = (replicas[0] / "site" / f.get("site_path", f["path"])).read_bytes()
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["size"]


def test_bytes_are_deterministic_and_real_copies_are_never_replaced(tmp_path, config):
    small = {"paper": {**config["paper"], "datasets": {"imagenet_r": "imagenet_r", "svhn": "svhn", "dtd": "dtd",
                                                       "objectnet": "objectnet"}},
             "multitask": {"tasks": {"dtd": {"train": "x"}}}}
    a = rd.write_dataset_replicas(small, tmp_path / "a" / "site", tmp_path / "a" / "manual", seed=3)
    b = rd.write_dataset_replicas(small, tmp_path / "b" / "site", tmp_path / "b" / "manual", seed=3)
    assert a["files"] == b["files"] and a["hf"] == b["hf"] and set(a["counts"]) == {
        "imagenet_r", "svhn", "dtd", "dtd_train", "objectnet"}
    tree = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert tree == sorted(p.relative_to(tmp_path / "b").as_posix() for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert all((tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes() for p in tree)
    c = rd.write_dataset_replicas(small, tmp_path / "c" / "site", tmp_path / "c" / "manual", seed=4)
    assert c["files"] != a["files"]
    rd.write_dataset_replicas(small, tmp_path / "a" / "site", tmp_path / "a" / "manual", seed=3)  # a rerun: replaced
    real = tmp_path / "real"
    (real / "objectnet-1.0" / "images" / "banana").mkdir(parents=True)
    with pytest.raises(DatasetError, match="refusing to replace"):
        rd.write_dataset_replicas(small, tmp_path / "site", real)
    assert (real / "objectnet-1.0" / "images" / "banana").is_dir()


def test_images_are_tiny_deterministic_and_differ_by_class():
    keys = range(1313)  # ImageNet's 1000 classes and ObjectNet's 313 folders use keys below 1313
    assert len({(tuple(np.round(rd.class_colour(k)).astype(int)), k % 4, (k // 4) % 3) for k in keys}) == 1313
    a, b, c = rd.pixels(7, 0, 1, 0), rd.pixels(7, 1, 1, 0), rd.pixels(8, 0, 1, 0)
    assert all(rd.MIN_PX <= n <= rd.MAX_PX for n in (*a.shape[:2], *b.shape[:2])) and a.shape[2] == 3
    assert np.array_equal(a, rd.pixels(7, 0, 1, 0))
    mean = [x.reshape(-1, 3).mean(0) for x in (a, b, c)]
    assert np.abs(mean[0] - mean[1]).max() < np.abs(mean[0] - mean[2]).max()  # same class closer than another
    assert rd.image(7, 0, 1, 0)[:2] == b"\xff\xd8" and rd.image(7, 0, 1, 0, "PNG")[:4] == b"\x89PNG"


# --- the downloadable robust sets: served, fetched, extracted, built -----------------------------------


@pytest.mark.parametrize("name", ["imagenetv2", "imagenet_r", "imagenet_a", "imagenet_sketch"])
def test_archives_build_with_every_class(replicas, server, tmp_path, name):
    _, out = replicas
    counts = out["counts"][name]
    url = local(server, pd.SOURCES[name]["urls"][0])
    rec = pd.prepare(name, tmp_path / name, urls=[url], md5=out["md5"].get(name), progress=False,
                     expected_images=counts["images"], expected_classes=counts["classes"])
    assert_every_class(rec, counts)
    lists = pd.load_class_lists()
    folder_label = {"imagenetv2": {str(i): i for i in range(1000)},
                    "imagenet_r": {w: k for k, w in enumerate(lists.imagenet_r.wnids)},
                    "imagenet_a": {w: k for k, w in enumerate(lists.imagenet_a.wnids)},
                    "imagenet_sketch": lists.wnid_index()}[name]
    rows = index(tmp_path / name)
    assert all(label == folder_label[path.split("/")[-2]] for path, label in rows)  # V2: folder index = label
    ds = load_dataset(tmp_path / name)
    assert len(ds) == counts["images"] and max(ds[0][0].size) <= rd.MAX_PX
    if name in out["md5"]:  # the Berkeley tars' published md5 (the code's default) refuses the replica
        with pytest.raises(Exception, match="md5"):
            pd.fetch_archive(name, tmp_path / "dl2", urls=[url], md5=pd.SOURCES[name]["md5"], progress=False)


# --- the manual sets ------------------------------------------------------------------------------------


def test_imagenet_val_flat_with_devkit(replicas, tmp_path, monkeypatch):
    import shutil

    import torch
    from torchvision.datasets import imagenet as tv_imagenet

    _, out = replicas
    counts = out["counts"]["imagenet"]
    rec = pd.build_imagenet_val(out["manual"]["imagenet_val"], tmp_path / "in",
                                expected_images=counts["images"], expected_classes=counts["classes"])
    assert_every_class(rec, counts)
    assert rec["layout"] == "flat + ground truth"
    assert rec["ground_truth"].endswith("ILSVRC2012_devkit_t12.tar.gz")
    # the devkit read by torchvision's ImageNet (meta.mat: ILSVRC2012_ID -> wnid; the ground-truth lines), with
    # only its md5 check of the real archive switched off
    shutil.copy(Path(out["manual"]["imagenet_val"]).parent / "ILSVRC2012_devkit_t12.tar.gz", tmp_path)
    monkeypatch.setattr(tv_imagenet, "_verify_archive", lambda *a: None)
    tv_imagenet.parse_devkit_archive(str(tmp_path))
    wnid_to_classes, val_wnids = torch.load(tmp_path / tv_imagenet.META_FILE, weights_only=True)
    assert len(wnid_to_classes) == 1000 and wnid_to_classes["n01751748"] == ("sea snake",)
    assert len(val_wnids) == counts["images"]
    wnid_index = pd.load_class_lists().wnid_index()
    expected = {f"images/ILSVRC2012_val_{k:08d}.JPEG": wnid_index[w] for k, w in enumerate(val_wnids, 1)}
    rows = index(tmp_path / "in")
    assert dict(rows) == expected and len(rows) == counts["images"]


def test_objectnet_113_classes_of_313_folders(replicas, tmp_path):
    _, out = replicas
    counts = out["counts"]["objectnet"]
    source = Path(out["manual"]["objectnet"])
    assert len(list((source / "images").iterdir())) == 313
    f2l = json.loads((source / "mappings" / "folder_to_objectnet_label.json").read_text())
    assert len(f2l) == 313 and f2l["alarm_clock"] == "Alarm clock" and f2l["squeegee"] == "Squeegee"
    rec = pd.build_objectnet(source, tmp_path / "on", expected_images=counts["images"],
                             expected_classes=counts["classes"])
    assert_every_class(rec, counts)
    assert rec["n_folders_ignored"] == 200
    label_of = {c.folder: k for k, c in enumerate(pd.load_class_lists().objectnet)}
    assert all(label == label_of[p.split("/")[-2]] for p, label in index(tmp_path / "on"))
    img = load_dataset(tmp_path / "on")[0][0]
    assert img.getpixel((0, 0)) == (255, 0, 0) and rd.MIN_PX <= img.size[0] <= rd.MAX_PX  # the real images' red border


def test_heldout_is_the_index_files_selection(replicas, server, tmp_path, config):
    from torchvision.datasets import ImageFolder

    from dawin.inputs.download import fetch

    _, out = replicas
    npy = fetch([local(server, config["paper"]["heldout"]["indices"]["url"][0])], tmp_path / "imagenet_98_idxs.npy",
                progress=False)
    idxs = np.load(npy)
    assert idxs.dtype == np.float64 and idxs.shape == (out["heldout"]["expected_train_images"],)
    rec = pd.build_imagenet_heldout(out["manual"]["imagenet_train"], tmp_path / "heldout", indices=npy,
                                    **out["heldout"])
    assert_every_class(rec, out["counts"]["imagenet_heldout"])
    train = Path(out["manual"]["imagenet_train"])
    folder = ImageFolder(str(train), loader=lambda p: p)  # model-soups' ImageNet2p: np.where(idxs) of its samples
    expected = [(Path(folder.samples[i][0]).relative_to(train).as_posix(), folder.samples[i][1])
                for i in np.where(idxs.astype(int))[0]]
    assert sorted((p.removeprefix("images/"), label) for p, label in index(tmp_path / "heldout")) == sorted(expected)
    assert all(p.split("/")[1].startswith(p.split("/")[0] + "_") for p, _ in expected)  # <wnid>/<wnid>_<n>.JPEG


# --- the multi-task sets: default sources and alternatives, both splits ----------------------------------


def _prepare(out, server, tmp_path, monkeypatch, task, split, via):
    spec = mt.source_spec(task, via, split)
    kwargs = {}
    if spec["kind"] == "hf_parquet":  # the hub's listing: commit "main", each shard's size and LFS sha256
        shards = {s["path"]: s for s in out["hf"][spec["repo"]]}

        def hf_list(repo, revision, pattern, endpoint):
            assert repo == spec["repo"] and endpoint == f"{server}/hf"
            return "main", [(p, s["size"], s["sha256"]) for p, s in sorted(shards.items()) if
                            Path(p).match(pattern)]

        monkeypatch.setattr(mt, "hf_list", hf_list)
        kwargs["endpoint"] = f"{server}/hf"
    else:
        kwargs["urls"] = {f: [local(server, fs["urls"][0])] for f, fs in spec["files"].items()}
        kwargs["md5"] = out["md5"][task]
    counts = out["counts"][task if split == "test" else f"{task}_train"]
    if via != next(iter(mt.SOURCES[task])):
        counts = out["alternatives"][task][via][split]
    root = tmp_path / f"{task}_{via}_{split}"
    rec = mt.prepare_task(task, root, split=split, via=via, downloads=tmp_path / f"dl_{via}", progress=False,
                          expected_images=counts["images"], expected_classes=counts["classes"], **kwargs)
    assert_every_class(rec, counts)
    assert rec["split"] == split and rec["via"] == via
    if spec["kind"] == "hf_parquet":
        assert rec["label_names"] == "match"
    ds = load_dataset(root)
    assert len(ds) == counts["images"] and sorted(set(ds.labels)) == list(range(counts["classes"]))
    return rec


@pytest.mark.parametrize("task", mt.TASKS)
def test_multitask_sources_build_both_splits(replicas, server, tmp_path, monkeypatch, task):
    _, out = replicas
    for via in mt.SOURCES[task]:
        for split in ("test", "train"):
            rec = _prepare(out, server, tmp_path, monkeypatch, task, split, via)
            if via != "hf":  # the downloaded file is the served replica, checked against the overlay's md5
                assert all(f["md5"] == out["md5"][task][f["name"]] for f in rec["download"]["files"])
    if task == "svhn":  # SVHN stores the digit 0 as 10; the builder maps it back
        from scipy.io import loadmat

        mat = loadmat(replicas[0] / "site" / rd.site_path(mt.source_spec("svhn", "torchvision")["files"]
                                                          ["test_32x32.mat"]["urls"][0]))
        assert mat["X"].shape == (32, 32, 3, 10) and mat["X"].dtype == np.uint8 and 10 in mat["y"]
        assert 0 not in mat["y"]
