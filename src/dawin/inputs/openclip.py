"""open_clip, imported once for the whole package without its timm and Hugging Face towers.

``import open_clip`` also imports ``timm`` and ``transformers`` when they are installed (``open_clip/timm_model.py``
and ``hf_model.py``, for towers given by ``timm_model_name`` / ``hf_model_name``), about 2 s of every job's
start-up here. The workflow builds none of those towers (``dawin.inputs.architectures.check_architectures`` refuses
such architectures when the config is read). While open_clip loads, both are marked absent, so those two modules
take their own "not installed" branch; the marks are removed at once, and a later ``import timm`` or ``import
transformers`` (the checkpoint converter's tests) works as usual. Where either was imported first, or open_clip
already is, nothing changes. Every module of the package imports open_clip from here.
"""

from __future__ import annotations

import sys

OPTIONAL = ("transformers", "timm")
"""The libraries open_clip imports only for towers this workflow does not build."""

_hidden = [] if "open_clip" in sys.modules else [m for m in OPTIONAL if m not in sys.modules]
for _name in _hidden:
    sys.modules[_name] = None  # makes `import <name>` raise ImportError
try:
    import open_clip  # noqa: E402
    from open_clip import modified_resnet, transform, transformer  # noqa: E402, F401
finally:
    for _name in _hidden:
        del sys.modules[_name]

__all__ = ["open_clip", "modified_resnet", "transform", "transformer"]
