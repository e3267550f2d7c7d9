"""Provenance records: changes Snakemake's timestamps cannot see are found, unchanged inputs are not re-read."""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from dawin import provenance
from dawin.provenance import _stat_each
from dawin.inputs.datasets import write_dataset


def _result(tmp_path, files=(), datasets=()):
    """A result file (JSON) recording ``files`` and ``datasets``, written after them."""
    out = tmp_path / "result.json"
    out.write_text(json.dumps({provenance.KEY: json.loads(provenance.record(files, datasets)[provenance.KEY])}))
    return out


def _dataset(root, n=3):
    (root / "c").mkdir(parents=True)
    for i in range(n):
        (root / "c" / f"{i}.png").write_bytes(bytes([i % 256]) * 100)
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
    assert provenance.stale([result], provenance.Keys()) == [(str(result), "file", str(ckpt))]
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
    assert provenance.stale([result], provenance.Keys()) == [(str(result), "dataset", str(root))]
    assert provenance.stale([result], provenance.Keys(datasets=False)) == []  # the scan can be turned off
    result = _result(tmp_path, datasets=[root])
    (root / "c" / "2.png").unlink()
    assert provenance.stale([result], provenance.Keys())[0][1:] == ("dataset", str(root))


@pytest.mark.parametrize("damage", ["index deleted", "description deleted", "index without its columns"])
def test_a_dataset_whose_index_or_description_is_damaged_is_stale_not_a_crash(tmp_path, damage):
    root = tmp_path / "data"
    _dataset(root)
    result = _result(tmp_path, datasets=[root])
    if damage == "index without its columns":
        (root / "index.csv").write_text("no header\n")
    else:
        (root / ("index.csv" if damage == "index deleted" else "dataset.json")).unlink()
    assert provenance.stale([result], provenance.Keys()) == [(str(result), "dataset", str(root))]


def test_the_fix_dates_the_changed_inputs_as_new_and_snakemake_takes_over(tmp_path):
    """The stop names `touch` of the changed inputs: once they are newer than the results, the check leaves those
    results to Snakemake, which reruns them and everything after them."""
    root, ckpt = tmp_path / "data", tmp_path / "m.safetensors"
    _dataset(root)
    (root / ".snakemake_timestamp").write_text("")  # a directory output of a rule, dated by this file
    ckpt.write_bytes(b"A")
    result = _result(tmp_path, [ckpt], [root])
    time.sleep(0.05)
    image = root / "c" / "1.png"
    st = os.stat(image)
    image.write_bytes(b"\x05" * st.st_size)
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = provenance.stale([result], provenance.Keys())
    assert changed == [(str(result), "dataset", str(root))]
    command = provenance.touch_command(changed + [("r2", "file", str(ckpt))])
    assert command == f"touch {root}/.snakemake_timestamp {ckpt}"
    subprocess.run(command, shell=True, check=True)
    assert provenance.input_mtime_ns(root) > os.stat(result).st_mtime_ns
    assert provenance.stale([result], provenance.Keys()) == []


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


def test_an_image_replaced_with_its_old_size_and_mtime_is_found_by_its_ctime(tmp_path):
    root = tmp_path / "data"
    _dataset(root)
    result = _result(tmp_path, datasets=[root])
    time.sleep(0.05)  # file times have the kernel clock's coarse resolution
    image = root / "c" / "1.png"
    st = os.stat(image)
    image.write_bytes(b"\x07" * st.st_size)  # other pixels, same size, the old mtime put back
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert provenance.scan_dataset(root)[0] == json.loads(result.read_text())[provenance.KEY]["datasets"][str(root)]
    assert provenance.stale([result], provenance.Keys()) == [(str(result), "dataset", str(root))]


