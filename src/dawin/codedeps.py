"""Which package files a workflow script runs: its transitive imports of ``dawin``, read from the source.

The workflow declares them as each rule's code inputs (``workflow/rules/common.smk``: ``code_of``), so a change
to any module a script reaches, however deep, reruns that rule and what follows, and nothing else. The graph
is read with :mod:`ast` (no module is executed, no torch import: it runs when Snakemake builds the DAG):

- ``import dawin.a.b``, ``from dawin.a import b`` (``b`` a submodule or a name), ``from . import x``,
  ``from ..a import y`` and imports inside functions (lazy imports count: the code runs when called);
- importing a module runs its packages' ``__init__.py`` files, so they are included;
- ``importlib.import_module(f"{__name__}.{name}")`` in a package's ``__init__.py`` (a registry importing its
  entries' modules by name) may import any module of that package: all of them count;
- ``importlib.import_module`` and ``__import__`` with any other computed name are refused
  (:class:`DynamicImportError`): a dependency the graph cannot see would leave results stale.

The rules do not take the module files themselves as inputs but a stamp of each (:func:`code_stamps`): a small
file holding the digest of the module's code (:func:`code_digest`: its syntax tree without docstrings; comments,
blank lines and formatting are not in the tree). Snakemake reruns a job when an input is newer than its outputs,
and the stamp is rewritten only when the digest changes, so a comment or docstring edit reruns nothing, and an
edit of what the code does reruns exactly the rules whose scripts reach the module.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
from pathlib import Path

PACKAGE = "dawin"
SUBMODULES = "*"
"""The last part of the name that stands for every module of a package (``dawin.merging.*``)."""


class DynamicImportError(ValueError):
    """A package module imports by a computed name: its dependencies cannot be read from the source."""


def _module_file(root: Path, dotted: str) -> Path | None:
    """``dawin.a.b`` -> ``<root>/a/b.py`` or ``<root>/a/b/__init__.py`` (``root`` is the package folder)."""
    parts = dotted.split(".")[1:]
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py") if parts else None, base / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _dotted(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([PACKAGE, *parts])


def _resolve(root: Path, path: Path, level: int, module: str | None) -> str:
    """The absolute name of a relative import ``from <level dots><module> import ...`` in ``path``."""
    here = _dotted(root, path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    base = package[: len(package) - (level - 1)] if level > 1 else package
    return ".".join([*base, *([module] if module else [])])


def _submodule_of_name(arg: ast.expr | None) -> bool:
    """``f"{__name__}.{...}"``: a submodule of the module that runs it."""
    return (isinstance(arg, ast.JoinedStr) and len(arg.values) >= 2
            and isinstance(arg.values[0], ast.FormattedValue) and isinstance(arg.values[0].value, ast.Name)
            and arg.values[0].value.id == "__name__" and isinstance(arg.values[1], ast.Constant)
            and str(arg.values[1].value).startswith("."))


def _dynamic(node: ast.Call, package: str | None) -> str | None:
    """The literal target of ``importlib.import_module("...")`` / ``__import__("...")``, or ``<package>.*`` for
    ``import_module(f"{__name__}.{...}")`` in the ``__init__.py`` of ``package``; raises if it is otherwise
    computed."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in ("import_module", "__import__"):
        return None
    arg = node.args[0] if node.args else None
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if package and name == "import_module" and _submodule_of_name(arg):
        return f"{package}.{SUBMODULES}"
    raise DynamicImportError(f"line {node.lineno}: {name}() with a computed module name")


def _version(path: Path) -> tuple[int, int]:
    """What the caches below are keyed by besides the path: a file edited since is read again."""
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def _tree(path: Path) -> ast.Module:
    """The syntax tree of one file without its strings alone, parsed once per version (for its imports and its
    digest)."""
    return _parse(path, _version(path))


def _is_string(statement: ast.stmt) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str))


@functools.lru_cache(maxsize=None)
def _parse(path: Path, version: tuple[int, int]) -> ast.Module:
    """The tree without the statements that are a string alone (docstrings, and the strings that document an
    attribute): they do nothing, unless the file reads ``__doc__`` (then they stay)."""
    text = path.read_bytes()
    tree = ast.parse(text, filename=str(path))
    if b"__doc__" not in text:
        for node in ast.walk(tree):
            for field in ("body", "orelse", "finalbody"):
                statements = getattr(node, field, None)
                if isinstance(statements, list):
                    statements[:] = [s for s in statements if not _is_string(s)]
    return tree


