"""Write demo datasets to disk in the same layout as every real dataset (see :mod:`dawin.inputs.datasets`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..inputs.datasets import write_dataset
from .synth import Domain, Task, sample_split


def write_demo_dataset(root: str | Path, name: str, task: Task, domain: Domain, split: str, n: int, seed: int) -> None:
    """Render ``n`` images of ``domain`` into ``root``/<class>/<i>.png plus index and metadata.

    Written to a temporary sibling and renamed at the end, so an interrupted run leaves nothing that
    looks complete.
    """
    root = Path(root)
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    items = []
    for i, (img, y) in enumerate(sample_split(task, domain, n, seed, split)):
        rel = f"{task.classes[y]}/{i:06d}.png"
        (tmp / task.classes[y]).mkdir(parents=True, exist_ok=True)
        img.save(tmp / rel, optimize=False)
        items.append((rel, y))
    write_dataset(tmp, name, task.classes, task.templates, items)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
