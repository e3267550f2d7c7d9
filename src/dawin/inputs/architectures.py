"""The architecture names open_clip can build, known without importing it.

``import open_clip`` takes 6-10 s (torch, torchvision, transformers), too slow for every DAG build. open_clip
builds exactly the models of its ``model_configs/*.json`` files plus the ones registered with
``add_model_config`` (this package's ``model_configs``, registered by :mod:`dawin.inputs.models`), so the
names are those files' stems, found through the package's location (``importlib.util.find_spec`` does not
run the package). ``tests/test_models.py`` holds this equal to ``open_clip.list_models()``.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Mapping
from pathlib import Path

OWN_CONFIGS = Path(__file__).parent / "model_configs"


def known_architectures() -> set[str]:
    spec = importlib.util.find_spec("open_clip")
    roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    return {f.stem for d in [*(r / "model_configs" for r in roots), OWN_CONFIGS] for f in d.glob("*.json")}


def check_architectures(named: Mapping[str, str]) -> None:
    """``named``: {config key: architecture name}. A name open_clip cannot build is a ValueError naming the key,
    the closest known names and where the list comes from."""
    known = known_architectures()
    for key, name in named.items():
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ValueError(f"config {key}: unknown architecture {name!r}; {hint}open_clip builds the names of its "
                             f"model_configs/*.json and of {OWN_CONFIGS} ({len(known)} in all)")
