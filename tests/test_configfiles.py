"""Config files read strictly (dawin.configfiles): syntax errors and keys given twice named by file and line."""

import subprocess
import sys
from pathlib import Path

import pytest

from dawin.configfiles import ConfigFileError, check, read

REPO = Path(__file__).resolve().parents[1]


def test_a_key_given_twice_names_the_file_the_key_and_both_lines(tmp_path):
    """Issue 25, 5: `grid:` twice kept the last one silently (WiSE-FT then chosen from [0.5])."""
    path = tmp_path / "over.yaml"
    path.write_text("grid: [0.1, 0.2]\nseed: 1\ngrid: [0.5]\n")
    with pytest.raises(ConfigFileError, match=r"over\.yaml: key 'grid' is given twice in one mapping, on lines 1 and 3"):
        read(path)
    path.write_text("backbones:\n  tiny:\n    n_components: 2\n    architecture: x\n    n_components: 600\n")
    with pytest.raises(ConfigFileError, match="key 'n_components' is given twice in one mapping, on lines 3 and 5"):
        read(path)
    path.write_text("a: {x: 1}\nb: {x: 2}\nbase: &b {k: 1}\nderived: {<<: *b, k: 2}\n")  # one key per mapping
    assert read(path) == {"a": {"x": 1}, "b": {"x": 2}, "base": {"k": 1}, "derived": {"k": 2}}


@pytest.mark.parametrize("text, message", [
    ("grid: [0.5]\nmixture:\n\tn_restarts: 2\n", r"line 3, column 1: not valid YAML \(.*found character '\\t' that "
                                                  r"cannot start any token\); indent with spaces, not tabs"),
    ("grid: [0.5\nseed: 1\n", r"line 2, column 5: not valid YAML \(while parsing a flow sequence expected ',' or "
                              r"'\]', but got ':'\)"),
])
def test_a_yaml_syntax_error_names_the_file_the_line_and_the_reason(tmp_path, text, message):
    path = tmp_path / "over.yaml"
    path.write_text(text)
    with pytest.raises(ConfigFileError, match=r"over\.yaml, " + message):
        read(path)


def test_the_shipped_configs_read_strictly():
    check([REPO / "config/config.yaml", REPO / "config/paper.yaml", REPO / "tests/data/small.yaml"])


@pytest.mark.parametrize("text, message", [
    ("grid: [0.5]\nmixture:\n\tn_restarts: 2\n", "over.yaml, line 3, column 1: not valid YAML"),
    ("grid: [0.1]\ngrid: [0.5]\n", "over.yaml: key 'grid' is given twice in one mapping, on lines 1 and 2"),
])
def test_snakemake_names_a_bad_configfile_before_it_reads_it(tmp_path, text, message):
    """Issue 25, 10: Snakemake said "Config file is not valid JSON or YAML ... tab indentation", with no file or line;
    profiles/default reads the --configfile files strictly first."""
    (tmp_path / "over.yaml").write_text(text)
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
                          str(tmp_path), "-n", "--configfile", str(REPO / "config/config.yaml"),
                          str(tmp_path / "over.yaml")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 1 and "Traceback" not in res.stdout + res.stderr
    assert f"Error: {tmp_path}/{message}" in res.stderr
