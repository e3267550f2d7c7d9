"""What the workflow computes, by name: one registry per idea, importable without torch.

The Snakefile reads it when it builds the DAG, and tables and figures read it without loading a model;
everything else is derived from it (the coefficient and merged-evaluation jobs and what each target needs,
the config schema's method names (:mod:`dawin.schema`), method keys and labels, which merging methods read which
data, Table 6's rows).
The functions live elsewhere, keyed by the same names, and check themselves against this module when
imported (coefficient kinds in :mod:`dawin.method.variants`), or are found from it (merging methods:
:mod:`dawin.merging` imports each entry's module by name).

Adding a coefficient kind or a merging method: the checklists in the README ("Extending"), and
:data:`MERGING_METHODS`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Kind:
    """A per-sample coefficient kind (its function: ``dawin.method.variants.KIND_FUNCTIONS[name]``)."""

    description: str
    label: str | None = None  # the table label of the kind with a mixture, where the paper shows it
    group: str = ""  # "table_d": Table D's alternatives; "pseudo_label": Figure 5's losses
    needs_average: bool = False  # reads the logits of the weight average theta(0.5)
    # the temperatures its entropies use: "fitted" on the ID held-out split, or "authors": the ones naver-ai/dawin
    # hard-codes per backbone (config backbones.<b>.authors_temperatures; only backbones that have them)
    temperatures: str = "fitted"


KINDS: dict[str, Kind] = {
    "entropy": Kind("Eq. 2 on calibrated entropies (Eq. 1 with the offset adjustment off): DaWin"),
    "entropy_no_offset": Kind("Eq. 1 on calibrated entropies (Table A)"),
    "entropy_uncalibrated": Kind("as entropy with T = 1 (Table E)"),
    "entropy_authors_temperatures": Kind("as entropy with the authors' temperatures (Table E)",
                                         temperatures="authors"),
    "cross_entropy": Kind("Eq. 1 on the true label's cross-entropies: the sample-wise oracle (Table 1)"),
    "uniform": Kind("U(0, 1) draws", "U(0,1)", "table_d"),
    "normal_0.5_0.2": Kind("N(0.5, 0.2^2) draws, clipped", "N(0.5, 0.2^2)", "table_d"),
    "normal_0.8_0.1": Kind("N(0.8, 0.1^2) draws, clipped", "N(0.8, 0.1^2)", "table_d"),
    "max_logit": Kind("ratio of the models' shifted max logits", "Max logit ratio", "table_d"),
    "confidence_diff": Kind("exp-ratio of the top-2 confidence differences", "Confidence diff. ratio", "table_d"),
    "confidence": Kind("exp-ratio of the confidences", "Confidence ratio", "table_d"),
    "pl_ensemble_soft": Kind("soft pseudo labels of the output ensemble (Figure 5)", group="pseudo_label"),
    "pl_ensemble_hard": Kind("hard pseudo labels of the output ensemble (Figure 5)", group="pseudo_label"),
    "pl_average_soft": Kind("soft pseudo labels of the weight average (Figure 5)", group="pseudo_label",
                            needs_average=True),
    "pl_average_hard": Kind("hard pseudo labels of the weight average (Figure 5)", group="pseudo_label",
                            needs_average=True),
}


def kinds_in(group: str) -> list[str]:
    """The kinds of a group, in registry order."""
    return [k for k, v in KINDS.items() if v.group == group]


NEEDS_AVERAGE = frozenset(k for k, v in KINDS.items() if v.needs_average)
AUTHORS_TEMPERATURES = frozenset(k for k, v in KINDS.items() if v.temperatures == "authors")

_ASSIGNMENT = re.compile(r"^(per_sample|mixture|batch(?P<batch>[1-9]\d*)|scaled(?P<scale>\d+(\.\d+)?))$")


def parse_assignment(name: str) -> dict:
    """``per_sample`` (exact), ``mixture`` (each sample takes its cluster's mean), ``batch<b>`` (a mixture
    per batch of b samples, Table B) or ``scaled<a>`` (the mixture's coefficients times a, Figure A)."""
    m = _ASSIGNMENT.match(name)
    if not m:
        raise ValueError(f"unknown assignment {name!r}: per_sample, mixture, batch<b> or scaled<a>")
    return {"mixture": not name.startswith("per_sample"),
            "batch_size": int(m["batch"]) if m["batch"] else None,
            "scale": float(m["scale"]) if m["scale"] else 1.0}


DAWIN = ("entropy", "mixture")
PER_SAMPLE = ("entropy", "per_sample")
_NAMED = {DAWIN: "dawin", PER_SAMPLE: "dawin_per_sample", ("cross_entropy", "per_sample"): "oracle_sample",
          ("entropy_no_offset", "mixture"): "dawin_no_offset",
          ("entropy_uncalibrated", "mixture"): "dawin_no_calibration",
          ("entropy_authors_temperatures", "mixture"): "dawin_authors_temperatures"}


def method_name(kind: str, assignment: str) -> str:
    """The method key of a merged evaluation (kind, assignment) in result tables."""
    if (kind, assignment) in _NAMED:
        return _NAMED[kind, assignment]
    spec = parse_assignment(assignment)
    if kind == "entropy" and spec["batch_size"]:
        return f"dawin_batch_{spec['batch_size']}"
    if kind == "entropy" and assignment.startswith("scaled"):
        return f"dawin_x{spec['scale']:g}"
    if kind.startswith("pl_") and assignment == "mixture":
        return f"expertise_{kind}"
    if assignment == "mixture":
        return f"coef_{kind}"
    return f"{kind}_{assignment}"


def merged_groups(*, batch_sizes: Sequence[int], grid: Sequence[float]) -> dict[str, list[tuple[str, str]]]:
    """The merged-model evaluations (kind, assignment) by job: each group is one job per backbone, which loads
    the pair of models once and evaluates every pair of the group on every test set."""
    return {
        "dawin": [DAWIN],
        "dawin_per_sample": [PER_SAMPLE],
        "oracle_sample": [("cross_entropy", "per_sample")],
        "no_offset": [("entropy_no_offset", "mixture")],
        "no_calibration": [("entropy_uncalibrated", "mixture")],
        "authors_temperatures": [("entropy_authors_temperatures", "mixture")],  # Table E, where the authors have them
        "batches": [("entropy", f"batch{b}") for b in batch_sizes],  # Table B
        "scaled": [("entropy", f"scaled{a:g}") for a in grid],  # Figure A
        "alternatives": [(k, "mixture") for k in kinds_in("table_d")],  # Table D, Figure H
        "pseudo_labels": [(k, "mixture") for k in kinds_in("pseudo_label")],  # Figure 5
    }


TARGET_GROUPS: dict[str, list[str]] = {
    "table1": ["oracle_sample"],
    "table2": ["dawin", "dawin_per_sample"],
    "table3": ["dawin"],
    "table4": ["dawin"],
    "table5": ["dawin"],
    "table_a": ["dawin", "no_offset"],
    "table_b": ["dawin", "batches"],
    "table_d": ["dawin", "alternatives"],
    "table_e": ["dawin", "no_calibration", "authors_temperatures"],
    "table_f": ["dawin", "dawin_per_sample"],
    "fig4": ["dawin", "dawin_per_sample"],
    "fig_a": ["dawin", "scaled"],
    "fig5": ["dawin", "pseudo_labels"],
    "fig6": ["dawin"],
    "fig_f": ["dawin"],
    "fig_h": ["dawin", "alternatives"],
    "fig8": ["dawin", "dawin_per_sample"],
}
"""The merged-evaluation groups each paper target needs (targets not listed need none)."""


def variants(target: str, *, batch_sizes: Sequence[int], grid: Sequence[float]) -> list[tuple[str, str]]:
    """The merged-model evaluations (kind, assignment) a paper target needs; [] for the others."""
    groups = merged_groups(batch_sizes=batch_sizes, grid=grid)
    return [pair for g in TARGET_GROUPS.get(target, []) for pair in groups[g]]


COEFFICIENT_GROUPS: dict[str, list[str]] = {
    "pair": [k for k, v in KINDS.items() if not v.needs_average and k not in AUTHORS_TEMPERATURES],
    "with_average": sorted(NEEDS_AVERAGE),
    "authors_temperatures": sorted(AUTHORS_TEMPERATURES),
}
"""The coefficient kinds by job: those from the pair's logits, those that also read the weight average's, and
those with the authors' temperatures (a job only for backbones that have them)."""


def available(kind: str, has_authors_temperatures: bool) -> bool:
    """Whether a backbone computes coefficient ``kind``: the authors'-temperature kinds need the authors' numbers."""
    return kind not in AUTHORS_TEMPERATURES or has_authors_temperatures


@dataclass(frozen=True)
class MergingMethod:
    """A multi-task merging method: what it is called, where its function lives and where it shows.

    Its function is ``merge(pool, data=None, **options) -> encoder state dict`` of the module
    ``dawin.merging.<module>`` (the method's name unless given), called with ``fixed`` and the config's
    ``multitask.methods.<name>`` options (``dawin.merging.METHODS[name]``).
    """

    label: str
    data: str | None = None  # the images it learns from: "train" (each task's train split), "test" (unlabelled)
    table6: bool = True  # a row of Table 6
    # Table 6's paired bootstrap of DaWin against it (``dawin.report.paper_tables.PAIRED``): the static merges
    # (task arithmetic and TIES, both: picking the better of the two on the test average would select on the
    # very images whose noise the bootstrap measures, and both cost nothing more) and AdaMerging layer-wise,
    # plain and ++ (the strongest trained baselines of the paper's Table 6)
    paired: bool = False
    module: str | None = None  # the module of dawin.merging with its merge function (default: the name)
    fixed: Mapping[str, object] = field(default_factory=dict)  # options this entry always passes
    # the values of its ``variant`` option (multitask.methods.<name>.variant), the default first: upstream's
    variants: tuple[str, ...] = ()


GRID_SEARCH = "task_arithmetic_grid"
"""Figure 8's search baseline: task arithmetic at every lambda of a grid, the best on the test sets (a row of
Table 6's pool, not a merging method)."""

_ADAMERGING = "adamerging"  # one module, four entries: task- or layer-wise coefficients, plain or ++
MERGING_METHODS: dict[str, MergingMethod] = {
    "weight_average": MergingMethod("Weight average"),
    # FusionBench's squared gradients of batches' summed objectives, or per-example ones (dawin.merging.fisher)
    "fisher": MergingMethod("Fisher merging", "train", variants=("fusionbench", "per_example")),
    "regmean": MergingMethod("RegMean", "train"),
    "task_arithmetic": MergingMethod("Task arithmetic (0.3)", paired=True),
    "ties": MergingMethod("TIES-merging", paired=True),
    "adamerging_task": MergingMethod("AdaMerging (task-wise)", "test", module=_ADAMERGING,
                                     fixed={"granularity": "task"}),
    "adamerging_layer": MergingMethod("AdaMerging (layer-wise)", "test", paired=True, module=_ADAMERGING,
                                      fixed={"granularity": "layer"}),
    "adamerging_pp_task": MergingMethod("AdaMerging++ (task-wise)", "test", table6=False, module=_ADAMERGING,
                                        fixed={"granularity": "task", "plus_plus": True}),
    "adamerging_pp_layer": MergingMethod("AdaMerging++ (layer-wise)", "test", paired=True, module=_ADAMERGING,
                                         fixed={"granularity": "layer", "plus_plus": True}),
    "opcm": MergingMethod("OPCM (beyond the paper)"),
}
"""Every multi-task merging method by its config name. Adding one: its module ``dawin/merging/<name>.py`` with
``merge(pool, data=None, **options)``, its entry here, and its options in a config's ``multitask.methods``; the
schema's method names, the jobs, Table 6's rows and the labels follow."""


def merging_methods_reading(data: str) -> tuple[str, ...]:
    """The merging methods that learn from ``data`` ("train" or "test")."""
    return tuple(m for m, v in MERGING_METHODS.items() if v.data == data)


METHOD_LABELS: dict[str, str] = {
    "zeroshot": "ZS",
    "finetuned": "FT",
    "average": "WA (0.5)",
    "output_ensemble": "Output ensemble",
    "wise_ft": "WiSE-FT",
    "uniform_soup": "Uniform soup",
    "greedy_soup": "Greedy soup",
    "model_stock": "Model Stock",
    "oracle_domain": "Oracle l*(X) (domain-wise, test labels)",
    "oracle_sample": "Oracle l*(x) (sample-wise, test labels)",
    "dcs": "DCS (lower entropy)",
    "doe": "DOE (dynamic output ensemble)",
    "dawin_per_sample": "DaWin w/o mixture",
    "dawin": "DaWin",
    "dawin_no_offset": "DaWin w/o offset",
    "dawin_no_calibration": "DaWin w/o calibration",
    "dawin_authors_temperatures": "DaWin with the authors' temperatures",
    "dawin_parallel": "DaWin (parallel)",
    "dawin_per_sample_loop": "DaWin w/o mixture, one merge per image (loop)",
    "single_pass_jpeg": "One model pass, images from the JPEGs",
    "single_pass_decoded": "One model pass, images decoded once (images.decoded)",
    **{method_name(k, "mixture"): v.label for k, v in KINDS.items() if v.label},
    "pretrained": "Pre-trained",
    "individual": "Individuals (true expert per task)",
    **{m: v.label for m, v in MERGING_METHODS.items()},
    "task_arithmetic_grid": "Task arithmetic, best lambda of a grid (on test)",
    "optimal_std": "Std of l*(x) (optimal)",
    "mse_uniform": "MSE(l*, U(0,1))",
    "mse_wise_ft": "MSE(l*, WiSE-FT constant)",
    "mse_ce_ratio": "MSE(l*, X-entropy ratio)",
}
"""The row label of every method key in the paper's tables and figures (keys not listed show as they are)."""


def merging_labels(options: dict[str, dict]) -> dict[str, str]:
    """The row labels of the merging methods configured (``options``: multitask.methods) with a ``variant`` other
    than their default, upstream's: the label with the variant named, e.g. "Fisher merging (per_example)"."""
    out = {}
    for method, opts in options.items():
        variant = (opts or {}).get("variant")
        spec = MERGING_METHODS.get(method)
        if variant is not None and spec is not None and spec.variants and variant != spec.variants[0]:
            out[method] = f"{METHOD_LABELS[method]} ({variant})"
    return out


def check_names(kind: str, registered: Iterable[str], implemented: Iterable[str], where: str) -> None:
    """Raise when the names implemented in ``where`` differ from this registry's (a half-added entry)."""
    registered, implemented = set(registered), set(implemented)
    if registered != implemented:
        raise ImportError(f"{where}: {kind} {sorted(implemented - registered)} are not in dawin.registry, and "
                          f"{sorted(registered - implemented)} are registered without an implementation; "
                          "add both or neither")
