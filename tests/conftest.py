import os

from dawin.runtime import JOB_ENVIRONMENT

for _name, _value in JOB_ENVIRONMENT.items():  # before torch loads libgomp, which reads them once
    os.environ.setdefault(_name, _value)

import pytest  # noqa: E402
import torch  # noqa: E402

from dawin.inputs import models  # noqa: E402
from dawin.runtime import limit_threads  # noqa: E402


LONGEST = ("test_workflow.py", "test_rehearsal.py")
"""The two longest files (`.ci/run` at 2b67d6d, side by side: the rehearsal about 9 minutes, the whole-DAG run
with the tests on it about 8)."""


def pytest_collection_modifyitems(items):
    """The longest files first, the rest in file order: under ``-n`` (pytest-xdist, ``--dist loadfile`` in
    pyproject.toml) each file runs on one worker, so the two longest start at once on workers of their own and
    the short files fill in behind them, instead of one long file starting after everything else."""
    items.sort(key=lambda item: LONGEST.index(item.path.name) if item.path.name in LONGEST else len(LONGEST))


def pytest_configure(config):
    """Each pytest-xdist worker runs torch on its share of this machine's cores (all of them without ``-n``), in
    the worker and its subprocesses, and its Snakemake runs may use every core but give no job more threads than
    that share (``DAWIN_TEST_SNAKEMAKE_CORES``: ``--cores`` and ``--max-threads``). A multi-threaded torch process
    among more runnable threads than cores slows down many times over (a test of 2.4 s took 17.8 s beside two busy
    single-threaded processes; single-threaded, 2.0 s alone and 2.8 s beside them), and so did the runs under
    ``-n auto`` whose jobs kept two threads (README, "Tests"); single-threaded jobs on every core share them."""
    cores = os.cpu_count() or 1
    share = max(1, cores // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))  # set by xdist before this hook
    os.environ["DAWIN_TEST_SNAKEMAKE_CORES"] = f"--cores {cores} --max-threads {share}"
    limit_threads(share)  # torch, numpy's OpenBLAS (loaded already: one thread per core) and the subprocesses


@pytest.fixture(scope="session")
def tiny_clip():
    torch.manual_seed(0)
    return models.create_clip("dawin-tiny-rn")


@pytest.fixture(scope="session")
def tiny_pair(tiny_clip):
    """A zero-shot-like and a 'fine-tuned' classifier of the tiny architecture with different weights."""
    torch.manual_seed(1)
    w = torch.randn(10, 64)
    m0 = models.ImageClassifier.from_clip(tiny_clip, "dawin-tiny-rn", w)
    m1 = models.ImageClassifier.from_clip(models.create_clip("dawin-tiny-rn"), "dawin-tiny-rn", torch.randn(10, 64))
    with torch.no_grad():
        m1.head.bias.normal_()
    return m0.eval(), m1.eval()
