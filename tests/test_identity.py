"""Every artefact knows what it is: a reader refuses a file that is not the one it expects (dawin.identity)."""

import copy
import json
import multiprocessing
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dawin import identity, provenance
from dawin.identity import IdentityError
from dawin.inference.logits import load_logits, save_logits
from dawin.inputs import architectures, decode, models, pixels
from dawin.inputs.datasets import DatasetError, load_dataset

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from logit_caching import make_dataset  # noqa: E402 - random JPEGs at a size the transform resizes


def _cache(path: Path, dataset: str, classnames=("a", "b"), model="finetuned", checkpoint="ckpt/ft.safetensors"):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = type("D", (), {"name": dataset, "classnames": list(classnames), "__len__": lambda self: 3})()
    save_logits(path, torch.randn(3, len(classnames)), torch.tensor([0, 1, 0]), dataset=dataset,
                **identity.stamp(backbone="tiny", model=model, checkpoint=checkpoint, **identity.of_dataset(data)))


def test_a_cache_of_another_dataset_under_this_datasets_name_is_refused(tmp_path):
    """Issue 25, 1: `cp -p logits/tiny/finetuned/v2.safetensors logits/tiny/finetuned/r.safetensors` read as r's."""
    logits = tmp_path / "results/demo/logits/tiny/finetuned"
    _cache(logits / "v2.safetensors", "v2")
    shutil.copy2(logits / "v2.safetensors", logits / "r.safetensors")
    assert load_logits(logits / "v2.safetensors")[0].shape == (3, 2)  # the original reads as before
    with pytest.raises(IdentityError, match=r"r\.safetensors is not what its reader expects: dataset is 'v2', "
                                            r"expected 'r' .*delete .*r\.safetensors and rerun snakemake"):
        load_logits(logits / "r.safetensors")
    # the zero-shot model's cache under the fine-tuned model's name, and a reader's own expectation (the checkpoint)
    _cache(tmp_path / "results/demo/logits/tiny/zeroshot/in.safetensors", "in", model="zeroshot")
    shutil.copy2(tmp_path / "results/demo/logits/tiny/zeroshot/in.safetensors", logits / "in.safetensors")
    with pytest.raises(IdentityError, match="model is 'zeroshot', expected 'finetuned'"):
        load_logits(logits / "in.safetensors")
    with pytest.raises(IdentityError, match="checkpoint is 'ckpt/ft.safetensors', expected 'ckpt/other.safetensors'"):
        load_logits(logits / "v2.safetensors", expect={"checkpoint": "ckpt/other.safetensors"})
    assert load_logits(logits / "v2.safetensors", expect={"checkpoint": "./ckpt//ft.safetensors"})[0].shape == (3, 2)


def test_a_results_file_without_an_identity_is_refused_and_files_outside_the_layout_pass(tmp_path):
    path = tmp_path / "results/demo/merged/tiny/entropy/mixture/r.safetensors"
    path.parent.mkdir(parents=True)
    save_logits(path, torch.randn(2, 2), torch.tensor([0, 1]))
    with pytest.raises(IdentityError, match="records no identity, so nothing says it holds backbone tiny, kind "
                                            "entropy, assignment mixture, dataset r"):
        load_logits(path)
    save_logits(tmp_path / "anything.safetensors", torch.randn(2, 2), torch.tensor([0, 1]))
    assert load_logits(tmp_path / "anything.safetensors")[0].shape == (2, 2)


@pytest.mark.parametrize("path, expected", [
    ("results/demo/logits/tiny/average/in_val.safetensors", {"backbone": "tiny", "model": "average", "dataset": "in_val"}),
    ("/abs/merged/ViT-B-32/entropy/per_sample/r.safetensors",
     {"backbone": "ViT-B-32", "kind": "entropy", "assignment": "per_sample", "dataset": "r"}),
    ("results/demo/wise_ft/tiny/a.safetensors", {"backbone": "tiny", "dataset": "a"}),
    ("results/demo/heads/tiny/in.safetensors", {"backbone": "tiny", "dataset": "in"}),
    ("results/demo/coefficients/tiny/entropy.safetensors", {"backbone": "tiny", "kind": "entropy"}),
    ("results/demo/models/tiny/greedy_soup.safetensors", {"backbone": "tiny", "model": "greedy_soup"}),
    ("results/demo/multitask/logits/count.safetensors", {"dataset": "count"}),
    ("resources/demo/checkpoints/tiny/finetuned.safetensors", {}),
    ("results/demo/metrics/tiny.correct.safetensors", {}),
])
def test_the_results_layout_says_what_each_file_holds(path, expected):
    assert identity.expected_from_path(path) == expected


