"""The paper's published numbers (workflow/resources/paper_reference.yaml) and their comparison with ours.

``load_reference`` validates the YAML and returns it in long format, one row per published cell.
``attach_reference`` joins one of our wide tables (rows = method keys, columns = column keys) with the
paper's numbers of a table: for each column ``c`` it gives ``c`` (ours), ``c (paper)`` and, optionally,
``c (Δ)`` = ours - paper, and appends the rows of methods the paper only reports (other papers' methods
this project does not run), labelled "... (reported)". ``reproduction_summary`` / ``reproduction_html``
render a set of such tables as one Markdown / HTML page with the mean absolute Δ per table.

A second reference is another repository's published numbers per model: model-soups' accuracies of its
uniform and greedy soups and of its 72 runs (workflow/resources/model_soups_reference.yaml, converted from its
``*_results.jsonl`` by ``write_model_soups_reference``). ``load_second_reference`` reads it and
``attach_second_reference`` adds its numbers as ``c (model-soups)`` columns to the tables it covers.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd
import yaml

from .uncertainty import verdict

EXPECTED_TABLES = [
    "table1", "table2", "table3", "table4", "table5", "table6",
    "table_a", "table_b", "table_c", "table_d", "table_e", "table_f", "table_g",
]
BACKBONES = ("ViT-B-32", "ViT-B-16", "ViT-L-14")
# Columns printed as text (kept as the printed string, never compared numerically).
TEXT_COLUMNS = frozenset({"cost_t", "cost_i", "runtime", "flops", "memory"})

LONG_COLUMNS = ["table", "source", "backbone", "method", "label", "column", "value", "text", "reported_only", "pool"]

_TOP_KEYS = {"tables", "temperatures", "mixture_components"}
_TABLE_REQUIRED = {"source", "title", "rows"}
_TABLE_KEYS = _TABLE_REQUIRED | {"unit", "note"}
_ROW_REQUIRED = {"backbone", "method", "label", "values"}
_ROW_KEYS = _ROW_REQUIRED | {"reported_only", "pool"}
REPORTED_SUFFIX = " (reported)"


class ReferenceFormatError(ValueError):
    """The reference YAML does not have the documented structure."""


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _read(path) -> dict:
    with open(path) as f:
        doc = yaml.safe_load(f)
    if not isinstance(doc, dict):
        raise ReferenceFormatError(f"{path}: top level must be a mapping with a 'tables' key")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise ReferenceFormatError(f"{path}: unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    if not isinstance(doc.get("tables"), dict) or not doc["tables"]:
        raise ReferenceFormatError(f"{path}: 'tables' must be a non-empty mapping of table key -> table")
    return doc


def _check_settings(doc: dict, path) -> None:
    temps = doc.get("temperatures", {})
    if not isinstance(temps, dict):
        raise ReferenceFormatError(f"{path}: 'temperatures' must map backbone -> {{zs, ft}}")
    for bb, t in temps.items():
        if bb not in BACKBONES:
            raise ReferenceFormatError(f"{path}: temperatures: unknown backbone {bb!r}; allowed: {list(BACKBONES)}")
        if not isinstance(t, dict) or set(t) != {"zs", "ft"} or not all(_is_number(x) and x > 0 for x in t.values()):
            raise ReferenceFormatError(f"{path}: temperatures[{bb}] must be {{zs: <positive number>, ft: <positive number>}}")
    comps = doc.get("mixture_components", {})
    if not isinstance(comps, dict):
        raise ReferenceFormatError(f"{path}: 'mixture_components' must map backbone -> integer")
    for bb, k in comps.items():
        if bb not in BACKBONES:
            raise ReferenceFormatError(f"{path}: mixture_components: unknown backbone {bb!r}; allowed: {list(BACKBONES)}")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ReferenceFormatError(f"{path}: mixture_components[{bb}] must be a positive integer, got {k!r}")


def _check_keys(where: str, mapping: dict, allowed: set, required: set) -> None:
    unknown, missing = set(mapping) - allowed, required - set(mapping)
    if unknown:
        raise ReferenceFormatError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    if missing:
        raise ReferenceFormatError(f"{where}: missing key(s) {sorted(missing)}")


def _table_records(key: str, table, path) -> list[dict]:
    where = f"{path}: tables.{key}"
    if not isinstance(table, dict):
        raise ReferenceFormatError(f"{where} must be a mapping with keys {sorted(_TABLE_REQUIRED)}")
    _check_keys(where, table, _TABLE_KEYS, _TABLE_REQUIRED)
    for k in ("source", "title", "unit", "note"):
        if k in table and not isinstance(table[k], str):
            raise ReferenceFormatError(f"{where}.{k} must be a string")
    rows = table["rows"]
    if not isinstance(rows, list) or not rows:
        raise ReferenceFormatError(f"{where}.rows must be a non-empty list")
    out, seen = [], set()
    for i, row in enumerate(rows):
        rw = f"{where}.rows[{i}]"
        if not isinstance(row, dict):
            raise ReferenceFormatError(f"{rw} must be a mapping")
        _check_keys(rw, row, _ROW_KEYS, _ROW_REQUIRED)
        method = row["method"]
        if not isinstance(method, str) or not method:
            raise ReferenceFormatError(f"{rw}: 'method' must be a non-empty string")
        rw = f"{rw} ({method})"
        if row["backbone"] not in BACKBONES:
            raise ReferenceFormatError(f"{rw}: unknown backbone {row['backbone']!r}; allowed: {list(BACKBONES)}")
        if not isinstance(row["label"], str):
            raise ReferenceFormatError(f"{rw}: 'label' must be a string")
        reported = row.get("reported_only", False)
        if not isinstance(reported, bool):
            raise ReferenceFormatError(f"{rw}: 'reported_only' must be true or false")
        pool = row.get("pool")
        if pool is not None:
            if not isinstance(pool, list) or not pool or not all(isinstance(p, str) and p for p in pool):
                raise ReferenceFormatError(f"{rw}: 'pool' must be a non-empty list of dataset names")
            if len(set(pool)) != len(pool):
                raise ReferenceFormatError(f"{rw}: 'pool' lists a dataset twice: {pool}")
            pool = ",".join(pool)
        ident = (row["backbone"], method, pool)
        if ident in seen:
            raise ReferenceFormatError(
                f"{rw}: duplicate row (backbone={row['backbone']}, method={method}"
                + (f", pool={pool}" if pool else "") + ")"
            )
        seen.add(ident)
        values = row["values"]
        if not isinstance(values, dict) or not values:
            raise ReferenceFormatError(f"{rw}: 'values' must be a non-empty mapping column -> number")
        for col, v in values.items():
            if not isinstance(col, str) or not col:
                raise ReferenceFormatError(f"{rw}: column names must be non-empty strings, got {col!r}")
            if col in TEXT_COLUMNS:
                if not isinstance(v, str):
                    raise ReferenceFormatError(f"{rw}: {col!r} is a text column; quote its value as printed, got {v!r}")
                value, text = math.nan, v
            else:
                if not _is_number(v):
                    raise ReferenceFormatError(f"{rw}: value of {col!r} must be a number, got {v!r}")
                value, text = float(v), None
            out.append(dict(table=key, source=table["source"], backbone=row["backbone"], method=method,
                            label=row["label"], column=col, value=value, text=text,
                            reported_only=reported, pool=pool))
    return out


def load_reference(path) -> pd.DataFrame:
    """The published numbers in long format (columns ``LONG_COLUMNS``), validated.

    ``value`` is float (NaN for text columns, whose printed string is in ``text``); ``pool`` is the
    comma-joined model pool (Table G) or None. Table metadata is in ``df.attrs["tables"]`` (key ->
    {source, title, unit, note}) and the settings in ``df.attrs["temperatures"]`` / ``["mixture_components"]``.
    Raises ``ReferenceFormatError`` with the offending table/row/key on any structural problem.
    """
    doc = _read(path)
    _check_settings(doc, path)
    records, meta = [], {}
    for key, table in doc["tables"].items():
        if not isinstance(key, str):
            raise ReferenceFormatError(f"{path}: table keys must be strings, got {key!r}")
        records += _table_records(key, table, path)
        meta[key] = {k: table.get(k) for k in ("source", "title", "unit", "note")}
    df = pd.DataFrame(records, columns=LONG_COLUMNS)
    df.attrs["tables"] = meta
    df.attrs["temperatures"] = doc.get("temperatures", {})
    df.attrs["mixture_components"] = doc.get("mixture_components", {})
    return df


def reference_for(ref_df: pd.DataFrame, table: str) -> pd.DataFrame:
    """The long-format rows of one table, by key ("table2") or printed source ("Table 2")."""
    sub = ref_df[(ref_df.table == table) | (ref_df.source == table)]
    if sub.empty:
        known = list(dict.fromkeys(ref_df.table))
        raise KeyError(f"no reference table {table!r}; known: {known}")
    sub = sub.copy()
    sub.attrs = dict(ref_df.attrs)
    return sub


def _key_fields(ref: pd.DataFrame) -> list[str]:
    """Fields that identify a row of this table: method, plus backbone / pool where they vary."""
    fields = []
    if ref.backbone.nunique() > 1:
        fields.append("backbone")
    fields.append("method")
    if ref.pool.notna().any():
        fields.append("pool")
    return fields


def _decimals(values) -> int:
    """Decimals to print: as many as the paper's numbers use (2..4)."""
    best = 2
    for v in values:
        if _is_number(v):
            s = f"{v:.6f}".rstrip("0")
            best = max(best, min(4, len(s.split(".")[1]) if "." in s else 0))
    return best


