#!/usr/bin/env bash
# Sets up (or brings up to date) the project's virtualenv in .venv: Python 3.11, the pinned packages and this
# project's package `dawin` (editable: the checkout's src/ is what runs).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# Installed modules are byte-compiled: where PYTHONDONTWRITEBYTECODE is set (this project's machines and CI), a
# module not compiled at install is compiled anew at every import of every job. pip compiles one file after
# another (about 50 of its 124 s here); compileall does the same files on every core (about 29 s). A few files
# are not Python 3.11 (torch/testing/_internal/py312_intrinsics.py), as pip also finds and skips: hence `|| true`.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-compile -r requirements.txt
.venv/bin/python -m compileall -q -j 0 "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
  > /dev/null || true
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