def _classifier(tiny_clip, classnames):
    torch.manual_seed(0)
    return models.ImageClassifier.from_clip(tiny_clip, "dawin-tiny-rn", torch.randn(len(classnames), 64), classnames)


def test_a_test_set_whose_classes_are_in_another_order_than_the_head_is_refused(tmp_path, tiny_clip):
    """Issue 25, 2: two class names swapped in a test set's dataset.json gave a byte-identical table."""
    root = tmp_path / "r"
    make_dataset(root, 6, 40, n_classes=3)  # classes 'class 0', 'class 1', 'class 2'
    clf = _classifier(tiny_clip, ["class 0", "class 1", "class 2"])
    assert len(pixels.open_dataset(root, clf)) == 6
    meta = json.loads((root / "dataset.json").read_text())
    meta["classnames"][1], meta["classnames"][2] = meta["classnames"][2], meta["classnames"][1]
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(IdentityError, match=r"head does not have the classes of dataset random-jpegs .*dataset\.json.* "
                                            r"first difference at class 1: head 'class 1', dataset 'class 2'"):
        pixels.open_dataset(root, clf)
    assert len(pixels.open_dataset(root, clf.visual)) == 6  # a tower alone has no classes to compare


def test_a_projected_test_set_is_compared_after_its_projection(tmp_path, tiny_clip):
    """ImageNet-R / -A: the 200-class sublist of the head's columns (subset projection) must be the set's names."""
    root = tmp_path / "sub"
    make_dataset(root, 4, 40, n_classes=2)
    meta = json.loads((root / "dataset.json").read_text())
    meta.update(classnames=["cat", "fox"], projection={"kind": "subset", "columns": [1, 3]})
    (root / "dataset.json").write_text(json.dumps(meta))
    assert len(pixels.open_dataset(root, _classifier(tiny_clip, ["ant", "cat", "dog", "fox"]))) == 4
    with pytest.raises(IdentityError, match="first difference at class 1: head 'dog', dataset 'fox'"):
        pixels.open_dataset(root, _classifier(tiny_clip, ["ant", "cat", "fox", "dog"]))


def test_a_classifier_combined_with_one_of_other_classes_is_refused(tmp_path, tiny_clip):
    _classifier(tiny_clip, ["a", "b", "c"]).save(tmp_path / "zs.safetensors")
    _classifier(tiny_clip, ["a", "c", "b"]).save(tmp_path / "ft.safetensors")
    zs = models.ImageClassifier.load(tmp_path / "zs.safetensors")
    assert zs.classnames == ["a", "b", "c"]
    with pytest.raises(models.CheckpointError, match=r"ft\.safetensors's head has other classes.*class 1 is 'c' "
                                                     r"against 'b'"):
        models.ImageClassifier.load(tmp_path / "ft.safetensors", like=zs)


def _staged(root: Path) -> None:
    make_dataset(root, 6, 40, n_classes=3)
    (root / "verify.json").write_text(json.dumps({"n_images": 6, "index_sha256": provenance.file_sha256(root / "index.csv")}))


def test_a_staged_index_edited_after_its_check_is_refused(tmp_path):
    """Issue 24, 2: five labels edited in a staged index.csv moved zero-shot ImageNet-R with exit 0."""
    root = tmp_path / "imagenet_r"
    _staged(root)
    assert load_dataset(root).labels == [0, 1, 2, 0, 1, 2]
    recorded = json.loads((root / "verify.json").read_text())["index_sha256"]
    (root / "index.csv").write_text((root / "index.csv").read_text().replace(",1\n", ",2\n"))
    with pytest.raises(DatasetError, match=rf"index\.csv has sha256 [0-9a-f]{{64}}, the staging step recorded "
                                           rf"{recorded} in .*verify\.json.*run the staging step again"):
        load_dataset(root)