def attach_reference(ours: pd.DataFrame, ref: pd.DataFrame, table: str, compare: bool = True) -> pd.DataFrame:
    """Join our wide table with the paper's numbers of ``table``.

    ``ours``: index = method keys (a MultiIndex (backbone, method) when the table spans several backbones,
    (method, pool) with comma-joined pools for Table G), columns = column keys (``id``, ``ood_avg``, ...).
    Returns, indexed like ``ours``: ``label`` and, for each numeric column ``c`` (the paper's order, then our
    extra columns), ``c``, ``c (paper)`` and when ``compare`` ``c (Δ)`` = ours - paper (NaN when either is
    missing). Text columns (e.g. Table 2's ``cost_t``) are added as ``c (paper)`` unless the table has a
    numeric ``c_*`` column. Reported-only methods absent from ``ours`` are appended (ours NaN, label + " (reported)").
    """
    sub = reference_for(ref, table)
    fields = _key_fields(sub)
    key = sub[fields].apply(tuple, axis=1) if len(fields) > 1 else sub[fields[0]]
    sub = sub.assign(_key=key.values)

    if len(fields) > 1:
        if not isinstance(ours.index, pd.MultiIndex) or ours.index.nlevels != len(fields):
            raise ValueError(f"{table}: our table must be indexed by {tuple(fields)} (the paper's table varies in them)")
        our_keys = list(ours.index)
    else:
        if isinstance(ours.index, pd.MultiIndex):
            raise ValueError(f"{table}: our table must be indexed by method key only")
        our_keys = list(ours.index)
    if len(set(our_keys)) != len(our_keys):
        raise ValueError(f"{table}: our table has duplicate rows {sorted({k for k in our_keys if our_keys.count(k) > 1})}")

    numeric = sub[sub.text.isna()]
    text = sub[sub.text.notna()]
    paper_cols = list(dict.fromkeys(numeric.column))
    columns = paper_cols + [c for c in ours.columns if c not in paper_cols and c != "label"]
    text_cols = [c for c in dict.fromkeys(text.column) if not any(p.startswith(c + "_") for p in columns)]

    paper = {(k, c): v for k, c, v in zip(numeric._key, numeric.column, numeric.value)}
    paper_text = {(k, c): t for k, c, t in zip(text._key, text.column, text.text)}
    labels = dict(zip(sub._key[::-1], sub.label[::-1]))  # first occurrence wins
    reported = dict(zip(sub._key[::-1], sub.reported_only[::-1]))

    known = set(our_keys)
    extra = [k for k in dict.fromkeys(sub._key) if k not in known and reported[k]]
    keys = our_keys + extra

    def ours_at(k, c):
        if k not in known or c not in ours.columns:
            return math.nan
        v = ours.loc[k, c]
        return float(v) if pd.notna(v) else math.nan

    def default_label(k):
        if k in labels:  # the paper's label where the paper has the row
            return labels[k]
        if k in known and "label" in ours.columns and isinstance(ours.loc[k, "label"], str):
            return ours.loc[k, "label"]
        return k if isinstance(k, str) else str(k[fields.index("method")])

    out = pd.DataFrame(index=pd.RangeIndex(len(keys)))
    out["label"] = [labels[k] + REPORTED_SUFFIX if k in extra else default_label(k) for k in keys]
    for c in columns:
        mine = [ours_at(k, c) for k in keys]
        theirs = [paper.get((k, c), math.nan) for k in keys]
        out[c] = mine
        out[f"{c} (paper)"] = theirs
        if compare:
            out[f"{c} (Δ)"] = [a - b for a, b in zip(mine, theirs)]  # NaN when either is missing
    for c in text_cols:
        out[f"{c} (paper)"] = [paper_text.get((k, c)) for k in keys]
    if len(fields) > 1:
        out.index = pd.MultiIndex.from_tuples(keys, names=fields)
    else:
        out.index = pd.Index(keys, name="method")
    meta = ref.attrs.get("tables", {}).get(sub.table.iloc[0], {})
    out.attrs = {
        "table": sub.table.iloc[0],
        "source": sub.source.iloc[0],
        "title": meta.get("title") or "",
        "unit": meta.get("unit"),
        "decimals": _decimals(numeric.value),
        "columns": columns,
    }
    return out


