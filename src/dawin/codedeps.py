"""Which package files a workflow script runs: its transitive imports of ``dawin``, read from the source.

The workflow declares them as each rule's code inputs (``workflow/rules/common.smk``: ``code_of``), so a change
to any module a script reaches, however deep, reruns that rule and what follows, and nothing else. The graph
is read with :mod:`ast` (no module is executed, no torch import: it runs when Snakemake builds the DAG):

- ``import dawin.a.b``, ``from dawin.a import b`` (``b`` a submodule or a name), ``from . import x``,
  ``from ..a import y`` and imports inside functions (lazy imports count: the code runs when called);
- importing a module runs its packages' ``__init__.py`` files, so they are included;
- ``importlib.import_module`` and ``__import__`` with anything but a literal ``dawin`` name are refused
  (:class:`DynamicImportError`): a dependency the graph cannot see would leave results stale.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = "dawin"


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


def _dynamic(node: ast.Call) -> str | None:
    """The literal target of ``importlib.import_module("...")`` / ``__import__("...")``; raises if it is computed."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if name not in ("import_module", "__import__"):
        return None
    arg = node.args[0] if node.args else None
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    raise DynamicImportError(f"line {node.lineno}: {name}() with a computed module name")


@functools.lru_cache(maxsize=None)
def imported_names(root: Path, path: Path) -> frozenset[str]:
    """The dotted ``dawin`` names one file imports (modules, or ``module.name`` where a name may be a submodule)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    inside = path.resolve().is_relative_to(root.resolve())
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
                target = _dynamic(node)
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
