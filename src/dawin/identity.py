"""What an artefact is, recorded when it is written and checked against what its reader expects.

Provenance (:mod:`dawin.provenance`) asks whether a file's inputs have changed since it was made; it cannot see a
file that is itself the wrong one: the cache of another dataset copied under this dataset's name, a test set whose
class names are in another order than its model's head, a staged file edited after it was checked. Every reader
therefore goes through the checks here:

- results (:func:`check`, called by :func:`dawin.tensorio.load_tensors` and :func:`~dawin.tensorio.load_arrays` on
  every read): a file under the results layout (:data:`LAYOUT`: ``logits/{backbone}/{model}/{dataset}``,
  ``merged/...``, ``wise_ft/...``, ``heads/...``, ``coefficients/...``, ``models/...``, ``multitask/logits/...``)
  records its identity (:func:`stamp`: backbone, model or method, dataset, the class-name list's hash, the image
  count), and its path says what the reader expects; a reader may add expectations of its own (the checkpoint a
  cache must come from). A file at a layout path without a record was not written by this workflow's writers.
- the head against the test set (:func:`check_classes`, from :func:`dawin.inputs.pixels.open_dataset` given a
  classifier: logit caching, the WiSE-FT sweep, merged evaluation, the greedy soup): the head's class names (a
  classifier file records them), after the dataset's projection, must be the dataset's, in order; two classifiers
  combined (``ImageClassifier.load(like=)``: the interpolated pair, soup ingredients) must share them.
- results once per run before any job (``workflow/rules/common.smk``): each result's recorded identity against its
  path, from the header alone, so a copied cache stops even a run with nothing to do.
- decoded images (:func:`check_pixels`): the sidecar's preprocessing, dataset, index digest and byte size.
- staged datasets (:func:`check_staged_dataset`, from :func:`dawin.inputs.datasets.load_dataset`): ``verify.json``'s
  ``index_sha256`` against ``index.csv``.
- converted checkpoints (:func:`check_converted`, once per run before any job): the sidecar's ``sha256``.

Importable without torch: the workflow calls it at parse time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

IDENTITY = "identity"
"""The metadata entry of a result file holding its identity (JSON)."""

LAYOUT = {
    "logits": r"(?:^|/)logits/(?P<backbone>[^/]+)/(?P<model>[^/]+)/(?P<dataset>[^/]+)\.safetensors$",
    "merged": r"(?:^|/)merged/(?P<backbone>[^/]+)/(?P<kind>[^/]+)/(?P<assignment>[^/]+)/(?P<dataset>[^/]+)\.safetensors$",
    "wise_ft": r"(?:^|/)wise_ft/(?P<backbone>[^/]+)/(?P<dataset>[^/]+)\.safetensors$",
    "heads": r"(?:^|/)heads/(?P<backbone>[^/]+)/(?P<dataset>[^/]+)\.safetensors$",
    "coefficients": r"(?:^|/)coefficients/(?P<backbone>[^/]+)/(?P<kind>[^/]+)\.safetensors$",
    "models": r"(?:^|/)models/(?P<backbone>[^/]+)/(?P<model>[^/]+)\.safetensors$",
    "multitask_logits": r"(?:^|/)multitask/logits/(?P<dataset>[^/]+)\.safetensors$",
}
"""The results files whose path names what they hold (``workflow/rules/common.smk`` builds these paths)."""


class IdentityError(ValueError):
    """A file is not what its reader expects (another dataset, other classes, another checkpoint, edited)."""


def classes_hash(classnames: Sequence[str]) -> str:
    """sha256 of a class-name list, order included."""
    return hashlib.sha256("\n".join(classnames).encode()).hexdigest()


def of_dataset(data, name: str | None = None) -> dict[str, str]:
    """The identity fields of a dataset (:class:`dawin.inputs.datasets.ImageFolderDataset`): its name in the config
    (``name``, else its own), its class list's hash and its image count."""
    return {"dataset": name or data.name, "classes": classes_hash(data.classnames), "n_images": str(len(data))}