def _abs_deltas(df: pd.DataFrame) -> list[float]:
    cols = df.attrs.get("columns") or [c for c in df.columns if f"{c} (paper)" in df.columns]
    deltas = []
    for c in cols:
        if c in df.columns and f"{c} (paper)" in df.columns:
            d = (pd.to_numeric(df[c], errors="coerce") - pd.to_numeric(df[f"{c} (paper)"], errors="coerce")).abs()
            deltas += [float(x) for x in d if pd.notna(x)]
    return deltas


_REFERENCE_COLUMN = re.compile(r"^(.+) \((.+)\)$")  # "<column> (paper)", "<column> (Δ)", "<column> (model-soups)"
CELLS = "Cells: ours (the paper's number; a second reference's by name); — where there is none."
INTERVAL_CELLS = ("Ours is followed by its 95 % bootstrap interval over the test images (an average over sets "
                  "resamples each set); where the suite compares with the paper, the paper's number by whether it "
                  "lies inside, above or below that interval.")


def formatted(df: pd.DataFrame, intervals: bool = False) -> pd.DataFrame:
    """The table as printed: one cell per column holding ``ours (paper)`` (numbers with the table's decimals, a
    second reference's after the paper's as ``; <name> <number>``, missing as an em dash), columns without any
    value dropped. The Δ columns are not printed (the reproduction page gives the mean |Δ|; the CSV is tidy).

    ``intervals``: ours is followed by its 95 % bootstrap interval ``[low, high]`` (the ``<column> (low)`` /
    ``(high)`` columns), and where the table compares with the paper (Δ columns) the paper's number by its
    verdict: ``inside``, ``above`` or ``below`` our interval."""
    dec = df.attrs.get("decimals", 2)

    def text(v: object) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "—"
        return f"{v:.{dec}f}" if _is_number(v) else str(v)

    groups: dict[str, dict[str, str]] = {}  # column -> {"": ours, "paper": ..., "<name>": ...}
    for c in df.columns:
        if c == "label":
            continue
        m = _REFERENCE_COLUMN.match(c)
        base, ref = (m.group(1), m.group(2)) if m else (c, "")
        if ref not in ("Δ", "low", "high"):
            groups.setdefault(base, {})[ref] = c
    out = pd.DataFrame(index=df.index)
    if "label" in df.columns:
        out["label"] = df["label"]
    for base, cols in groups.items():
        cells = []
        for i in range(len(df)):
            ours = text(df[cols[""]].iloc[i]) if "" in cols else "—"
            refs = [(name, text(df[c].iloc[i])) for name, c in cols.items() if name]
            low, high = (df[f"{base} ({b})"].iloc[i] if f"{base} ({b})" in df.columns else math.nan for b in ("low", "high"))
            if intervals and ours != "—" and _is_number(low) and not math.isnan(low):
                ours += f" [{text(low)}, {text(high)}]"
                paper = df[cols["paper"]].iloc[i] if "paper" in cols and f"{base} (Δ)" in df.columns else None
                if _is_number(paper) and not math.isnan(paper):
                    refs = [(name, f"{v}: {verdict(paper, low, high)}" if name == "paper" else v) for name, v in refs]
            refs = [v if name == "paper" else f"{name} {v}" for name, v in sorted(refs, key=lambda r: r[0] != "paper")
                    if v != "—"]
            cells.append(ours + (f" ({'; '.join(refs)})" if refs else ""))
        if any(cell != "—" for cell in cells):
            out[base] = cells
    if isinstance(out.index, pd.MultiIndex):
        out.index = [" / ".join(str(x) for x in k) for k in out.index]
    return out