def test_a_converted_checkpoint_replaced_after_its_conversion_is_refused(tmp_path):
    """Issue 24, 1: another checkpoint `cp -p`'d over a converted one changed FT ID with exit 0."""
    ckpt, other = tmp_path / "ViT-B-32.safetensors", tmp_path / "soup-1.safetensors"
    ckpt.write_bytes(b"converted")
    other.write_bytes(b"another run")
    sidecar = {"converter": "dawin.inputs.convert", "sha256": provenance.file_sha256(ckpt)}
    (tmp_path / "ViT-B-32.json").write_text(json.dumps(sidecar))
    keys = provenance.Keys(tmp_path / "cache.json")
    identity.check_converted([ckpt, other], keys.file)  # the one with a sidecar matches; the other has none
    shutil.copy2(other, ckpt)
    with pytest.raises(IdentityError, match=rf"ViT-B-32\.safetensors has sha256 {provenance.file_sha256(other)}, its "
                                            rf"conversion recorded {sidecar['sha256']} in .*ViT-B-32\.json"):
        identity.check_converted([ckpt], provenance.Keys(tmp_path / "cache.json").file)


def test_a_truncated_decoded_image_file_is_named_with_its_fix(tmp_path, tiny_pair):
    """Issue 25, 6: an .npy truncated in place gave numpy's "mmap length is greater than file size"."""
    root = tmp_path / "data"
    make_dataset(root, 6, 40, n_classes=3)
    path = tmp_path / "pixels" / "p.npy"
    decode.write_pixels(root, architectures.preprocess_cfg_of("dawin-tiny-rn"), path)
    assert json.loads(path.with_suffix(".json").read_text())["bytes"] == path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 100)
    with pytest.raises(DatasetError, match=r"p\.npy has \d+ bytes, its sidecar .*p\.json records \d+: the file is "
                                           r"truncated .*delete .*p\.npy and rerun snakemake"):
        pixels.open_dataset(root, tiny_pair[0].visual, {str(root): str(path)})
    meta = json.loads(path.with_suffix(".json").read_text())  # a sidecar written before the size was recorded
    del meta["bytes"]
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"p\.npy cannot be read \(mmap length is greater than file size\): it is "
                                           "truncated"):
        pixels.open_dataset(root, tiny_pair[0].visual, {str(root): str(path)})


def test_nan_in_a_checkpoint_names_the_file(tmp_path, tiny_pair):
    """Issue 25, weak messages: "logits contain 2560 non-finite values" did not say which checkpoint."""
    bad = copy.deepcopy(tiny_pair[1])  # the session's fixture stays finite
    with torch.no_grad():
        bad.head.weight[0, :5] = float("nan")
    bad.save(tmp_path / "ft.safetensors")
    with pytest.raises(models.CheckpointError, match=r"ft\.safetensors holds 5 NaN or infinite values \(in 1 tensors, "
                                                     r"e\.g\. head\.weight\): the checkpoint is broken"):
        models.ImageClassifier.load(tmp_path / "ft.safetensors")


@pytest.mark.parametrize("content", ["42", "[1, 2]", '{"files": [], "datasets": {}}', '{"files": {"a": 1}, "datasets": {}}'])
def test_a_provenance_cache_of_the_wrong_shape_is_a_damaged_cache(tmp_path, content):
    """Issue 25, 7: valid JSON of the wrong shape stopped every command with a TypeError or AttributeError."""
    cache, ckpt = tmp_path / ".provenance-cache.json", tmp_path / "c.safetensors"
    cache.write_text(content)
    ckpt.write_bytes(b"weights")
    keys = provenance.Keys(cache)
    assert keys.file(ckpt) == provenance.file_sha256(ckpt)
    keys.save()
    assert json.loads(cache.read_text())["files"][str(ckpt)]["sha256"] == provenance.file_sha256(ckpt)


def _hash_and_save(cache: str, ckpt: str, rounds: int) -> None:
    for i in range(rounds):
        keys = provenance.Keys(cache)
        keys._dirty = True
        keys.file(ckpt)
        keys.save()


