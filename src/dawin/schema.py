"""The config's JSON schema (``workflow/schemas/config.schema.yaml``) with the names the registries define.

The YAML describes every key; where a value must be a name that a registry of the package defines, it refers to
one of its ``$defs``, whose ``enum`` is filled in here: the merging methods (:data:`dawin.registry.MERGING_METHODS`)
the targets whose backbones ``targets`` chooses (:func:`dawin.catalog.targets`, the robust fine-tuning ones), and
the ``variant`` values of a method that has them (``MergingMethod.variants``).
A method added to the registry is a valid config key at once. Importable without torch: the workflow validates
its config with it before it builds the DAG.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import yaml

from . import catalog
from .registry import MERGING_METHODS


class ConfigError(ValueError):
    """A config that does not follow the schema: the key, what is wrong, and where the keys are described."""


def registry_names() -> dict[str, list[str]]:
    """The ``enum`` of each registry-defined name of the schema (its ``$defs``)."""
    return {"merging_method": list(MERGING_METHODS),
            "target": ["default", *catalog.targets("table", multitask=False), *catalog.targets("fig", multitask=False)]}


def load(path: str | Path) -> dict:
    """The schema at ``path`` with the registries' names as the ``enum`` of its ``$defs``."""
    schema = yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: faster
    for name, values in registry_names().items():
        schema["$defs"][name]["enum"] = values
    schema["properties"]["multitask"]["properties"]["methods"]["properties"] = {
        name: {"type": "object", "properties": {"variant": {"enum": list(method.variants)}}}
        for name, method in MERGING_METHODS.items() if method.variants}  # e.g. Fisher's: upstream's first
    return schema


def validate(config: Mapping, path: str | Path, shown: str | None = None) -> None:
    """Raise :class:`ConfigError` naming the key and the problem when ``config`` does not follow the schema at
    ``path`` (named ``shown`` in the message: Snakemake reads it from a cached copy)."""
    import jsonschema  # Snakemake's own dependency (snakemake.utils.validate)

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(load(path)).iter_errors(config))
    if error is not None:
        key = ".".join(map(str, error.absolute_path)) or "(top level)"
        raise ConfigError(f"config {key}: {error.message}. Fix the key or its value; the keys and the values each "
                          f"takes are in {shown or path} (described in config/README.md)")