def _section(key: str, df: pd.DataFrame) -> tuple[str, str, str]:
    source = df.attrs.get("source", key)
    title = df.attrs.get("title", "")
    unit = df.attrs.get("unit")
    deltas = _abs_deltas(df)
    if not any(c.endswith(" (Δ)") for c in df.columns):  # built without compare: the demo suite
        summary = "Not comparable with the paper's numbers (another suite): no difference is computed."
    elif deltas:
        summary = f"Mean |Δ| over {len(deltas)} comparable cells: {sum(deltas) / len(deltas):.{df.attrs.get('decimals', 2)}f}"
    else:
        summary = "No comparable cells (ours or the paper's number missing everywhere)."
    heading = f"{source}: {title}" if title else source
    note = f"Paper source: {source}" + (f"; unit: {unit}" if unit else "; values in %")
    note += "".join(f". {n.rstrip('.')}" for n in df.attrs.get("notes", []))
    note += f". {CELLS.rstrip('.')}"
    if any(c.endswith(" (low)") for c in df.columns):
        note += f". {INTERVAL_CELLS.rstrip('.')}"
    return heading, note, summary


def paired_tables(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """A table's paired bootstrap comparisons (``attrs["paired"]``, set by ``dawin.report.paper_tables.display``) as
    small tables, one per comparison: its title, and per column of the table (the test sets, the average last) the
    difference in points, its 95 % paired bootstrap interval and the share of resamples where the method is not
    better."""
    out = []
    for p in df.attrs.get("paired", []):
        rows = p["rows"]
        table = pd.DataFrame({
            "difference (points)": [f"{r['difference']:+.2f}" for r in rows],
            "95 % interval": [f"[{r['low']:+.2f}, {r['high']:+.2f}]" for r in rows],
            f"resamples where {p['method']} is not better": [f"{100 * r['p_not_better']:.1f} %" for r in rows],
        }, index=pd.Index([r["column"] for r in rows], name="test set"))
        out.append((f"Paired: {p['method']} − {p['other']}, {p['backbone']}; the same resampled test images for both",
                    table))
    return out


def reproduction_summary(tables: Mapping[str, pd.DataFrame], premises: pd.DataFrame | None = None) -> str:
    """A Markdown page: the premise checks when given (as ``dawin.report.premises.printed`` renders them, its note
    in ``attrs["note"]``), then per table (outputs of ``attach_reference``) its source, ours/paper/Δ, mean |Δ| and
    its paired comparisons (:func:`paired_tables`)."""
    parts = ["# Reproduction vs. paper (Oh et al., ICLR 2025)", ""]
    if premises is not None:
        parts += ["## Premise checks", "", premises.attrs.get("note", ""), "",
                  premises.to_markdown(index=False, disable_numparse=True), ""]
    for key, df in tables.items():
        heading, note, summary = _section(key, df)
        parts += [f"## {heading}", "", note + ".", "", formatted(df, intervals=True).to_markdown(disable_numparse=True), "",
                  summary, ""]
        for title, table in paired_tables(df):
            parts += [f"{title}:", "", table.to_markdown(disable_numparse=True), ""]
    return "\n".join(parts)


def reproduction_html(tables: Mapping[str, pd.DataFrame], premises: pd.DataFrame | None = None) -> str:
    """The same page as ``reproduction_summary`` in HTML (pandas ``to_html`` per table, no extra deps)."""
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'><title>Reproduction vs. paper</title></head><body>",
             "<h1>Reproduction vs. paper (Oh et al., ICLR 2025)</h1>"]
    if premises is not None:
        parts += ["<h2>Premise checks</h2>", f"<p>{html.escape(premises.attrs.get('note', ''))}</p>",
                  premises.to_html(index=False)]
    for key, df in tables.items():
        heading, note, summary = _section(key, df)
        parts += [f"<h2>{html.escape(heading)}</h2>", f"<p>{html.escape(note)}.</p>",
                  formatted(df, intervals=True).to_html(),
                  *(f"<p>{html.escape(s)}</p>" for s in summary.split("\n\n"))]
        for title, table in paired_tables(df):
            parts += [f"<p>{html.escape(title)}:</p>", table.to_html()]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_summary(tables: Mapping[str, pd.DataFrame], stem, premises: pd.DataFrame | None = None) -> None:
    """Write ``stem``.md and ``stem``.html (with the printed premise checks when given)."""
    stem = str(stem)
    Path(stem + ".md").write_text(reproduction_summary(tables, premises))
    Path(stem + ".html").write_text(reproduction_html(tables, premises))


