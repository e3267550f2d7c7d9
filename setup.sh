#!/usr/bin/env bash
# Sets up (or brings up to date) the project's virtualenv in .venv: Python 3.11, the pinned packages and this
# project's package `dawin` (editable: the checkout's src/ is what runs).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# --no-compile: Python compiles each module on its first import instead (as uv does by default); pip's
# compiling every installed file took 52 of the 124 s here, first imports 8 s more.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-compile -r requirements.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