def test_two_runs_saving_the_provenance_cache_at_once_never_crash(tmp_path):
    """Issue 25, 9: both processes wrote and moved `.provenance-cache.json.tmp`; the loser died with
    FileNotFoundError. Each now writes a temporary name of its own, under a file lock."""
    cache, ckpt = tmp_path / ".provenance-cache.json", tmp_path / "c.safetensors"
    ckpt.write_bytes(b"weights")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_hash_and_save, args=(str(cache), str(ckpt), 60)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert json.loads(cache.read_text())["files"][str(ckpt)]["sha256"] == provenance.file_sha256(ckpt)
    assert sorted(f.name for f in tmp_path.iterdir()) == [".provenance-cache.json", ".provenance-cache.json.lock",
                                                          "c.safetensors"]


def test_a_template_without_the_class_placeholder_names_the_file_and_the_template(tmp_path, tiny_clip):
    """Issue 25, 3: "a photo of a shape." was accepted (ZS ID 54.20 -> 57.00); "a photo of a {}." gave an IndexError
    in zeroshot_head naming neither. The positional form is accepted (OpenAI's CLIP notebook formats
    `template.format(classname)`), with the same head as {c}."""
    root = tmp_path / "in"
    make_dataset(root, 4, 40, n_classes=2)
    meta = json.loads((root / "dataset.json").read_text())
    for template, found in [("a photo of a shape.", "no placeholder"), ("a {style} of a {c}.", "'{style}', '{c}'"),
                            ("a photo of a {c", "unbalanced braces")]:
        (root / "dataset.json").write_text(json.dumps({**meta, "templates": ["a {c}.", template]}))
        with pytest.raises(DatasetError, match=rf"in/dataset\.json: the prompt template '{template}' has .*"
                                               rf"{found}.*fix the template"):
            load_dataset(root)
    (root / "dataset.json").write_text(json.dumps({**meta, "templates": ["a photo of a {}."]}))
    data = load_dataset(root)
    positional = models.zeroshot_head(tiny_clip, "dawin-tiny-rn", data.classnames, data.templates)
    named = models.zeroshot_head(tiny_clip, "dawin-tiny-rn", data.classnames, ["a photo of a {c}."])
    assert torch.equal(positional, named)
    with pytest.raises(DatasetError, match="zero-shot head: the prompt template 'a shape.' has no placeholder"):
        models.zeroshot_head(tiny_clip, "dawin-tiny-rn", data.classnames, ["a shape."])


def test_theta1_equal_to_theta0_is_said(tmp_path, tiny_pair):
    """Issue 25, weak messages: `finetuned:` pointing at the zero-shot weights ran, and every interpolated row read ZS."""
    tiny_pair[0].save(tmp_path / "zs.safetensors")
    tiny_pair[1].save(tmp_path / "ft.safetensors")
    m0, m1 = models.ImageClassifier.load_pair(tmp_path / "zs.safetensors", tmp_path / "ft.safetensors")
    assert m1.source == str(tmp_path / "ft.safetensors")
    shutil.copy(tmp_path / "zs.safetensors", tmp_path / "ft.safetensors")
    with pytest.raises(models.CheckpointError, match=r"ft\.safetensors holds the same weights as .*zs\.safetensors "
                                                     r"\(theta1 equals theta0\): every interpolation"):
        models.ImageClassifier.load_pair(tmp_path / "zs.safetensors", tmp_path / "ft.safetensors")


def test_a_result_removed_while_the_check_runs_is_skipped(tmp_path, monkeypatch):
    """Issue 25, 9: a run beside this one may delete a result (a job it reruns) between the listing and the check."""
    result, ckpt = tmp_path / "r.json", tmp_path / "c.safetensors"
    ckpt.write_bytes(b"weights")
    result.write_text(json.dumps({provenance.KEY: provenance.entry([ckpt])}))
    real_stat = provenance.os.stat

    def vanishing(path, *args, **kwargs):
        if str(path) == str(result):
            raise FileNotFoundError(path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(provenance.os, "stat", vanishing)
    assert provenance.stale([result], provenance.Keys()) == []
