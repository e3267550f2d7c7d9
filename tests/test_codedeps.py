"""Rule code inputs read from the scripts' imports (dawin.codedeps): transitive, lazy and relative imports,
package __init__ files, and refusal of imports by computed names."""

from pathlib import Path

import pytest

from dawin.codedeps import DynamicImportError, imported_names, package_files

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "src/dawin"


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def names(root, files):
    return [str(f.relative_to(root)) for f in files]


def test_transitive_relative_and_lazy_imports(tmp_path):
    root = tmp_path / "src/dawin"
    write(root, {
        "__init__.py": "",
        "a.py": "from .b import thing\nimport numpy\n",
        "b.py": "thing = 1\ndef f():\n    from .sub import deep  # lazy: runs when called\n    return deep\n",
        "sub/__init__.py": "from . import deep\n",
        "sub/deep.py": "import importlib\nx = importlib.import_module('dawin.c')\n",
        "c.py": "",
        "unused.py": "",
        "rel/__init__.py": "",
        "rel/up.py": "from .. import a\nfrom ..c import name_not_module\n",
    })
    script = tmp_path / "script.py"
    script.write_text("from dawin.a import thing\nfrom dawin import rel\nimport dawin.rel.up\n")
    assert names(root, package_files(script, root)) == [
        "__init__.py", "a.py", "b.py", "c.py", "rel/__init__.py", "rel/up.py", "sub/__init__.py", "sub/deep.py"]
    (tmp_path / "other.py").write_text("import os\n")
    assert package_files(tmp_path / "other.py", root) == ()


def test_import_by_computed_name_is_refused(tmp_path):
    root = tmp_path / "src/dawin"
    write(root, {"__init__.py": "", "reg.py": "import importlib\n"
                 "def get(m):\n    return importlib.import_module(f'{__name__}.{m}')\n"})
    script = tmp_path / "s.py"
    script.write_text("from dawin.reg import get\n")
    with pytest.raises(DynamicImportError, match=r"reg\.py: line 3: import_module\(\) with a computed module name"):
        package_files(script, root)


def test_the_workflow_scripts_reach_the_modules_they_run():
    scripts = REPO / "workflow/scripts"
    deps = {s.name: set(names(PKG, package_files(s, PKG))) for s in scripts.glob("*.py")}
    # the modules hand-kept lists missed: tensor I/O and the runtime everywhere, logits' loader in merged_eval
    assert all("runtime.py" in d for d in deps.values())
    assert all("tensorio.py" in deps[s] for s in ("cache_logits.py", "merged_eval.py", "coefficients.py", "table.py"))
    assert "inference/logits.py" in deps["merged_eval.py"]
    assert {"inference/evaluation.py", "inputs/models.py"} <= deps["multitask_logits.py"]
    # the merging registry's methods, AdaMerging and OPCM included (no import by computed name is left)
    assert {"merging/__init__.py", "merging/adamerging.py", "merging/opcm.py"} <= deps["multitask_pool.py"]
    assert "merging/adamerging.py" not in deps["cache_logits.py"]
    assert imported_names(PKG, PKG / "merging/__init__.py") >= {"dawin.merging.adamerging", "dawin.merging.opcm"}