# --------------------------------------------------------------------------------------------------
# A second reference: model-soups' own published accuracies of its soups and of its 72 runs
# --------------------------------------------------------------------------------------------------

MODEL_SOUPS_REPOSITORY = "mlfoundations/model-soups"
MODEL_SOUPS_COMMIT = "d5398f181ea51c5cd9d95ebacc6ea7132bb108ec"
MODEL_SOUPS_FILES = ("uniform_soup_results.jsonl", "greedy_soup_results.jsonl", "individual_model_results.jsonl")
# model-soups' dataset keys -> this project's column keys (ImageNet2p: model-soups' held-out 2% of ImageNet
# train, the split its greedy soup is chosen on).
MODEL_SOUPS_COLUMNS = {"ImageNet2p": "heldout", "ImageNet": "id", "ImageNetV2": "v2", "ImageNetR": "r",
                       "ImageNetA": "a", "ImageNetSketch": "sketch", "ObjectNet": "objectnet"}
OOD_COLUMNS = ("v2", "r", "a", "sketch", "objectnet")  # the paper's OOD average is over these five
SECOND_COLUMNS = ["backbone", "method", "column", "value"]
_SECOND_KEYS = {"name", "source", "backbone", "tables", "runs", "note", "models"}


def model_soups_results(lines: Iterable[str]) -> dict[str, dict[str, float]]:
    """model-soups' ``*_results.jsonl`` lines -> ``{model_name: {column: accuracy in %}}``.

    Each line is one model's record (``model_name`` and accuracies as fractions under model-soups' dataset
    keys, :data:`MODEL_SOUPS_COLUMNS`). Accuracies become percent rounded to 6 decimals (finer than one test
    image of any of the sets); ``ood_avg`` is added as the mean over the five OOD sets, the paper's OOD average
    (model-soups publishes none). Blank lines are skipped; an unknown or missing key is an error.
    """
    out: dict[str, dict[str, float]] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        rec = json.loads(line)
        name = rec.pop("model_name", None)
        if not isinstance(name, str) or set(rec) != set(MODEL_SOUPS_COLUMNS) or name in out:
            raise ReferenceFormatError(
                f"model-soups results line {n}: expected a new model_name and exactly the keys "
                f"{sorted(MODEL_SOUPS_COLUMNS)}, got {name!r} with {sorted(rec)}")
        pct = {col: 100 * float(rec[key]) for key, col in MODEL_SOUPS_COLUMNS.items()}
        pct["ood_avg"] = sum(pct[c] for c in OOD_COLUMNS) / len(OOD_COLUMNS)
        out[name] = {col: round(v, 6) for col, v in pct.items()}
    return out