def stamp(**fields: object) -> dict[str, str]:
    """A result's identity as a metadata entry (:mod:`dawin.tensorio`)."""
    return {IDENTITY: json.dumps({k: str(v) for k, v in fields.items()}, sort_keys=True)}


def expected_from_path(path: str | Path) -> dict[str, str]:
    """What the results layout says the file at ``path`` holds ({} outside the layout)."""
    posix = Path(path).as_posix()
    for pattern in LAYOUT.values():
        match = re.search(pattern, posix)
        if match:
            return match.groupdict()
    return {}


def recorded(meta: Mapping[str, str]) -> dict[str, str] | None:
    value = meta.get(IDENTITY)
    return json.loads(value) if value else None


def _rebuild(path) -> str:
    return f"delete {path} and rerun snakemake, which rebuilds it from its own inputs"


def check(path: str | Path, meta: Mapping[str, str], expect: Mapping[str, object] | None = None,
          required: bool = True) -> None:
    """Raise :class:`IdentityError` when the file at ``path`` (metadata ``meta``) is not what its path in the results
    layout and the reader's ``expect`` say it holds; a file outside the layout with no expectation passes. With
    ``required`` false (the check of every result before a run), a file without a record passes too: Snakemake
    rebuilds those written by older code, whose readers then check the new ones."""
    wanted = {**expected_from_path(path), **{k: str(v) for k, v in (expect or {}).items()}}
    if not wanted:
        return
    found = recorded(meta)
    if found is None and not required:
        return
    if found is None:
        raise IdentityError(f"{path} records no identity, so nothing says it holds {_describe(wanted)}: it was not "
                            f"written by this workflow's current code (copied in, or from an older version); "
                            f"{_rebuild(path)}")
    for key, value in wanted.items():
        have = found.get(key)
        if key == "checkpoint":
            value, have = _paths(value), _paths(have or "")
        if have != value:
            raise IdentityError(f"{path} is not what its reader expects: {key} is {have!r}, expected {value!r} "
                                f"(it holds {_describe(found)}; copied or renamed from another file?); "
                                f"{_rebuild(path)}")


def _paths(value: str) -> str:
    return " + ".join(os.path.normpath(p) for p in value.split(" + ") if p)


