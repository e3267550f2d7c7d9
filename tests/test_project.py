"""Project-level invariants: pins agree everywhere, the tiny architecture is registered."""

import os
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _requirements() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_conda_env_pins_match_requirements():
    env = yaml.safe_load((REPO / "envs/dawin.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_pins = dict(p.lower().split("==") for p in pip)
    req = _requirements()
    assert conda_pins["torch"] == "2.14.1" and conda_pins["torchvision"] == "0.29.1"
    for name, version in conda_pins.items():
        assert req.get(name) == version, f"{name}: envs/dawin.yaml pins {version}, requirements.txt {req.get(name)}"


def test_tiny_architecture_is_registered_with_open_clip():
    import open_clip

    import dawin.inputs.models  # noqa: F401 - registers the configs

    assert "dawin-tiny-rn" in open_clip.list_models()


def _post_deploy(tmp_path, **env):
    """Run envs/dawin.post-deploy.sh with a stand-in `python` that records the pip command it is given."""
    import subprocess

    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "called"}\n')
    fake.chmod(0o755)
    run = subprocess.run(["bash", str(REPO / "envs/dawin.post-deploy.sh")], capture_output=True, text=True,
                         env={"PATH": f"{fake.parent}:{os.environ['PATH']}", **env})
    called = tmp_path / "called"
    return run, called.read_text().strip() if called.exists() else None


def test_conda_post_deploy_installs_the_checkout_or_the_named_release(tmp_path):
    """--use-conda: the environment gets the package from the checkout (editable) or a pip requirement."""
    run, called = _post_deploy(tmp_path, DAWIN_SOURCE=str(REPO))
    assert run.returncode == 0 and called == f"-m pip install --no-deps -e {REPO}"
    (tmp_path / "bin" / "python").unlink(), (tmp_path / "bin").rmdir()
    run, called = _post_deploy(tmp_path, DAWIN_SOURCE="dawin @ git+https://example.org/dawin@v1")
    assert run.returncode == 0 and called == "-m pip install --no-deps dawin @ git+https://example.org/dawin@v1"


def test_conda_post_deploy_without_a_source_names_the_variable(tmp_path):
    run, called = _post_deploy(tmp_path)
    assert run.returncode == 1 and called is None
    assert "DAWIN_SOURCE is not set" in run.stderr and "git+https://" in run.stderr



def test_every_documented_snakemake_command_parses_as_meant():
    """`--configfile` takes every following word as a file: a target written after it would be read as a
    config file. Each `snakemake ... --configfile` command of the docs, parsed by Snakemake's own parser,
    must name only YAML files as config files."""
    import re
    import shlex

    from snakemake.cli import get_argument_parser

    parser, checked = get_argument_parser(), 0
    docs = [REPO / d for d in ("README.md", "config/README.md", "workflow/scripts/README.md")]
    for doc in docs + sorted((REPO / "docs").glob("*.md")):
        for line in doc.read_text().splitlines():
            for command in re.findall(r"(?:\.venv/bin/)?snakemake [^`#\n]*--configfile[^`#\n]*", line):
                argv = [w for w in shlex.split(command.replace("...", ""))[1:] if "<" not in w]
                args = parser.parse_args(argv)
                assert all(str(f).endswith((".yaml", ".yml")) for f in args.configfile), (doc.name, command)
                checked += 1
    assert checked >= 14



def _anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but - and _ dropped, spaces to -, repeats numbered."""
    import re

    found, seen = set(), {}
    text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.S | re.M)
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return found


def test_every_relative_link_of_the_readme_and_docs_resolves():
    """The README is a map into docs/: each relative link (and its #anchor) names a file and heading that exist."""
    import re

    checked, broken = 0, []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.S | re.M)
        for link in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", link):
                continue
            path, _, anchor = link.partition("#")
            target = (doc.parent / path).resolve() if path else doc
            checked += 1
            if not target.exists() or (anchor and target.suffix == ".md" and anchor not in _anchors(target)):
                broken.append(f"{doc.relative_to(REPO)}: {link}")
    assert not broken and checked >= 20, broken


TRAIN_BYTES = """
import hashlib, torch
torch.set_num_threads(1)
from dawin.demo import train, world
clip = train.pretrain_clip(train.seeded_clip("dawin-tiny-rn", 0), "dawin-tiny-rn", world.SHAPES,
                           world.PRETRAIN_DOMAINS, seed=0, n_per_domain=12, epochs=1, batch_size=32, lr=1e-3)
print(hashlib.sha256(b"".join(v.contiguous().numpy().tobytes() for _, v in sorted(clip.state_dict().items()))).hexdigest())
"""


def test_each_cpu_kernel_knob_changes_the_demos_training_bytes():
    """Why the demo pins CPU_KERNELS: a short pre-training run under the pins, then with each knob moved to
    another instruction set (as on another processor), gives other bytes every time; the same setting twice
    gives the same bytes."""
    import subprocess
    import sys

    from dawin.runtime import CPU_KERNELS

    def digest(**env):
        env = {**os.environ, **CPU_KERNELS, "OMP_NUM_THREADS": "1", **env}
        out = subprocess.run([sys.executable, "-c", TRAIN_BYTES], env=env, capture_output=True, text=True, check=True)
        return out.stdout.split()[-1]

    pinned = digest()
    assert digest() == pinned
    moved = [digest(ATEN_CPU_CAPABILITY="default"), digest(MKL_CBWR="COMPATIBLE"), digest(ONEDNN_MAX_CPU_ISA="SSE41")]
    assert pinned not in moved


def test_a_failing_job_prints_one_line_and_keeps_its_traceback_in_the_log(tmp_path):
    import subprocess
    import sys

    log = tmp_path / "rule.log"
    script = ("from dawin.runtime import setup_logging\n"
              f"setup_logging({str(log)!r})\n"
              "def deep():\n    raise ValueError('data/x.png: cannot be decoded; delete data and rerun')\n"
              "deep()\n")
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"Error: data/x.png: cannot be decoded; delete data and rerun [ValueError; traceback in {log}]"]
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "in deep" in text


@pytest.mark.parametrize("torch_first", [True, False])
def test_a_job_runs_torch_and_blas_on_its_own_threads(tmp_path, torch_first):
    """runtime.start_job gives torch and numpy's BLAS the rule's `threads` (Snakemake sets the thread variables for
    shell rules only), whether they were imported before it or are imported after. Unpinned, both would run one
    thread per core (2 here)."""
    import subprocess
    import sys

    script = ("import os, types\n" + ("import torch, numpy\n" if torch_first else "") +
              "from dawin.runtime import start_job\n"
              f"start_job(types.SimpleNamespace(threads=1, log=[{str(tmp_path / 'rule.log')!r}]))\n"
              "import torch, numpy, threadpoolctl\n"
              "blas = [i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas']\n"
              "print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'], *blas)\n")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1", "1"]


def test_every_rule_script_starts_with_start_job():
    """A script that skipped runtime.start_job would run torch on every core of the node and log to the terminal."""
    scripts = sorted((REPO / "workflow/scripts").glob("*.py"))
    assert len(scripts) > 20
    missing = [s.name for s in scripts if "= start_job(snakemake)" not in s.read_text()]
    assert missing == []
