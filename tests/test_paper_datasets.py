"""Normalisers of the paper's test sets, on tiny fakes in the real layouts, and the shipped class lists."""

import csv
import hashlib
import http.server
import json
import tarfile
import threading
from functools import partial
from pathlib import Path

import pytest
import torch
from PIL import Image

from dawin.inputs import paper_datasets as pd
from dawin.inputs.datasets import PROJECTIONS, DatasetError, load_dataset


@pytest.fixture(scope="module")
def lists():
    return pd.load_class_lists()


def img(path: Path, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (len(path.name) * 7 % 255, 30, 60)).save(path, fmt)


def folders(base: Path, names, n=2, ext=".jpg") -> None:
    for name in names:
        for j in range(n):
            img(base / str(name) / f"img{j}{ext}")


def index(root: Path) -> list[tuple[str, int]]:
    with open(root / "index.csv", newline="") as f:
        return [(r["path"], int(r["label"])) for r in csv.DictReader(f)]


def meta(root: Path, name="dataset.json") -> dict:
    return json.loads((root / name).read_text())


# --- shipped class lists ---------------------------------------------------------------------------


def test_imagenet_lists_pinned(lists):
    import open_clip.zero_shot_metadata as z

    w = lists.imagenet_wnids
    assert len(w) == 1000 and w[0] == "n01440764" and w[-1] == "n15075141" and list(w) == sorted(w)
    assert list(lists.imagenet_classnames) == list(z.IMAGENET_CLASSNAMES)
    assert list(lists.templates) == [t("{c}") for t in z.OPENAI_IMAGENET_TEMPLATES]
    assert len(lists.templates) == 80 and lists.templates[0].format(c="dog") == "a bad photo of a dog."
    assert lists.ilsvrc2012_id_wnids[0] == "n02119789" and lists.ilsvrc2012_id_wnids[489] == "n01751748"
    assert sorted(lists.ilsvrc2012_id_wnids) == list(w)


def test_sublists_pinned(lists):
    r, a = lists.imagenet_r, lists.imagenet_a
    assert len(r.wnids) == len(r.imagenet_indices) == 200 and len(a.wnids) == len(a.imagenet_indices) == 200
    # WiSE-FT CLASS_SUBLIST starts / ends; hendrycks' imagenet_r_wnids / thousand_k_to_200 agree
    assert r.imagenet_indices[:5] == (1, 2, 4, 6, 8) and r.imagenet_indices[-1] == 988
    assert a.imagenet_indices[:5] == (6, 11, 13, 15, 17) and a.imagenet_indices[-1] == 988
    assert r.wnids[:2] == ("n01443537", "n01484850") and a.wnids[0] == "n01498041"
    assert r.wnids[-1] == a.wnids[-1] == "n12267677"
    assert list(r.wnids) == sorted(r.wnids) and list(a.wnids) == sorted(a.wnids)


def test_objectnet_mapping_pinned(lists):
    on = lists.objectnet
    assert len(on) == 113 and [c.folder for c in on] == sorted(c.folder for c in on)
    by = {c.folder: (k, c) for k, c in enumerate(on)}
    assert by["alarm_clock"][0] == 0 and by["alarm_clock"][1].imagenet_indices == (409, 530)  # analog/digital clock
    assert by["banana"][1].imagenet_indices == (954,) and by["banana"][1].name == "banana"
    assert by["bicycle"][1].imagenet_indices == (671, 444)  # mountain bike, tandem
    assert by["wok"][0] == 112 and by["wok"][1].imagenet_indices == (909,)
    flat = [i for c in on for i in c.imagenet_indices]
    assert len(flat) == len(set(flat)) == 125


def test_projections_from_specs(lists):
    logits = torch.arange(2000, dtype=torch.float32).view(2, 1000)
    cols = list(lists.imagenet_r.imagenet_indices)
    out = PROJECTIONS["subset"](columns=cols)(logits)
    assert out.shape == (2, 200) and torch.equal(out[1], logits[1, cols])
    groups = [list(c.imagenet_indices) for c in lists.objectnet]
    z = torch.randn(2, 1000, generator=torch.Generator().manual_seed(0))
    out = PROJECTIONS["group_max"](groups=groups)(z)
    assert out.shape == (2, 113)
    expect = torch.stack([z[:, g].amax(dim=1) for g in groups], dim=1)
    assert torch.equal(out, expect)


