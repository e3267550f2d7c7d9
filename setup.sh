#!/usr/bin/env bash
# Sets up (or brings up to date) the project's virtualenv in .venv: Python 3.11, the pinned packages and this
# project's package `dawin` (editable: the checkout's src/ is what runs).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# pip byte-compiles what it installs (about 50 of its 124 s here). Keep it: where PYTHONDONTWRITEBYTECODE is set
# (this project's machines and CI), a module not compiled at install is compiled anew at every import.
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
