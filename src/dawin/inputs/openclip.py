"""open_clip, imported once for the whole package without its timm and Hugging Face towers.

``import open_clip`` also imports ``timm`` and ``transformers`` when they are installed (``open_clip/timm_model.py``
and ``hf_model.py``, for towers given by ``timm_model_name`` / ``hf_model_name``), about 2 s of every job's
start-up here. The workflow builds none of those towers (``dawin.inputs.architectures.check_architectures`` refuses
such architectures when the config is read). While open_clip loads, both are marked absent, so those two modules
take their own "not installed" branch; the marks are removed at once, and a later ``import timm`` or ``import
transformers`` (the checkpoint converter's tests) works as usual. Where either was imported first, or open_clip
already is, nothing changes. Every module of the package imports open_clip from here.

open_clip imports torchvision, whose ``ops/roi_align.py`` imports ``torch._dynamo.utils`` for one function,
``is_compile_supported``, called only inside ``roi_align`` (torchvision 0.29.1). That import loads all of
TorchDynamo (about 2.3 s of every job here; ``python -X importtime``), which no job uses. While torchvision loads,
``torch._dynamo.utils`` is a one-function stand-in whose function imports the real one when called; the stand-in is
removed at once, so ``roi_align`` still gives torchvision's answer and a later ``import torch._dynamo`` is the real
one (tests/test_models.py). Where torchvision or TorchDynamo was imported first, nothing changes.
"""

from __future__ import annotations

import sys
import types

OPTIONAL = ("transformers", "timm")
"""The libraries open_clip imports only for towers this workflow does not build."""

DYNAMO_UTILS = "torch._dynamo.utils"


def _is_compile_supported(device_type):
    """torchvision's ``roi_align`` asks this; the answer is TorchDynamo's own, imported on this first call."""
    from torch._dynamo.utils import is_compile_supported

    return is_compile_supported(device_type)


_hidden = [] if "open_clip" in sys.modules else [m for m in OPTIONAL if m not in sys.modules]
_stand_in = "torchvision" not in sys.modules and "torch._dynamo" not in sys.modules
for _name in _hidden:
    sys.modules[_name] = None  # makes `import <name>` raise ImportError
if _stand_in:
    sys.modules[DYNAMO_UTILS] = types.ModuleType(DYNAMO_UTILS, "stand-in while torchvision loads (see above)")
    sys.modules[DYNAMO_UTILS].is_compile_supported = _is_compile_supported
try:
    import open_clip  # noqa: E402
    from open_clip import modified_resnet, transform, transformer  # noqa: E402, F401
finally:
    for _name in _hidden:
        del sys.modules[_name]
    if _stand_in:
        del sys.modules[DYNAMO_UTILS]

__all__ = ["open_clip", "modified_resnet", "transform", "transformer"]
