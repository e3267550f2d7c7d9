"""Small helpers shared by the workflow scripts: logging to the rule's log file and JSON output."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path


def setup_logging(log_path: str | Path | None) -> logging.Logger:
    """Send this process's logging, warnings and stderr (tqdm bars, tracebacks) to the rule's log."""
    logger = logging.getLogger("dawin")
    if log_path:
        stream = open(log_path, "w", buffering=1)  # noqa: SIM115 - lives as long as the job
        sys.stderr = stream
        logging.basicConfig(stream=stream, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
        logging.captureWarnings(True)
    return logger


def _plain(obj):
    """numpy / torch values as plain JSON (arrays as lists, scalars as numbers)."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_json(path: str | Path, obj) -> None:
    Path(path).write_text(json.dumps(obj, indent=1, sort_keys=True, default=_plain) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())
