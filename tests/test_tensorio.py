import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dawin.tensorio import load_tensors, read_metadata, save_tensors

META = {f"key{i}": f"value{i}" for i in range(8)}


def test_files_are_byte_identical_and_metadata_roundtrips(tmp_path):
    t = {"a": torch.arange(6.0).view(2, 3), "b": torch.tensor([1, 2])}
    digests = set()
    for i in range(6):
        save_tensors(tmp_path / f"{i}.safetensors", t, META)
        digests.add(hashlib.sha256((tmp_path / f"{i}.safetensors").read_bytes()).hexdigest())
    assert len(digests) == 1
    tensors, meta = load_tensors(tmp_path / "0.safetensors")
    assert meta == META and torch.equal(tensors["a"], t["a"]) and torch.equal(tensors["b"], t["b"])


def test_plain_safetensors_metadata_passes_through(tmp_path):
    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"), metadata={"format": "pt"})
    assert read_metadata(tmp_path / "plain.safetensors") == {"format": "pt"}


@pytest.mark.parametrize("keep", [0, 10, 0.5, -4])
def test_a_truncated_file_names_itself_and_the_fix(tmp_path, keep):
    from dawin.tensorio import DamagedFileError, load_arrays, load_tensors, read_metadata

    path = tmp_path / "cache.safetensors"
    save_tensors(path, {"x": torch.randn(50, 8)}, {"k": "v"})
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep) if isinstance(keep, float) else keep])
    for read in (load_tensors, load_arrays, read_metadata):
        with pytest.raises(DamagedFileError, match=f"{path}: not a readable safetensors file .* delete it and rerun"):
            read(path)


def test_a_write_that_fails_leaves_the_previous_file_and_no_partial_one(tmp_path, monkeypatch):
    import safetensors.torch

    path = tmp_path / "cache.safetensors"
    save_tensors(path, {"x": torch.arange(4.0)}, {"k": "v"})
    before = path.read_bytes()

    def crash_midway(tensors, filename, metadata=None):  # half a file written, then the failure
        Path(filename).write_bytes(before[: len(before) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", crash_midway)
    with pytest.raises(OSError, match="No space left"):
        save_tensors(path, {"x": torch.arange(8.0)}, {"k": "w"})
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["cache.safetensors"]
