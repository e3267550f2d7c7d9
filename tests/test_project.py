"""Project-level invariants: pins agree everywhere, the tiny architecture is registered."""

from pathlib import Path

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

    import dawin.models  # noqa: F401 - registers the configs

    assert "dawin-tiny-rn" in open_clip.list_models()
