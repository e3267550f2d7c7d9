"""Provenance records: changes Snakemake's timestamps cannot see are found, unchanged inputs are not re-read."""

import os
import shutil
import time

from dawin import provenance
from dawin.inputs.datasets import write_dataset


def _result(tmp_path, files=(), datasets=()):
    """A result file (JSON) recording ``files`` and ``datasets``, written after them."""
    import json

    out = tmp_path / "result.json"
    out.write_text(json.dumps({provenance.KEY: json.loads(provenance.record(files, datasets)[provenance.KEY])}))
    return out


def _dataset(root, n=3):
    (root / "c").mkdir(parents=True)
    for i in range(n):
        (root / "c" / f"{i}.png").write_bytes(bytes([i]) * 100)
    write_dataset(root, "toy", ["x"], ["a {c}."], [(f"c/{i}.png", 0) for i in range(n)])


def test_a_checkpoint_replaced_with_its_old_timestamp_is_found(tmp_path):
    ckpt, other = tmp_path / "finetuned.safetensors", tmp_path / "other.safetensors"
    ckpt.write_bytes(b"model A")
    other.write_bytes(b"model B")
    os.utime(other, (1, 1))
    old = os.stat(ckpt).st_mtime
    result = _result(tmp_path, [ckpt])
    assert provenance.stale([result], provenance.Keys()) == []
    shutil.copy2(other, ckpt)  # cp -p: the other model's (old) timestamp
    os.utime(ckpt, (old, old))
    assert provenance.stale([result], provenance.Keys()) == [(str(result), f"file {ckpt} has changed since")]
    # the same bytes again (a restored backup of the right file): nothing is stale
    ckpt.write_bytes(b"model A")
    os.utime(ckpt, (old, old))
    assert provenance.stale([result], provenance.Keys()) == []


def test_an_input_newer_than_its_result_is_left_to_snakemake(tmp_path):
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"A")
    result = _result(tmp_path, [ckpt])
    time.sleep(0.01)
    ckpt.write_bytes(b"B")  # newer: Snakemake reruns the job that made the result
    assert provenance.stale([result], provenance.Keys()) == []


def test_dataset_changes_in_place_are_found(tmp_path):
    root = tmp_path / "data"
    _dataset(root)
    result = _result(tmp_path, datasets=[root])
    assert provenance.stale([result], provenance.Keys()) == []
    image = root / "c" / "1.png"
    st = os.stat(image)
    image.write_bytes(b"\x01" * 60)  # truncated in place, the old mtime put back
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert provenance.stale([result], provenance.Keys()) == [(str(result), f"dataset {root} has changed since")]
    assert provenance.stale([result], provenance.Keys(datasets=False)) == []  # the scan can be turned off
    result = _result(tmp_path, datasets=[root])
    (root / "c" / "2.png").unlink()
    assert provenance.stale([result], provenance.Keys())[0][1] == f"dataset {root} has changed since"


def test_a_copy_of_data_and_results_with_their_timestamps_stays_valid(tmp_path):
    _dataset(tmp_path / "a" / "data")
    ckpt = tmp_path / "a" / "m.safetensors"
    ckpt.write_bytes(b"A")
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path / "a")  # results record paths relative to the working directory, as in the workflow
        _result(tmp_path / "a", ["m.safetensors"], ["data"])
        shutil.copytree(tmp_path / "a", tmp_path / "b")  # copy2: mtimes kept, ctimes and inodes new
        os.chdir(tmp_path / "b")
        assert provenance.stale(["result.json"], provenance.Keys()) == []
    finally:
        os.chdir(cwd)


def test_the_record_is_read_from_a_safetensors_file(tmp_path):
    import torch

    from dawin.tensorio import save_tensors

    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"A")
    save_tensors(tmp_path / "r.safetensors", {"x": torch.zeros(2)}, {"dataset": "in", **provenance.record([ckpt])})
    assert provenance.recorded(tmp_path / "r.safetensors") == {"files": {str(ckpt): provenance.file_sha256(ckpt)},
                                                              "datasets": {}}


def test_hashes_are_cached_against_the_stat_signature(tmp_path, monkeypatch):
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"A" * 1000)
    cache = tmp_path / "cache.json"
    first = provenance.Keys(cache)
    key = first.file(ckpt)
    first.save()
    calls = []
    monkeypatch.setattr(provenance, "file_sha256", lambda p: calls.append(p) or "x")
    assert provenance.Keys(cache).file(ckpt) == key and calls == []  # not read again
    ckpt.write_bytes(b"B" * 1000)
    assert provenance.Keys(cache).file(ckpt) == "x" and len(calls) == 1


def test_results_without_a_record_or_damaged_are_skipped(tmp_path):
    (tmp_path / "a.safetensors").write_bytes(b"\x00" * 3)
    (tmp_path / "b.json").write_text("[1, 2]")
    (tmp_path / "c.safetensors").write_bytes(b"not a checkpoint")  # its first 8 bytes read as a header of 8 EB
    files = [tmp_path / "a.safetensors", tmp_path / "b.json", tmp_path / "c.safetensors"]
    assert provenance.stale(files, provenance.Keys()) == []