def _model_soups_note(runs: int) -> str:
    """The caption note of the tables that show model-soups' numbers (the workflow checks, when it plans those
    tables, that the configured soups do use all ``runs`` runs)."""
    return (f"Soups: our uniform and greedy soups use all {runs} model-soups runs (model_0 to model_{runs - 1}), "
            f"as model-soups' main.py does (NUM_MODELS = {runs}); the paper's soup rows (cost 48) come from a "
            f"48-run pool we cannot identify. model-soups' own published numbers ({MODEL_SOUPS_REPOSITORY} at "
            f"{MODEL_SOUPS_COMMIT[:7]}) are shown as a second reference in the columns marked (model-soups); "
            f"their OOD average is computed here over the five shifts.")


def model_soups_reference(checkout) -> dict:
    """The second-reference document (see :func:`load_second_reference`) from a model-soups checkout.

    ``checkout`` is a directory holding model-soups' :data:`MODEL_SOUPS_FILES` (its repository at
    :data:`MODEL_SOUPS_COMMIT`). The soups and the individual runs keep model-soups' names (``uniform_soup``,
    ``greedy_soup``, ``model_0`` ... ``model_71``); the soups' names are also this project's method keys.
    """
    models: dict[str, dict[str, float]] = {}
    for name in MODEL_SOUPS_FILES:
        for model, values in model_soups_results(Path(checkout, name).read_text().splitlines()).items():
            if model in models:
                raise ReferenceFormatError(f"{checkout}/{name}: {model} is also in another results file")
            models[model] = values
    runs = sum(1 for m in models if m.startswith("model_"))
    return {
        "name": "model-soups",
        "source": {"repository": MODEL_SOUPS_REPOSITORY, "commit": MODEL_SOUPS_COMMIT,
                   "files": list(MODEL_SOUPS_FILES)},
        "backbone": "ViT-B-32",
        "tables": ["table2"],  # the paper's tables with soup rows
        "runs": runs,
        "note": _model_soups_note(runs),
        "models": models,
    }


