#!/usr/bin/env bash
# The GPU checks of issue 24, as one script for a lent device (run from the repository root, .venv set up):
#   1. tests/test_gpu.py: the CUDA paths against the CPU ones;
#   2. Table F's evaluation costs: exact per-sample DaWin / one pass (at most 2.5), decoded / JPEG (at most 0.2);
#   3. the rehearsal's table2 with evaluation.autocast true against false: how many predictions change.
# Each result goes to $OUT (default ./gpu-checks) with the device's name.   bash benchmarks/gpu_checks.sh
set -uo pipefail
OUT="${OUT:-gpu-checks}"
mkdir -p "$OUT"
PY=.venv/bin/python
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
$PY -m pytest -q -o addopts="" -p no:xdist tests/test_gpu.py 2>&1 | tee "$OUT/test_gpu.txt"
$PY benchmarks/table_f.py --n 4096 --workers 12 --batch-size 256 2>&1 | tee "$OUT/table_f.txt"
$PY benchmarks/autocast_rehearsal.py --dest "$(mktemp -d)" --cores 8 2>&1 | tee "$OUT/autocast_rehearsal.txt"
