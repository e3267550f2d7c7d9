"""The config files a run is given, read strictly: a YAML syntax error or a key given twice is named by file and line.

Snakemake reads ``--configfile`` files with PyYAML, where a key given twice in one mapping silently keeps its last
value (``grid:`` twice: WiSE-FT chosen from the second list alone), and reports a syntax error as "Config file is
not valid JSON or YAML" without the file or the line. :func:`check` reads each file first with a loader that
refuses duplicate keys (``profiles/default/config.yaml`` calls it before Snakemake reads the files, and
``workflow/rules/common.smk`` again for the files the Snakefile itself loads).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import yaml


class ConfigFileError(ValueError):
    """A config file that is not valid YAML, or that gives one key twice."""


class _StrictLoader(yaml.SafeLoader):
    path = "<config>"


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:  # the mapping's own keys: a merged one (<<) may be given again, to override it
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigFileError(f"{loader.path}: key {key!r} is given twice in one mapping, on lines {seen[key]} "
                                  f"and {line}; YAML would silently keep the second. Delete one of them")
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read(path: str | Path):
    """The content of the YAML (or JSON) file ``path``; :class:`ConfigFileError` names the file, the line and the
    parser's reason for a syntax error, and the key and both lines for a key given twice."""
    text = Path(path).read_text()
    loader = _StrictLoader(text)
    loader.path = str(path)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = " ".join(filter(None, [error.context, error.problem]))
        lines = text.splitlines()
        tab = mark is not None and mark.line < len(lines) and "\t" in lines[mark.line]
        hint = "; indent with spaces, not tabs" if tab else ""
        raise ConfigFileError(f"{path}{where}: not valid YAML ({reason}){hint}; fix the file") from None
    except yaml.YAMLError as error:
        raise ConfigFileError(f"{path}: not valid YAML ({error}); fix the file") from None
    finally:
        loader.dispose()


def check(paths: Iterable[str | Path]) -> None:
    """:func:`read` each of ``paths`` that exists (a missing file is reported by the caller, by name)."""
    for path in paths:
        if Path(path).is_file():
            read(path)
