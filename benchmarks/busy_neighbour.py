"""The demo's training step beside a busy process: libgomp's spin count and wait policy, alone and beside a busy loop.

A torch job on 2 threads whose idle OpenMP workers spin (torch's libgomp spins 300,000 iterations before it
sleeps) slows down many times over when one other process keeps a core busy: a spinning worker holds the core
the other thread's barrier waits for. ``OMP_WAIT_POLICY=PASSIVE`` makes idle workers sleep at once, and
``GOMP_SPINCOUNT`` shortens the spinning. libgomp reads both once, when it loads, so they must be in a job's
environment before torch is imported; the workflow sets the chosen one for every job
(``dawin.runtime.JOB_ENVIRONMENT``, applied in ``workflow/rules/common.smk``) and the tests for their processes
(``tests/conftest.py``).

Each measurement runs in a fresh process (the fastest of ``--rounds`` is shown): ``--steps`` steps of the demo's expert fine-tuning
(:func:`dawin.demo.train.finetune_expert` on the multi-task ViT, batch 32, 2 threads) under each setting, alone
and beside one busy single-threaded Python loop. Printed: the seconds of each and the ratios, all from this run.
Nothing else should run meanwhile.

    python benchmarks/busy_neighbour.py --steps 100 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

STEP = """
import time, torch
from dawin.demo.train import finetune_expert
from dawin.inputs.models import ImageClassifier, create_clip
torch.set_num_threads(2)
torch.manual_seed(0)
model = create_clip("dawin-tiny-vit")
head = torch.nn.functional.normalize(torch.randn(10, model.visual.output_dim), dim=-1)
clf = ImageClassifier.from_clip(model, "dawin-tiny-vit", head)
images, labels = torch.rand(320, 3, 32, 32), torch.randint(0, 10, (320,))
start = time.perf_counter()
finetune_expert(clf, images, labels, steps={steps}, batch_size=32, lr=1e-4, warmup=2, seed=0)
print(time.perf_counter() - start)
"""

BUSY = "while True:\n    pass\n"


SETTINGS = {"default": {}, "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
            **{f"GOMP_SPINCOUNT={n}": {"GOMP_SPINCOUNT": str(n)} for n in (1000, 10000, 100000)}}
"""The settings compared: libgomp's (torch's OpenMP runtime on Linux x86-64) wait policy and spin count."""


def timed(steps: int, setting: dict[str, str], busy: bool) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update({"OMP_NUM_THREADS": "2", "TQDM_DISABLE": "1", **setting})
    neighbour = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    try:
        out = subprocess.run([sys.executable, "-c", STEP.format(steps=steps)], env=env, check=True,
                             capture_output=True, text=True).stdout
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    return float(out.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each setting; the fastest is shown")
    args = parser.parse_args()
    print(f"{args.steps} steps of finetune_expert (dawin-tiny-vit, batch 32, 2 threads), {os.cpu_count()} cores")
    t = {(name, busy): min(timed(args.steps, env, busy) for _ in range(args.rounds))
         for name, env in SETTINGS.items() for busy in (False, True)}
    base_alone, base_busy = t["default", False], t["default", True]
    print(f"{'setting':26s} {'alone':>8s} {'busy':>8s}  {'alone/default':>13s} {'busy/default':>12s}")
    for name in SETTINGS:
        alone, busy = t[name, False], t[name, True]
        print(f"{name:26s} {alone:7.2f}s {busy:7.2f}s  {alone / base_alone:13.2f} {busy / base_busy:12.2f}")


if __name__ == "__main__":
    main()
