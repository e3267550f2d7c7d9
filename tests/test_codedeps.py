"""Rule code inputs read from the scripts' imports (dawin.codedeps): transitive, lazy and relative imports,
package __init__ files, a registry importing its package's modules by name, refusal of other imports by computed
names, and the code stamps (a digest of each module's code without its docstrings and comments)."""

import os
from pathlib import Path

import pytest

from dawin.codedeps import DynamicImportError, code_digest, code_stamps, imported_names, package_files

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


def test_a_package_init_importing_its_modules_by_computed_name_reaches_all_of_them(tmp_path):
    """dawin.merging's registry idiom: ``import_module(f"{__name__}.{name}")`` in the package's __init__.py may
    import any module of the package, so every one counts; the same call in a plain module is refused above."""
    root = tmp_path / "src/dawin"
    write(root, {"__init__.py": "", "other.py": "",
                 "reg/__init__.py": "import importlib\nM = {n: importlib.import_module(f'{__name__}.{n}') for n in 'ab'}\n",
                 "reg/a.py": "", "reg/b.py": "from ..other import x\n", "reg/sub/__init__.py": "", "reg/sub/c.py": ""})
    script = tmp_path / "s.py"
    script.write_text("import dawin.reg\n")
    assert names(root, package_files(script, root)) == [
        "__init__.py", "other.py", "reg/__init__.py", "reg/a.py", "reg/b.py", "reg/sub/__init__.py", "reg/sub/c.py"]


def test_the_workflow_scripts_reach_the_modules_they_run():
    scripts = REPO / "workflow/scripts"
    deps = {s.name: set(names(PKG, package_files(s, PKG))) for s in scripts.glob("*.py")}
    # the modules hand-kept lists missed: tensor I/O and the runtime everywhere, logits' loader in merged_eval
    assert all("runtime.py" in d for d in deps.values())
    assert all("tensorio.py" in deps[s] for s in ("cache_logits.py", "merged_eval.py", "coefficients.py", "table.py"))
    assert "inference/logits.py" in deps["merged_eval.py"]
    assert {"inference/evaluation.py", "inputs/models.py"} <= deps["multitask_logits.py"]
    # the merging registry's methods, AdaMerging and OPCM included (dawin.merging imports each entry's module by
    # name: every module of the package counts)
    assert {"merging/__init__.py", "merging/adamerging.py", "merging/opcm.py"} <= deps["multitask_pool.py"]
    assert "merging/adamerging.py" not in deps["cache_logits.py"]
    assert "dawin.merging.*" in imported_names(PKG, PKG / "merging/__init__.py")
    # the torch-free decoding job runs no model code: decode imports neither pixels (which imports it) nor models
    assert deps["decode_images.py"] == {"__init__.py", "identity.py", "inputs/__init__.py", "inputs/architectures.py",
                                        "inputs/datasets.py", "inputs/decode.py", "inputs/openclip.py", "provenance.py",
                                        "runtime.py", "tensorio.py"}


MODULE = '''"""A module."""
import math

SCALE = 2.0
"""The scale."""


def f(x):
    """Twice x."""
    return SCALE * math.sqrt(x)
'''


@pytest.mark.parametrize("edit, same", [
    (lambda t: t + "# a comment\n\n", True),
    (lambda t: t.replace('"""Twice x."""', '"""Twice x, a docstring\n    over two lines."""'), True),
    (lambda t: t.replace('"""The scale."""', '"""The scale (an attribute\'s string)."""'), True),
    (lambda t: t.replace('"""A module."""\n', ""), True),
    (lambda t: t.replace("return SCALE * math.sqrt(x)", "return (SCALE\n            * math.sqrt(x))  # reflowed"), True),
    (lambda t: t.replace("SCALE = 2.0", "SCALE = 3.0"), False),
    (lambda t: t.replace("math.sqrt(x)", "math.sqrt(x + 0)"), False),
    (lambda t: t.replace("def f(x):", "def f(x, y=1):"), False),
])
def test_the_code_digest_ignores_comments_and_docstrings_only(tmp_path, edit, same):
    path = tmp_path / "m.py"
    path.write_text(MODULE)
    before = code_digest(path)
    path.write_text(edit(MODULE))
    os.utime(path, ns=(0, 10**18))  # another version for the cache, whatever the clock's resolution
    assert (code_digest(path) == before) == same


def test_a_module_reading_its_docstrings_keeps_them_in_the_digest(tmp_path):
    path = tmp_path / "m.py"
    path.write_text('"""Usage: m.py."""\nHELP = __doc__\n')
    before = code_digest(path)
    path.write_text('"""Usage: m.py [-v]."""\nHELP = __doc__\n')
    os.utime(path, ns=(0, 10**18))
    assert code_digest(path) != before


def test_stamps_change_with_the_code_and_keep_their_time_otherwise(tmp_path):
    root = tmp_path / "src/dawin"
    write(root, {"__init__.py": "", "m.py": MODULE})
    module = root / "m.py"
    os.utime(module, ns=(0, 10**18))
    script = tmp_path / "s.py"
    script.write_text("from dawin.m import f\n")
    stamps = tmp_path / "wd/.code-stamps"
    assert code_stamps(script, root, stamps, write=False) == [stamps / "dawin/__init__.py.sha256",
                                                              stamps / "dawin/m.py.sha256"]
    assert not stamps.exists()  # a job's own Snakemake process only names them
    stamp = code_stamps(script, root, stamps)[1]
    assert stamp.read_text() == code_digest(module) and stamp.stat().st_mtime_ns == 10**18  # dated as its module
    module.write_text(MODULE + "# an edit\n")
    os.utime(module, ns=(0, 2 * 10**18))
    assert code_stamps(script, root, stamps)[1].stat().st_mtime_ns == 10**18  # a comment: the stamp is untouched
    module.write_text(MODULE.replace("SCALE = 2.0", "SCALE = 3.0"))
    os.utime(module, ns=(0, 3 * 10**18))
    code_stamps(script, root, stamps)
    assert stamp.read_text() == code_digest(module) != code_digest(root / "__init__.py")
    assert 10**18 < stamp.stat().st_mtime_ns < 2 * 10**18  # rewritten now: newer than every output built before
    assert sorted(p.name for p in stamp.parent.iterdir()) == ["__init__.py.sha256", "m.py.sha256"]  # no temporary left