# --- downloadable sets -----------------------------------------------------------------------------


def test_imagenet_r_labels_projection_and_records(tmp_path, lists):
    raw = tmp_path / "raw"
    sub = lists.imagenet_r
    chosen = [sub.wnids[0], sub.wnids[57], sub.wnids[199]]
    folders(raw / "imagenet-r", chosen, n=2)
    (raw / "imagenet-r" / "README.txt").write_text("not an image")
    root = tmp_path / "r"
    rec = pd.build_imagenet_r(raw, root, expected_images=6, expected_classes=3)
    rows = index(root)
    assert [lab for _, lab in rows] == [0, 0, 57, 57, 199, 199]
    assert rows[2][0] == f"images/{chosen[1]}/img0.jpg" and (root / "images").is_symlink()
    m = meta(root)
    assert m["projection"] == {"kind": "subset", "columns": list(sub.imagenet_indices)}
    assert m["classnames"][57] == lists.imagenet_classnames[sub.imagenet_indices[57]]
    assert len(m["templates"]) == 80 and m["n_images"] == 6
    v = meta(root, "verify.json")
    assert v == rec and v["n_images"] == 6 and v["n_classes"] == 200 and v["n_classes_present"] == 3
    assert v["index_sha256"] == hashlib.sha256((root / "index.csv").read_bytes()).hexdigest()
    ds = load_dataset(root)
    assert len(ds) == 6 and ds[5][1] == 199 and ds.projection(torch.zeros(1, 1000)).shape == (1, 200)


def test_imagenet_a_in_place_and_checks(tmp_path, lists):
    sub = lists.imagenet_a
    base = tmp_path / "imagenet-a"
    folders(base, [sub.wnids[3], sub.wnids[100]], n=3)
    rec = pd.build_imagenet_a(tmp_path, expected_images=6, expected_classes=2)  # root = the image folder
    assert (base / "index.csv").exists() and rec["n_images"] == 6
    assert index(base)[3] == (f"{sub.wnids[100]}/img0.jpg", 100)
    assert load_dataset(base).labels == [3, 3, 3, 100, 100, 100]
    with pytest.raises(DatasetError, match="expected 7 images, found 6"):
        pd.build_imagenet_a(tmp_path, tmp_path / "a2", expected_images=7, expected_classes=2)
    with pytest.raises(DatasetError, match="expected 200 class folders, found 2"):
        pd.build_imagenet_a(tmp_path, tmp_path / "a3", expected_images=6, expected_classes=200)
    folders(base, [lists.imagenet_wnids[0]], n=1)  # tench is not one of ImageNet-A's classes
    with pytest.raises(DatasetError, match="not classes of this set.*n01440764"):
        pd.build_imagenet_a(tmp_path, tmp_path / "a4", expected_images=None, expected_classes=None)
    with pytest.raises(DatasetError, match="hendrycks/imagenet-a.tar"):
        pd.build_imagenet_a(tmp_path / "nothing", tmp_path / "a5", expected_images=7500, expected_classes=200)


def test_imagenetv2_folders_are_indices(tmp_path, lists):
    base = tmp_path / "imagenetv2-matched-frequency-format-val"
    folders(base, [0, 500, 999], n=2, ext=".jpeg")
    rec = pd.build_imagenetv2(tmp_path, tmp_path / "v2", expected_images=6, expected_classes=3)
    assert [lab for _, lab in index(tmp_path / "v2")] == [0, 0, 500, 500, 999, 999]
    m = meta(tmp_path / "v2")
    assert m["projection"] == {"kind": "identity"} and m["classnames"] == list(lists.imagenet_classnames)
    assert rec["n_classes"] == 1000 and rec["n_classes_present"] == 3


def test_imagenet_sketch(tmp_path, lists):
    w = lists.imagenet_wnids
    folders(tmp_path / "sketch", [w[0], w[999]], n=2, ext=".JPEG")
    pd.build_imagenet_sketch(tmp_path, tmp_path / "sk", expected_images=4, expected_classes=2)
    assert [lab for _, lab in index(tmp_path / "sk")] == [0, 0, 999, 999]
    assert meta(tmp_path / "sk", "verify.json")["expected_images"] == 4
    with pytest.raises(DatasetError, match="expected 50889 images, found 4"):
        pd.build_imagenet_sketch(tmp_path, tmp_path / "sk2", expected_images=50889, expected_classes=2)