def write_second_reference(doc: Mapping, path) -> None:
    """Write a second-reference document as YAML (fixed key order, one flow-style line per model)."""
    header = (
        "# Generated by dawin.report.reference.write_model_soups_reference; do not edit by hand. To regenerate:\n"
        f"#   git clone https://github.com/{MODEL_SOUPS_REPOSITORY} ms && git -C ms checkout {MODEL_SOUPS_COMMIT[:7]}\n"
        "#   python -c \"from dawin.report.reference import write_model_soups_reference as w; "
        "w('ms', 'workflow/resources/model_soups_reference.yaml')\"\n"
        "# Accuracies in %: model-soups' fractions x 100 (6 decimals); columns heldout (ImageNet2p), id, v2, r, a,\n"
        "# sketch, objectnet, and ood_avg (the mean over the five shifts, computed here). Loaded by\n"
        "# dawin.report.reference.load_second_reference.\n"
    )
    body = yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=None, width=1000, allow_unicode=True)
    Path(path).write_text(header + body)


def write_model_soups_reference(checkout, path) -> None:
    """Convert a model-soups checkout's published results into the second-reference YAML at ``path``."""
    write_second_reference(model_soups_reference(checkout), path)


def load_second_reference(path) -> pd.DataFrame:
    """Another repository's published numbers per model, in long format (columns ``SECOND_COLUMNS``).

    The YAML holds ``name`` (shown in column headers as ``c (<name>)``), ``source`` (provenance), ``backbone``,
    ``tables`` (the table keys it is shown in), ``runs`` (its number of individual runs), ``note`` (a sentence
    for those tables' captions) and ``models: {model: {column: number}}``. The metadata is in ``df.attrs``.
    """
    with open(path) as f:
        doc = yaml.safe_load(f)
    if not isinstance(doc, dict):
        raise ReferenceFormatError(f"{path}: top level must be a mapping with keys {sorted(_SECOND_KEYS)}")
    _check_keys(str(path), doc, _SECOND_KEYS, _SECOND_KEYS)
    if doc["backbone"] not in BACKBONES:
        raise ReferenceFormatError(f"{path}: unknown backbone {doc['backbone']!r}; allowed: {list(BACKBONES)}")
    for key in ("name", "note"):
        if not isinstance(doc[key], str) or not doc[key]:
            raise ReferenceFormatError(f"{path}: {key!r} must be a non-empty string")
    if not isinstance(doc["tables"], list) or not all(t in EXPECTED_TABLES for t in doc["tables"]):
        raise ReferenceFormatError(f"{path}: 'tables' must be a list of table keys from {EXPECTED_TABLES}")
    models = doc["models"]
    if not isinstance(models, dict) or not models:
        raise ReferenceFormatError(f"{path}: 'models' must be a non-empty mapping model -> {{column: number}}")
    records = []
    for model, values in models.items():
        if not isinstance(values, dict) or not values or not all(_is_number(v) for v in values.values()):
            raise ReferenceFormatError(f"{path}: models.{model} must map column keys to numbers")
        records += [dict(backbone=doc["backbone"], method=str(model), column=str(c), value=float(v))
                    for c, v in values.items()]
    runs = sum(1 for m in models if str(m).startswith("model_"))
    if doc["runs"] != runs:
        raise ReferenceFormatError(f"{path}: 'runs' is {doc['runs']!r} but 'models' lists {runs} individual runs")
    df = pd.DataFrame(records, columns=SECOND_COLUMNS)
    df.attrs = {k: doc[k] for k in ("name", "source", "tables", "runs", "note")}
    return df


