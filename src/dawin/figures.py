"""Figures with deterministic bytes: fixed metadata, no timestamps, the Agg backend."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .tables import METHOD_LABELS  # noqa: E402

matplotlib.rcParams["svg.hashsalt"] = "dawin"


def save(fig, stem: str | Path) -> None:
    """Write ``stem``.png and ``stem``.pdf without creation dates or software versions."""
    fig.savefig(f"{stem}.png", dpi=150, metadata={"Software": None})
    fig.savefig(f"{stem}.pdf", metadata={"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None})
    plt.close(fig)


MARKERS = {"zeroshot": "s", "finetuned": "D", "output_ensemble": "^", "wise_ft": "v",
           "dawin_per_sample": "P", "dawin": "*"}


def id_ood_tradeoff(points: pd.DataFrame, sweep: pd.DataFrame, title: str):
    """Figure 4: ID vs OOD-average accuracy. ``points``: method, id, ood; ``sweep``: alpha, id, ood."""
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(sweep["id"], sweep["ood"], "-o", color="0.6", ms=3, label="WiSE-FT sweep", zorder=1)
    for a, x, y in zip(sweep["alpha"], sweep["id"], sweep["ood"]):
        ax.annotate(f"{a:.1f}", (x, y), fontsize=6, color="0.4", xytext=(2, 2), textcoords="offset points")
    for row in points.itertuples():
        ax.scatter(row.id, row.ood, marker=MARKERS.get(row.method, "o"), s=90 if row.method == "dawin" else 50,
                   label=METHOD_LABELS.get(row.method, row.method), zorder=2)
    ax.set_xlabel("ID accuracy (%)")
    ax.set_ylabel("OOD average accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