def test_prepare_downloads_extracts_and_builds(tmp_path, lists):
    www = tmp_path / "www"
    stage = tmp_path / "stage"
    folders(stage / "imagenet-r", lists.imagenet_r.wnids[:2], n=1)
    www.mkdir()
    with tarfile.open(www / "imagenet-r.tar", "w") as tf:
        tf.add(stage / "imagenet-r", arcname="imagenet-r")
    handler = partial(type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}),
                      directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        rec = pd.prepare("imagenet_r", tmp_path / "data" / "r", downloads=tmp_path / "dl",
                         urls=[f"{base}/gone.tar", f"{base}/imagenet-r.tar"], progress=False,
                         expected_images=2, expected_classes=2)
    finally:
        httpd.shutdown()
        httpd.server_close()
    root = tmp_path / "data" / "r"
    assert rec["n_images"] == 2 and index(root)[1] == (f"raw/imagenet-r/{lists.imagenet_r.wnids[1]}/img0.jpg", 1)
    assert len(load_dataset(root)) == 2
    with pytest.raises(DatasetError, match="image-net.org"):
        pd.prepare("imagenet_val", tmp_path / "iv", expected_images=50000, expected_classes=1000)


# --- manual sets -----------------------------------------------------------------------------------


def test_imagenet_val_wnid_folders(tmp_path, lists):
    w = lists.imagenet_wnids
    folders(tmp_path / "imagenet" / "val", [w[1], w[65]], n=2, ext=".JPEG")
    rec = pd.build_imagenet_val(tmp_path / "imagenet", tmp_path / "in", expected_images=4, expected_classes=2)
    assert [lab for _, lab in index(tmp_path / "in")] == [1, 1, 65, 65] and rec["layout"] == "class folders"
    with pytest.raises(DatasetError, match="partial: expected 5 images, found 4"):
        pd.build_imagenet_val(tmp_path / "imagenet", tmp_path / "in2", expected_images=5, expected_classes=2)


def test_imagenet_val_absent_gives_instructions(tmp_path):
    with pytest.raises(DatasetError, match=r"image-net\.org.*<wnid>"):
        pd.build_imagenet_val(tmp_path / "missing", expected_images=50000, expected_classes=1000)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="ILSVRC2012_val_XXXXXXXX.JPEG"):
        pd.build_imagenet_val(tmp_path / "empty", expected_images=50000, expected_classes=1000)


def _flat_val(folder: Path, n: int) -> None:
    for k in range(1, n + 1):
        img(folder / f"ILSVRC2012_val_{k:08d}.JPEG", "JPEG")


