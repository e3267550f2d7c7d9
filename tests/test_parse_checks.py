"""Checks the workflow makes when it is parsed, before any job, on an empty folder (no demo built): each a short
`snakemake -n` that must stop with the message that names the problem and the fix."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dawin.identity import listed_twice

REPO = Path(__file__).resolve().parents[1]


def dry_run(workdir: Path, *targets: str, overlay: dict | None = None) -> subprocess.CompletedProcess:
    configs = [str(REPO / "config/config.yaml")]
    if overlay is not None:
        (workdir / "overlay.yaml").write_text(yaml.safe_dump(overlay))
        configs.append(str(workdir / "overlay.yaml"))
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
                           "-n", *targets, "--configfile", *configs], capture_output=True, text=True, timeout=600)


CKPT = "resources/demo/checkpoints/tiny"


def test_one_run_under_two_spellings_is_found(tmp_path, monkeypatch):
    """Issue 25, 4: `./resources/...` beside `resources/...` passed the schema's uniqueness check."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.safetensors").write_bytes(b"run")
    (tmp_path / "b.safetensors").write_bytes(b"other run")
    os.symlink("a.safetensors", tmp_path / "link.safetensors")
    assert listed_twice(["a.safetensors", "b.safetensors"]) is None
    assert listed_twice(["a.safetensors", "b.safetensors", "./a.safetensors"]) == ("a.safetensors", "./a.safetensors",
                                                                                    "the same file")
    assert listed_twice(["a.safetensors", "a.safetensors"]) == ("a.safetensors", "a.safetensors", "the same path")
    assert listed_twice(["link.safetensors", "b.safetensors", "a.safetensors"])[2] == "the same file"
    # converted copies of one checkpoint: the same sha256 in their converters' sidecars
    (tmp_path / "c.safetensors").write_bytes(b"run")
    for name in "ac":
        (tmp_path / f"{name}.json").write_text('{"converter": "x", "sha256": "abc"}')
    assert listed_twice(["a.safetensors", "c.safetensors"]) == ("a.safetensors", "c.safetensors",
                                                                 "the same sha256 in their sidecars")


@pytest.mark.parametrize("ingredients, message", [
    ([f"{CKPT}/finetuned.safetensors", f"./{CKPT}/finetuned.safetensors", f"{CKPT}/runs/run1.safetensors"],
     f"config backbones.tiny.soups.ingredients: duplicate run: '{CKPT}/finetuned.safetensors' and "
     f"'./{CKPT}/finetuned.safetensors' are the same file, so the soup would count it twice"),
    ([f"{CKPT}/finetuned.safetensors", f"{CKPT}/runs/run1.safetensors", f"{CKPT}/runs/run1.safetensors"],
     f"duplicate run: '{CKPT}/runs/run1.safetensors' and '{CKPT}/runs/run1.safetensors' are the same path"),
])
def test_a_soup_ingredient_listed_twice_stops_the_run(tmp_path, ingredients, message):
    """Issue 25, 4 and its weak message: the uniform soup averaged one run twice (ID 89.00 -> 88.20, cost 5), and the
    schema's message for one spelling twice never said "duplicate"."""
    res = dry_run(tmp_path, overlay={"backbones": {"tiny": {"soups": {"ingredients": ingredients}}}})
    assert res.returncode != 0 and message in res.stdout + res.stderr


def test_a_file_where_the_results_keep_a_folder_is_named(tmp_path):
    """Issue 25, 8: `results/demo/tables` as a file gave a full Snakemake traceback."""
    (tmp_path / "results/demo").mkdir(parents=True)
    (tmp_path / "results/demo/tables").write_text("not a folder")
    res = dry_run(tmp_path)
    assert res.returncode != 0
    assert ("results/demo/tables is a file where the workflow keeps a folder (its outputs go below it); move it away "
            "(mv results/demo/tables results/demo/tables.old)") in res.stdout + res.stderr
    assert (tmp_path / "results/demo/tables").read_text() == "not a folder"


def test_a_misspelt_target_suggests_the_nearest_target_names(tmp_path):
    """Issue 25, weak messages: `snakemake tabel2` said "No rule to produce tabel2"."""
    res = dry_run(tmp_path, "tabel2")
    assert res.returncode != 0
    assert "no target 'tabel2': did you mean table2 or tables" in res.stdout + res.stderr


def test_more_mixture_components_than_test_images_is_said_on_the_terminal_once(tmp_path):
    """Issue 25, weak messages: `n_components: 600` with 500 samples warned only inside a job's log."""
    for name, n in [("r", 40), ("a", 700)]:
        (tmp_path / f"resources/demo/data/{name}").mkdir(parents=True)
        (tmp_path / f"resources/demo/data/{name}/dataset.json").write_text(f'{{"n_images": {n}}}')
    res = dry_run(tmp_path, overlay={"backbones": {"tiny": {"n_components": 600}}})
    assert res.returncode == 0, res.stderr[-2000:]
    warning = ("Warning: backbones.tiny.n_components is 600, more than the 40 images of test set r (1 test set(s) in "
               "all): the mixtures there are fitted with at most one component per distinct coefficient")
    assert (res.stdout + res.stderr).count(warning) == 1
    assert "n_components is" not in dry_run(tmp_path).stderr  # the shipped 3 components: nothing to say


def test_a_cache_copied_over_another_datasets_name_stops_even_a_run_with_nothing_to_do(tmp_path):
    """Issue 25, 1: after `cp -p .../v2.safetensors .../r.safetensors` a plain run said "Nothing to be done"; every
    result's identity is now checked against its path once per run, before any job (reading headers only)."""
    import torch

    from dawin import identity
    from dawin.inference.logits import save_logits

    cache = tmp_path / "results/demo/logits/tiny/finetuned/r.safetensors"
    cache.parent.mkdir(parents=True)
    save_logits(cache, torch.randn(2, 2), torch.tensor([0, 1]),
                **identity.stamp(backbone="tiny", model="finetuned", dataset="v2", classes="x", n_images=2))
    res = dry_run(tmp_path)
    assert res.returncode != 0
    assert (f"{cache.relative_to(tmp_path)} is not what its reader expects: dataset is 'v2', expected 'r'"
            in res.stdout + res.stderr)
    save_logits(cache, torch.randn(2, 2), torch.tensor([0, 1]))  # written by older code: rebuilt, not refused
    assert dry_run(tmp_path).returncode == 0