@functools.lru_cache(maxsize=None)
def imported_names(root: Path, path: Path) -> frozenset[str]:
    """The dotted ``dawin`` names one file imports (modules, or ``module.name`` where a name may be a submodule)."""
    tree = _tree(path)
    inside = path.resolve().is_relative_to(root.resolve())
    package = _dotted(root, path) if inside and path.name == "__init__.py" else None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(root, path, node.level, node.module) if node.level and inside else node.module or ""
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
        elif isinstance(node, ast.Call):
            try:
                target = _dynamic(node, package)
            except DynamicImportError as err:
                if inside:
                    raise DynamicImportError(f"{path}: {err}; import the module by name so that the workflow "
                                             "sees the dependency") from None
                continue
            if target:
                names.add(target)
    return frozenset(n for n in names if n == PACKAGE or n.startswith(PACKAGE + "."))


@functools.lru_cache(maxsize=None)
def _files_of(root: Path, dotted: str) -> tuple[Path, ...]:
    """The files importing ``dotted`` runs: the module and its packages' ``__init__.py`` (nothing if it is a
    name rather than a module)."""
    parts = dotted.split(".")
    if parts[-1] == SUBMODULES:  # every module of the package, its subpackages' included
        init = _module_file(root, ".".join(parts[:-1]))
        return (*_files_of(root, ".".join(parts[:-1])), *sorted(init.parent.rglob("*.py")))
    files = [_module_file(root, ".".join(parts[:i])) for i in range(1, len(parts) + 1)]
    if files[-1] is None:
        return ()
    return tuple(f for f in files if f is not None)


def package_files(script: str | Path, root: str | Path) -> tuple[Path, ...]:
    """Every file of the package under ``root`` that running ``script`` may execute, sorted."""
    return _package_files(Path(script), Path(root))


@functools.lru_cache(maxsize=None)  # several rules run one script: the workflow asks once per rule at parse time
def _package_files(script: Path, root: Path) -> tuple[Path, ...]:
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        for name in imported_names(root, path):
            for f in _files_of(root, name):
                if f not in seen:
                    seen.add(f)
                    todo.append(f)
    return tuple(sorted(seen))


def code_digest(path: Path) -> str:
    """sha256 of the module's syntax tree without docstrings: what running it does, not how its text reads.

    Comments, blank lines, formatting and line numbers are not in the tree (``ast.dump`` leaves positions out),
    and the statements that are a string alone are dropped from it (:func:`_parse`). A module that mentions
    ``__doc__`` keeps them: their text may be part of what it does. The digest depends on the Python version's
    ``ast`` (a new Python may rerun every rule once).
    """
    return _digest(path, _version(path))


@functools.lru_cache(maxsize=None)
def _digest(path: Path, version: tuple[int, int]) -> str:
    return hashlib.sha256(ast.dump(_parse(path, version)).encode()).hexdigest()


@functools.lru_cache(maxsize=None)  # several scripts reach a module: its stamp is checked once per version
def _stamp(module: Path, root: Path, stamps: Path, write: bool, version: tuple[int, int]) -> Path:
    stamp = stamps / module.relative_to(root.parent).with_name(module.name + ".sha256")
    if not write:
        return stamp
    digest = _digest(module, version)
    try:
        if stamp.read_text() == digest:
            return stamp  # unchanged code: its time stays, nothing reruns
        made = None  # the code changed: now
    except FileNotFoundError:
        made = version[0]  # a first stamp (or one deleted) dates from its module: no rerun of its own
    stamp.parent.mkdir(parents=True, exist_ok=True)
    tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")
    tmp.write_text(digest)
    if made is not None:
        os.utime(tmp, ns=(made, made))
    os.replace(tmp, stamp)  # whole: a concurrent reader sees the old digest or the new one
    return stamp


def code_stamps(script: str | Path, root: str | Path, stamps: str | Path, write: bool = True) -> list[Path]:
    """The code stamps of the package files ``script`` runs (:func:`package_files`): ``<stamps>/dawin/<module
    path>.sha256``, each holding its module's :func:`code_digest`. With ``write``, a stamp whose digest is not the
    module's is rewritten (dated now) and a missing one made (dated as its module); others keep their time.
    ``write`` is for the one process that plans the jobs: the jobs' own Snakemake processes only name them."""
    root = Path(root)
    return [_stamp(f, root, Path(stamps), write, _version(f)) for f in package_files(script, root)]