def test_imagenet_val_flat_with_devkit_ground_truth(tmp_path, lists):
    flat = tmp_path / "val"
    _flat_val(flat, 3)
    with pytest.raises(DatasetError, match="no ground truth"):
        pd.build_imagenet_val(flat, tmp_path / "in", expected_images=3, expected_classes=None)
    # devkit lines are ILSVRC2012_IDs: 490 = n01751748 (sea snake, index 65), 1 = n02119789 (kit fox, 278)
    (tmp_path / "ILSVRC2012_validation_ground_truth.txt").write_text("490\n1\n490\n")
    rec = pd.build_imagenet_val(flat, tmp_path / "in", expected_images=3, expected_classes=2)
    assert index(tmp_path / "in") == [("images/ILSVRC2012_val_00000001.JPEG", 65),
                                      ("images/ILSVRC2012_val_00000003.JPEG", 65),
                                      ("images/ILSVRC2012_val_00000002.JPEG", 278)]
    assert lists.imagenet_classnames[65] == "sea snake" and lists.imagenet_classnames[278] == "kit fox"
    assert rec["layout"] == "flat + ground truth"
    with pytest.raises(DatasetError, match="expected 50000 images, found 3"):
        pd.build_imagenet_val(flat, tmp_path / "in2", expected_images=50000, expected_classes=1000)
    # the devkit tarball itself works as well
    gt_dir = tmp_path / "devkit" / "ILSVRC2012_devkit_t12" / "data"
    gt_dir.mkdir(parents=True)
    (gt_dir / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n1\n1\n")
    with tarfile.open(tmp_path / "ILSVRC2012_devkit_t12.tar.gz", "w:gz") as tf:
        tf.add(tmp_path / "devkit" / "ILSVRC2012_devkit_t12", arcname="ILSVRC2012_devkit_t12")
    pd.build_imagenet_val(flat, tmp_path / "in3", expected_images=3, expected_classes=1,
                          ground_truth=tmp_path / "ILSVRC2012_devkit_t12.tar.gz")
    assert {lab for _, lab in index(tmp_path / "in3")} == {278}


def test_imagenet_val_flat_with_kaggle_solution(tmp_path):
    flat = tmp_path / "ILSVRC2012_img_val"
    _flat_val(flat, 2)
    (flat / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00000002,n01440764 1 2 3 4 n01440764 5 6 7 8\n"
        "ILSVRC2012_val_00000001,n15075141 1 2 3 4\n")
    pd.build_imagenet_val(tmp_path, expected_images=2, expected_classes=2)  # found below the parent, in place
    assert index(flat) == [("ILSVRC2012_val_00000002.JPEG", 0), ("ILSVRC2012_val_00000001.JPEG", 999)]


def test_objectnet_mapped_folders_only(tmp_path, lists):
    images = tmp_path / "objectnet-1.0" / "images"
    folders(images, ["alarm_clock", "banana", "wok"], n=2, ext=".png")
    folders(images, ["squeegee"], n=3, ext=".png")  # one of the 200 unmapped folders: ignored
    rec = pd.build_objectnet(tmp_path, tmp_path / "on", expected_images=6, expected_classes=3)
    assert [lab for _, lab in index(tmp_path / "on")] == [0, 0, 2, 2, 112, 112]
    m = meta(tmp_path / "on")
    assert len(m["classnames"]) == 113 and m["classnames"][0] == "alarm clock"
    assert m["projection"]["kind"] == "group_max"
    assert m["projection"]["groups"] == [list(c.imagenet_indices) for c in lists.objectnet]
    assert "preprocess" not in m and rec["border_crop"] == 0 and rec["n_folders_ignored"] == 1
    ds = load_dataset(tmp_path / "on")
    z = torch.zeros(1, 1000)
    z[0, 530] = 5.0  # digital clock -> alarm clock
    assert ds.projection(z).argmax(dim=1).item() == 0
    with pytest.raises(DatasetError, match="expected 113 class folders, found 3.*backpack"):
        pd.build_objectnet(tmp_path, tmp_path / "on2", expected_images=6, expected_classes=113)
    with pytest.raises(DatasetError, match="partial: expected 18574 images, found 6"):
        pd.build_objectnet(tmp_path, tmp_path / "on3", expected_images=18574, expected_classes=3)
    pd.build_objectnet(tmp_path, tmp_path / "on4", expected_images=6, expected_classes=3, border_crop=2)
    assert meta(tmp_path / "on4")["preprocess"] == {"border_crop": 2}
    with Image.open(images / "banana" / "img0.png") as im:
        assert pd.border_crop(1)(im).size == (2, 2)


def test_objectnet_absent_gives_instructions(tmp_path):
    with pytest.raises(DatasetError, match=r"objectnet\.dev"):
        pd.build_objectnet(tmp_path / "nowhere", expected_images=18574, expected_classes=113)
    (tmp_path / "objectnet-1.0" / "images" / "squeegee").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"objectnet\.dev"):
        pd.build_objectnet(tmp_path, expected_images=18574, expected_classes=113)


def test_registry():
    assert set(pd.BUILDERS) == {"imagenet_heldout", "imagenet_val", "imagenetv2", "imagenet_r", "imagenet_a", "imagenet_sketch",
                                "objectnet"}
    assert set(pd.SOURCES) | set(pd.MANUAL) == set(pd.BUILDERS)


def _train_copy(base: Path, wnids, per_class: int) -> None:
    """A stand-in ImageNet train folder: ``per_class`` files per wnid, named so that creation order, numeric
    order and sorted order differ (ImageFolder sorts names as strings), plus a non-image file."""
    for w in wnids:
        (base / w).mkdir(parents=True)
        for i in reversed(range(per_class)):
            (base / w / f"{w}_{i * 7 % per_class + 1}.JPEG").write_bytes(b"")
        (base / w / "notes.txt").write_bytes(b"")


