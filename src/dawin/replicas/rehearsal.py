"""The paper suite's rehearsal: replicas of every upstream source, served on 127.0.0.1, and the overlay config.

:func:`build_rehearsal` writes the dataset replicas (:mod:`dawin.replicas.data`) and checkpoint replicas
(:mod:`dawin.replicas.models`) of ``config/paper.yaml`` under one folder and returns the overlay that points
the unchanged paper config at them. The overlay says only where things are and how big they are: the
replica server (``paper.url_rewrite``, ``paper.hf_endpoint``), the mirror folder for Google Drive and the
hub's model repositories, the manual copies, the small architecture and the replicas' checksums and counts,
fewer model-soups runs (``runs``), smaller batches (``batch_size`` for evaluation, ``adamerging_batch``
images per task and AdaMerging step) and fewer AdaMerging steps (``adamerging_steps``). Which rules run, and
how, is the paper config's.

Run it by hand (``python -m dawin.replicas.rehearsal DEST``): it builds, serves until interrupted, and
prints the two commands: ``paper_inputs`` with the server up, then the targets with the server stopped.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Mapping
from pathlib import Path

import yaml

from ..inputs import paper_datasets
from .data import write_dataset_replicas
from .models import ARCHITECTURE, write_checkpoint_replicas
from .prototypes import suite_prototypes
from .server import HF_PREFIX, serve


def write_inception_replica(site: Path, seed: int) -> str:
    """A randomly initialised torchvision Inception-V3 state dict (half precision: 54 MB) on the replica site, named
    as torchvision names its weights (``-<sha256 prefix>.pth``); returns the URL the overlay gives
    ``paper.inception``."""
    import hashlib

    import torch
    from torchvision.models import inception_v3

    torch.manual_seed(seed)
    model = inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    folder = site / "download.pytorch.org" / "models"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "inception_v3_replica.pth"
    torch.save(state, tmp)
    name = f"inception_v3_replica-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth"
    tmp.rename(folder / name)
    return f"https://download.pytorch.org/models/{name}"


def build_rehearsal(paper_config: Mapping, dest: str | Path, base_url: str, *, runs: int = 3, per_class: int = 1,
                    batch_size: int = 64, adamerging_batch: int = 4, adamerging_steps: int = 50, seed: int = 0,
                    informative: bool = True) -> dict:
    """Write the replicas of ``paper_config`` (config/paper.yaml, loaded) under ``dest`` (``site/`` served at
    ``base_url``, ``mirror/``, ``manual/``) and return the overlay config (also written to
    ``dest/overlay.yaml``). ``runs`` model-soups runs replace the 72 (at least 3: Model Stock merges runs 1, 2).
    ``informative``: draw the images from class prototypes the replica models recognise
    (:mod:`dawin.replicas.prototypes`, about a minute of search), as every computation past the inputs needs;
    without, the images are stripes at chance level (enough to rehearse the inputs alone)."""
    if runs < 3:
        raise ValueError(f"runs must be at least 3 (Model Stock uses runs 1 and 2), got {runs}")
    dest = Path(dest).resolve()
    site, mirror, manual = dest / "site", dest / "mirror", dest / "manual"
    config = copy.deepcopy(dict(paper_config))
    series = {name: {"count": runs} for name in config["paper"].get("checkpoint_series", {})}
    for name, change in series.items():
        config["paper"]["checkpoint_series"][name].update(change)
    models = write_checkpoint_replicas(config, site, mirror, architecture=ARCHITECTURE, seed=seed)
    prototypes = suite_prototypes(config, ARCHITECTURE, seed) if informative else None
    data = write_dataset_replicas(config, site, manual, per_class=per_class, seed=seed, prototypes=prototypes)
    arch = models["architecture"]

    md5: dict[str, str] = {}
    for name, value in data["md5"].items():
        if isinstance(value, Mapping):  # a multi-task set: {file name: md5}
            md5.update(value)
        else:  # a robust set's archive
            md5[paper_datasets.SOURCES[config["paper"]["datasets"][name]]["archive"]] = value
    checkpoints = {name: {"architecture": arch} for name in config["paper"]["checkpoints"]}
    for name, roles in models["sha256"].items():
        checkpoints[name]["sources"] = {role: {"sha256": sha} for role, sha in roles.items()}
    backbones = {}
    for name, bb in config["backbones"].items():
        backbones[name] = {"architecture": arch}
        ingredients = (bb.get("soups") or {}).get("ingredients")
        if isinstance(ingredients, Mapping):
            backbones[name]["soups"] = {"ingredients": {"last": ingredients["first"] + runs - 1}}
    overlay = {
        "paper": {
            "inception": {"url": [write_inception_replica(site, seed)]},
            "mirror": str(mirror),
            "url_rewrite": {"https://": f"{base_url}/", "http://": f"{base_url}/"},
            "hf_endpoint": f"{base_url}{HF_PREFIX}",
            "manual": data["manual"],
            "heldout": data["heldout"],
            "md5": md5,
            "expected": data["counts"],
            "checkpoint_series": {name: {**change, "architecture": arch} for name, change in series.items()},
            "checkpoints": checkpoints,
        },
        "backbones": backbones,
        "evaluation": {"batch_size": batch_size, "num_workers": 0},
    }
    # smaller AdaMerging batches (images per task and step) and fewer steps: each step runs the same code, and
    # the paper's 500 took about 2 of the rehearsal's 8 minutes of jobs (Table 6's three methods, Table G's pools)
    methods = (config.get("multitask") or {}).get("methods") or {}
    small = {name: {"batch_size": min(adamerging_batch, m["batch_size"]), "steps": min(adamerging_steps, m["steps"])}
             for name, m in methods.items() if isinstance(m, Mapping) and {"batch_size", "steps"} <= set(m)}
    if small:
        overlay["multitask"] = {"methods": small}
    (dest / "overlay.yaml").write_text(yaml.safe_dump(overlay, sort_keys=True))
    return overlay


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="folder for the replicas and overlay.yaml")
    parser.add_argument("--config", type=Path, default=Path("config/paper.yaml"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    httpd, base_url = serve(args.dest / "site", args.port)
    build_rehearsal(yaml.safe_load(args.config.read_text()), args.dest, base_url, runs=args.runs)
    overlay = (args.dest / "overlay.yaml").resolve()
    print(f"serving {args.dest / 'site'} at {base_url}; in another shell:\n"
          f"  snakemake paper_inputs --configfile {args.config} {overlay}\n"
          f"then stop this server (Ctrl-C) and run\n"
          f"  snakemake all --configfile {args.config} {overlay}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        httpd.shutdown()


if __name__ == "__main__":
    main()