def test_a_dataset_copied_whole_stays_valid_and_a_later_change_in_place_is_found(tmp_path):
    _dataset(tmp_path / "a" / "data")
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path / "a")
        _result(tmp_path / "a", datasets=["data"])
        time.sleep(0.05)
        shutil.copytree(tmp_path / "a", tmp_path / "b")  # every ctime newer than the record's
        os.chdir(tmp_path / "b")
        cache = tmp_path / "cache.json"
        keys = provenance.Keys(cache)
        assert provenance.stale(["result.json"], keys) == []
        keys.save()  # the copy's ctimes are remembered
        time.sleep(0.05)
        image = Path("data/c/0.png")
        st = os.stat(image)
        image.write_bytes(b"\x09" * st.st_size)
        os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert provenance.stale(["result.json"], provenance.Keys(cache)) == [("result.json", "dataset", "data")]
        # without the remembered copy every file is again newer than the record: the change is not seen
        assert provenance.stale(["result.json"], provenance.Keys()) == []
    finally:
        os.chdir(cwd)


def test_datasets_scanned_once_in_so_many_hours_reuse_their_verdicts_meanwhile(tmp_path, monkeypatch):
    root = tmp_path / "data"
    _dataset(root)
    result, cache = _result(tmp_path, datasets=[root]), tmp_path / "cache.json"
    scans = []
    scan = provenance.scan_dataset
    monkeypatch.setattr(provenance, "scan_dataset", lambda r: scans.append(r) or scan(r))
    keys = provenance.Keys(cache, datasets=12)
    assert provenance.stale([result], keys) == [] and len(scans) == 1
    keys.save()
    (root / "c" / "2.png").unlink()
    assert provenance.stale([result], provenance.Keys(cache, datasets=12)) == [] and len(scans) == 1  # not scanned
    assert provenance.stale([result], provenance.Keys(cache))[0][1:] == ("dataset", str(root))  # True: every time
    now = time.time_ns()
    monkeypatch.setattr(provenance.time, "time_ns", lambda: now + 13 * 3600 * 10**9)  # 13 hours on
    assert provenance.stale([result], provenance.Keys(cache, datasets=12))[0][1:] == ("dataset", str(root))


def test_a_record_without_ctimes_is_checked_by_its_digest(tmp_path):
    root = tmp_path / "data"
    _dataset(root)
    rec = provenance.entry(datasets=[root])
    del rec["dataset_ctimes"]
    result = tmp_path / "old.json"
    result.write_text(json.dumps({provenance.KEY: rec}))
    assert provenance.stale([result], provenance.Keys()) == []
    (root / "c" / "2.png").unlink()
    assert provenance.stale([result], provenance.Keys())[0][1:] == ("dataset", str(root))


def test_the_record_is_read_from_a_safetensors_file(tmp_path):
    import torch

    from dawin.tensorio import save_tensors

    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"A")
    save_tensors(tmp_path / "r.safetensors", {"x": torch.zeros(2)}, {"dataset": "in", **provenance.record([ckpt])})
    assert provenance.recorded(tmp_path / "r.safetensors") == {"files": {str(ckpt): provenance.file_sha256(ckpt)},
                                                              "datasets": {}, "dataset_ctimes": {}}


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


def test_a_large_dataset_is_scanned_alike_by_one_thread_and_by_many(tmp_path, monkeypatch):
    root = tmp_path / "data"
    _dataset(root, n=1500)  # enough files for the stats to be spread over threads
    (root / "c" / "7.png").unlink()
    one = provenance.scan_dataset(root, threads=1)
    spread = []
    monkeypatch.setattr(provenance, "SLOW_STAT_S", 0.0)  # as on a slow file system
    monkeypatch.setattr(provenance, "_stat_each", lambda paths: spread.append(len(paths)) or _stat_each(paths))
    assert provenance.scan_dataset(root, threads=7) == one
    assert spread == [256] + [178] * 6 + [176]  # the first 256, then the other 1244 in 7 slices
    assert len(one[1]) == 2 + 1499  # index.csv, dataset.json and every image still there


@pytest.mark.parametrize("value, valid", [(True, True), (False, True), (12, True), (0.5, True),
                                          (0, False), (-1, False), ("yes", False)])
def test_scan_datasets_is_a_boolean_or_a_positive_number_of_hours(value, valid):
    import jsonschema
    import yaml

    schema = yaml.safe_load((Path(__file__).parents[1] / "workflow/schemas/config.schema.yaml").read_text())
    check = jsonschema.Draft202012Validator(schema["properties"]["provenance"])
    assert check.is_valid({"scan_datasets": value}) == valid