def test_heldout_split_is_model_soups_imagenet2p(tmp_path, lists):
    import numpy as np
    from torchvision.datasets import ImageFolder

    train = tmp_path / "ILSVRC" / "train"
    _train_copy(train, lists.imagenet_wnids, per_class=3)
    n = 3 * 1000
    idxs = np.zeros(n, dtype=np.float64)  # model-soups stores floats (np.zeros, then arr[:26] = 1)
    rng = np.random.default_rng(0)
    for c in range(1000):
        idxs[3 * c + rng.integers(3)] = 1.0
    np.save(tmp_path / "imagenet_98_idxs.npy", idxs)
    rec = pd.build_imagenet_heldout(tmp_path / "ILSVRC", tmp_path / "heldout", indices=tmp_path / "imagenet_98_idxs.npy",
                                    expected_train_images=n, expected_images=1000, expected_per_class=1)
    assert rec["n_images"] == 1000 and rec["n_train_images"] == n
    # model-soups' ImageNet2p: SubsetSampler(np.where(idxs)[0]) over ImageFolder(train).samples
    folder = ImageFolder(str(train), loader=lambda p: p)
    expected = [(Path(folder.samples[i][0]).relative_to(train).as_posix(), folder.samples[i][1])
                for i in np.where(idxs.astype("int"))[0]]
    got = [(p.removeprefix("images/"), label) for p, label in index(tmp_path / "heldout")]
    assert sorted(got) == sorted(expected)
    assert all(label == lists.wnid_index()[p.split("/")[0]] for p, label in got)
    ds = load_dataset(tmp_path / "heldout")
    assert len(ds) == 1000


