"""Small helpers shared by the workflow scripts: logging to the rule's log file and JSON output."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path

CPU_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
"""The CPU kernel paths of the demo suite's jobs: environment variables torch, MKL and oneDNN read when they load.

Unpinned, each library runs the widest instruction set the processor has, and a result's last bits depend on
it: a short training run gives other bytes under each of the three knobs (``tests/test_project.py``), so the
demo's numbers differed between machines. AVX2 is on every x86-64 server processor of the last decade; where
it is the widest (this project's machine, an AMD EPYC) the pins leave the bytes as they were. Bit-equality
also needs the same thread count (each rule's ``threads``, capped by ``--cores``)."""


JOB_ENVIRONMENT = {"GOMP_SPINCOUNT": "10000"}
"""Set for every job of every suite (``workflow/rules/common.smk``) and for the tests' processes
(``tests/conftest.py``); a variable already set wins. An idle OpenMP worker of torch's libgomp spins for
``GOMP_SPINCOUNT`` iterations before it sleeps (300,000 by default), so a job on 2 threads beside one busy process
spins on the core the other thread needs and slows down about 6 times. 10,000 keeps the spinning's speed
alone and halves the time beside a busy process (``benchmarks/busy_neighbour.py`` measures both, with
``OMP_WAIT_POLICY=PASSIVE``, which costs about twice the time alone). libgomp reads the variable once, when it
loads, so it must be in a process's environment before torch is imported."""


def cpu_kernels() -> dict[str, str]:
    """The kernel paths and threads this process runs with, for a checkpoint's metadata."""
    import torch

    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "mkl_cbwr": os.environ.get("MKL_CBWR", "auto"),
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "auto"), "threads": str(torch.get_num_threads()),
            **{name.lower(): os.environ.get(name, "unset") for name in JOB_ENVIRONMENT}}


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Read by the OpenMP, MKL and OpenBLAS runtimes under torch and numpy when they load."""


def limit_threads(threads: int) -> None:
    """``threads`` as the thread count of torch and of the libraries under it, set both ways: the variables, for
    libraries loaded later and for child processes; and for those already loaded, ``torch.set_num_threads`` and
    threadpoolctl's limits, which reach numpy's OpenBLAS (it reads its variable once, when it loads). A BLAS
    reduction split over another number of threads sums in another order, so this also keeps a job's numbers
    independent of the node's core count."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "numpy" in sys.modules:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)


def start_job(job) -> logging.Logger:
    """What every rule's script does first, given Snakemake's ``snakemake`` object: logging to the rule's log
    (:func:`setup_logging`), and the job's ``threads`` as the thread count of torch and of the libraries under it
    (:func:`limit_threads`; a script imports torch and numpy before it calls this).

    Snakemake sets the thread variables for ``shell`` rules only (``snakemake/shell.py``, 9.27.1). Unset, torch runs
    one thread per core in every job: two 1-thread jobs on two cores ran four busy threads, and on a 64-core node
    each job starts 64."""
    limit_threads(int(job.threads))
    return setup_logging(job.log[0] if job.log else None)


def setup_logging(log_path: str | Path | None) -> logging.Logger:
    """Send this process's logging, warnings and stderr (tqdm bars, tracebacks) to the rule's log."""
    logger = logging.getLogger("dawin")
    if log_path:
        stream = open(log_path, "w", buffering=1)  # noqa: SIM115 - lives as long as the job
        sys.stderr = stream
        logging.basicConfig(stream=stream, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
        logging.captureWarnings(True)
        sys.excepthook = lambda kind, error, tb: _report(kind, error, tb, log_path)
    return logger


def _report(kind, error, tb, log_path) -> None:
    """An uncaught error: its traceback into the rule's log, one line on the terminal (the message names the
    problem, the file and the fix)."""
    traceback.print_exception(kind, error, tb)
    print(f"Error: {error} [{kind.__name__}; traceback in {log_path}]", file=sys.__stderr__, flush=True)


def blocked_folder(paths: Iterable[str | Path]) -> str | None:
    """The first folder above ``paths`` (output patterns: the part before a wildcard counts) that exists as
    something other than a folder, where a job would have to create one (``results/demo/tables`` left as a file)."""
    seen: set[Path] = set()
    for path in paths:
        static = str(path).split("{", 1)[0]
        for parent in reversed(Path(static + "_").parents):  # "_": a static part ending in "/" is a folder too
            if parent in seen or str(parent) in (".", "/"):
                continue
            seen.add(parent)
            if parent.exists() and not parent.is_dir():
                return str(parent)
    return None


def _plain(obj):
    """numpy / torch values as plain JSON (arrays as lists, scalars as numbers)."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_json(path: str | Path, obj) -> None:
    """Written whole or not at all (a ``.partial`` name moved into place), as :func:`dawin.tensorio.save_tensors`."""
    tmp = Path(f"{path}.partial")
    try:
        tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=_plain) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())