def _describe(fields: Mapping[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in fields.items() if k not in ("classes",)) or "nothing"


def projected_classnames(head_classnames: Sequence[str], projection: Mapping) -> list[str] | None:
    """The class names a head's columns give after a dataset's projection (None where the projection merges columns
    into classes of their own names: ObjectNet's ``group_max``)."""
    kind = projection.get("kind", "identity")
    if kind == "identity":
        return list(head_classnames)
    if kind == "subset":
        return [head_classnames[i] for i in projection["columns"] if 0 <= i < len(head_classnames)]
    return None


def check_classes(head_classnames: Sequence[str] | None, data, model: str) -> None:
    """A test set is scored by a head only if the head's classes, after the set's projection, are the set's, in the
    same order: the same count with other names or another order gives a plausible-looking wrong accuracy."""
    if not head_classnames:
        return  # a checkpoint converted without its class list: the class count is still checked
    given = projected_classnames(head_classnames, data.projection_spec)
    if given is None or given == list(data.classnames):
        return
    first = next((i for i, (a, b) in enumerate(zip(given, data.classnames)) if a != b), min(len(given), len(data.classnames)))
    show = lambda names: repr(names[first]) if first < len(names) else "(none)"  # noqa: E731
    raise IdentityError(
        f"{model}'s head does not have the classes of dataset {data.name} ({data.root / 'dataset.json'}) in the same "
        f"order: {len(given)} against {len(data.classnames)} classes, first difference at class {first}: head "
        f"{show(given)}, dataset {show(data.classnames)}. A dataset.json edited by hand, or a model of another "
        f"label space: restore the dataset's class list (or re-create the dataset), or fix the model's path")


def check_pixels(path: str | Path, meta: Mapping, *, key: str, dataset, index_sha256: str) -> None:
    """A decoded-image array (its sidecar ``meta``) holds ``dataset`` in its index order under the preprocessing
    ``key``, and is whole (the size the sidecar recorded, or its shape's)."""
    fix = f"delete {path} and rerun snakemake to decode the images again"
    if meta.get("key") != key:
        raise IdentityError(f"{path} holds images decoded as {meta.get('key')}, the model's preprocessing is {key}: {fix}")
    if meta.get("n_images") != len(dataset) or meta.get("index_sha256") != index_sha256:
        raise IdentityError(f"{path} was decoded from another version of dataset {dataset.name} at {dataset.root} "
                            f"({meta.get('n_images')} images, index {str(meta.get('index_sha256'))[:12]}; now "
                            f"{len(dataset)}, {index_sha256[:12]}): {fix}")
    size = os.path.getsize(path)
    if "bytes" in meta and size != meta["bytes"]:
        raise IdentityError(f"{path} has {size} bytes, its sidecar {Path(path).with_suffix('.json')} records "
                            f"{meta['bytes']}: the file is truncated or was overwritten; {fix}")


def check_staged_dataset(root: str | Path, index_bytes: bytes) -> None:
    """A staged dataset's ``index.csv`` is the one its staging step checked and recorded in ``verify.json``."""
    verify = Path(root) / "verify.json"
    if not verify.is_file():
        return
    try:
        wanted = json.loads(verify.read_text()).get("index_sha256")
    except (ValueError, AttributeError):
        raise IdentityError(f"{verify}: not a verification record (not a JSON object); re-create the dataset: delete "
                            f"{root} and run the staging step again (snakemake paper_inputs)") from None
    found = hashlib.sha256(index_bytes).hexdigest()
    if wanted and found != wanted:
        raise IdentityError(f"{Path(root) / 'index.csv'} has sha256 {found}, the staging step recorded {wanted} in "
                            f"{verify}: the index was edited after the dataset was checked, so its labels or order "
                            f"are no longer the staged ones. Restore it, or re-create the dataset: delete {root} and "
                            "run the staging step again (snakemake paper_inputs)")


def listed_twice(paths: Sequence[str | Path]) -> tuple[str, str, str] | None:
    """The first two of ``paths`` that are one checkpoint, and why: the same spelling, the same file under two
    spellings (``./resources/x`` beside ``resources/x``, a symbolic link), or the same sha256 in their converters'
    sidecars (the content hash, where one is recorded without reading the files)."""
    seen: dict[str, str] = {}
    for path in paths:
        keys = [("the same path" if str(path) in seen.values() else "the same file", os.path.realpath(path))]
        side = converted_sidecar(path)
        if side.is_file():
            try:
                sha = json.loads(side.read_text()).get("sha256")
            except (ValueError, AttributeError):
                sha = None
            if sha:
                keys.append(("the same sha256 in their sidecars", f"sha256:{sha}"))
        for why, key in keys:
            if key in seen:
                return seen[key], str(path), why
        for _, key in keys:
            seen[key] = str(path)
    return None


def converted_sidecar(path: str | Path) -> Path:
    """Where the converter's record of a converted checkpoint lies (``convert_checkpoint``'s ``sidecar`` output)."""
    return Path(path).with_suffix(".json")


def check_converted(paths: Sequence[str | Path], file_sha256) -> None:
    """Each converted checkpoint among ``paths`` (one with a converter's sidecar) has the sha256 its sidecar records;
    ``file_sha256(path)`` gives the current one (:meth:`dawin.provenance.Keys.file`, cached by stat signature)."""
    for path in paths:
        side = converted_sidecar(path)
        if not (os.path.isfile(path) and side.is_file()):
            continue
        try:
            record = json.loads(side.read_text())
        except ValueError:
            continue  # not a converter's sidecar
        if not isinstance(record, dict) or "converter" not in record or "sha256" not in record:
            continue
        found = file_sha256(path)
        if found != record["sha256"]:
            raise IdentityError(f"{path} has sha256 {found}, its conversion recorded {record['sha256']} in {side}: "
                                "the checkpoint was replaced after it was converted (cp -p of another file?). Restore "
                                f"it, or convert it again: delete {path} and {side} and rerun snakemake")