def attach_second_reference(table: pd.DataFrame, second: pd.DataFrame, backbone: str | None = None) -> pd.DataFrame:
    """Add a second reference's numbers beside ours: a column ``c (<name>)`` after each column ``c``'s group.

    ``table`` is a wide table (``attach_reference`` output or ours alone, ``attrs["table"]`` and
    ``attrs["columns"]`` set), indexed by method, or by (backbone, method). ``backbone`` names the backbone of
    a table indexed by method only. Rows match on (backbone, method); only tables the reference lists in its
    ``tables`` and columns it has for a matching row get a column (NaN for rows it has no number for), and
    the reference's ``note`` is appended to ``attrs["notes"]``. Without any match ``table`` is returned as is.
    """
    if table.attrs.get("table") not in second.attrs.get("tables", ()):
        return table
    names = list(table.index.names)
    if "backbone" in names and "method" in names:
        keys = [(k[names.index("backbone")], k[names.index("method")]) for k in table.index]
    elif backbone is not None and not isinstance(table.index, pd.MultiIndex):
        keys = [(backbone, k) for k in table.index]
    else:
        return table
    theirs = {(b, m, c): v for b, m, c, v in zip(second.backbone, second.method, second.column, second.value)}
    label = second.attrs["name"]
    columns = [c for c in table.attrs.get("columns", []) if any((b, m, c) in theirs for b, m in keys)]
    if not columns:
        return table
    out = table.copy()
    for c in columns:
        group = [g for g in (c, f"{c} (paper)", f"{c} (Δ)") if g in out.columns]
        at = out.columns.get_loc(group[-1]) + 1 if group else len(out.columns)
        out.insert(at, f"{c} ({label})", [theirs.get((b, m, c), math.nan) for b, m in keys])
    out.attrs = {**table.attrs, "notes": [*table.attrs.get("notes", []), second.attrs["note"]]}
    return out