def test_heldout_split_refuses_a_copy_that_shifts_the_index(tmp_path, lists):
    import numpy as np

    train = tmp_path / "train"
    _train_copy(train, lists.imagenet_wnids, per_class=2)
    idxs = np.tile([1, 0], 1000)
    np.save(tmp_path / "idx.npy", idxs)
    kw = dict(indices=tmp_path / "idx.npy", expected_train_images=2000, expected_images=1000, expected_per_class=1)
    (train / lists.imagenet_wnids[5] / "zzz_extra.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match="larger than the authors' copy: 2001 images"):
        pd.build_imagenet_heldout(tmp_path, tmp_path / "h1", **kw)
    (train / lists.imagenet_wnids[5] / "zzz_extra.jpg").unlink()
    (train / lists.imagenet_wnids[7] / f"{lists.imagenet_wnids[7]}_1.JPEG").unlink()
    with pytest.raises(DatasetError, match="partial: 1999 images"):
        pd.build_imagenet_heldout(tmp_path, tmp_path / "h2", **kw)
    (train / lists.imagenet_wnids[7] / f"{lists.imagenet_wnids[7]}_1.JPEG").write_bytes(b"")
    (train / "n99999999").mkdir()  # an extra folder renumbers every later class in ImageFolder
    with pytest.raises(DatasetError, match="unexpected 1 .*n99999999"):
        pd.build_imagenet_heldout(tmp_path, tmp_path / "h3", **kw)
    (train / "n99999999").rmdir()
    np.save(tmp_path / "idx.npy", np.tile([1, 1], 1000))
    with pytest.raises(DatasetError, match="selects 2000 images, ImageNet2p has 1000"):
        pd.build_imagenet_heldout(tmp_path, tmp_path / "h4", **kw)
    np.save(tmp_path / "idx.npy", np.r_[np.ones(1000), np.zeros(1000)])
    with pytest.raises(DatasetError, match="selects 2 images of class"):
        pd.build_imagenet_heldout(tmp_path, tmp_path / "h5", **kw)
    with pytest.raises(DatasetError, match="no ImageNet train class folders"):
        pd.build_imagenet_heldout(tmp_path / "nothing", tmp_path / "h6", **kw)
    assert not any((tmp_path / f"h{i}" / "verify.json").exists() for i in range(1, 7))


def _v2_archive(path: Path, stage: Path, classes) -> None:
    folders(stage / "imagenetv2-matched-frequency-format-val", classes, n=1, ext=".jpeg")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        tf.add(stage / "imagenetv2-matched-frequency-format-val", arcname="imagenetv2-matched-frequency-format-val")


def test_unchecksummed_archives_are_locked_on_first_fetch_and_mirrors_come_first(tmp_path):
    from dawin.inputs.checkpoints import LockMismatch, read_lock

    mirror, lock = tmp_path / "mirror", tmp_path / "lock.json"
    _v2_archive(mirror / "imagenetv2-matched-frequency.tar.gz", tmp_path / "s1", [0, 1])
    # the configured URLs are unreachable (nothing listens there): the pre-staged copy is used
    dead = ["http://127.0.0.1:9/imagenetv2-matched-frequency.tar.gz"]
    rec = pd.prepare("imagenetv2", tmp_path / "a" / "v2", downloads=tmp_path / "a" / "dl", urls=dead, mirror=mirror,
                     lock=lock, progress=False, expected_images=2, expected_classes=2)
    assert rec["n_images"] == 2
    key = "dataset:imagenetv2/imagenetv2-matched-frequency.tar.gz"
    assert read_lock(lock)[key] == hashlib.sha256((mirror / "imagenetv2-matched-frequency.tar.gz").read_bytes()).hexdigest()
    # the mirror's copy silently replaced with other content: refused, naming the mirror file, nothing built
    _v2_archive(mirror / "imagenetv2-matched-frequency.tar.gz", tmp_path / "s2", [0, 1, 2])
    staged = mirror / "imagenetv2-matched-frequency.tar.gz"
    with pytest.raises(DatasetError, match=rf"the mirror file {staged} fails its check \(sha256 .*, the lock file "
                                           rf"{lock} expects .*\): the mirror holds a wrong or corrupt copy"):
        pd.prepare("imagenetv2", tmp_path / "b" / "v2", downloads=tmp_path / "b" / "dl", urls=dead, mirror=mirror,
                   lock=lock, progress=False, expected_images=3, expected_classes=3)
    assert not (tmp_path / "b" / "v2").exists() and staged.exists()
    # a download that differs from the lock (the upstream file changed) is refused with the command that clears it
    (tmp_path / "c" / "dl").mkdir(parents=True)
    (tmp_path / "c" / "dl" / staged.name).write_bytes(staged.read_bytes())
    with pytest.raises(LockMismatch, match=f"forget '{key}' --lock {lock}"):
        pd.fetch_archive("imagenetv2", tmp_path / "c" / "dl", urls=dead, lock=lock, progress=False)


def _paper_dataset_job(dataset, downloads, out, lock):
    """Run workflow/scripts/paper_dataset.py as rule paper_dataset would, with a stand-in `snakemake` object."""
    import runpy
    from types import SimpleNamespace

    params = SimpleNamespace(builder=dataset, manual={}, heldout={}, indices={}, md5={}, lock=str(lock), mirror=None,
                             rewrites={}, expected={"images": 2, "classes": 2})
    job = SimpleNamespace(params=params, input=SimpleNamespace(downloads=str(downloads)), output=[str(out)],
                          wildcards=SimpleNamespace(dataset=dataset), threads=1, log=[])
    runpy.run_path(str(Path(__file__).parents[1] / "workflow/scripts/paper_dataset.py"), init_globals={"snakemake": job})


@pytest.mark.parametrize("dataset, archive, content, problem", [
    ("imagenet_r", None, None, "is missing"),
    ("imagenet_r", "imagenet-r.tar", b"truncated", r"fails its check \(md5 mismatch"),
    ("imagenet_sketch", "ImageNet-Sketch.zip", b"PK\x03\x04truncated", r"is truncated or corrupt \(BadZipFile"),
    ("imagenet_sketch", "ImageNet-Sketch.zip", b"<!DOCTYPE html><title>Quota</title>", "is an HTML page"),
])
def test_the_compute_job_never_downloads_and_names_paper_inputs(tmp_path, monkeypatch, dataset, archive, content,
                                                                problem):
    # issue 24, items 4-5: paper_dataset is a cluster job; an archive that is absent or bad must not be fetched again
    # from the original hosts (nor through the mirror), it must say what to run where there is network
    def no_network(*args, **kwargs):
        raise AssertionError("paper_dataset reached for the network")

    monkeypatch.setattr(pd, "fetch", no_network)
    downloads = tmp_path / "downloads" / dataset
    downloads.mkdir(parents=True)
    if archive:
        (downloads / archive).write_bytes(content)
    message = (rf"{dataset}: the staged archive {downloads}/.* {problem}.*Compute jobs never download: delete "
               rf"{downloads} and run `snakemake paper_inputs --configfile config/paper.yaml` where there is network")
    with pytest.raises(DatasetError, match=message):
        _paper_dataset_job(dataset, downloads, tmp_path / "data" / dataset, tmp_path / "lock.json")
    assert not (tmp_path / "data" / dataset / "verify.json").exists() and not (tmp_path / "lock.json").exists()
