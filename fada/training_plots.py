"""Plots of a training run's log (`fada.training.read_log` rows): the loss curve a flow publishes and the CLI saves."""

from __future__ import annotations

import math
import os
from pathlib import Path


def numeric_columns(rows: list[dict]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                columns.setdefault(key)
    return list(columns)


def loss_curve_png(rows: list[dict], out_png: str | os.PathLike, title: str) -> Path | None:
    """The logged scalars against the step (losses on a log scale when positive), one panel per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = numeric_columns(rows)
    if not rows or not columns:
        return None
    losses = [c for c in columns if c == "loss" or c.startswith("l_")]
    others = [c for c in columns if c not in losses]
    panels = [losses] + [[c] for c in others] if losses else [[c] for c in columns]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for column in panel:
            points = [(r["step"], r[column]) for r in rows if isinstance(r.get(column), (int, float))
                      and math.isfinite(r[column])]
            if points:
                ax.plot(*zip(*points), marker="." if len(points) < 50 else None, label=column)
        values = [r[c] for r in rows for c in panel if isinstance(r.get(c), (int, float)) and math.isfinite(r[c])]
        if panel is losses and values and min(values) > 0 and max(values) > 20 * min(values):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(", ".join(panel), fontsize=9)
        if len(panel) > 1:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, out_png)


def save_figure(fig, out_png: str | os.PathLike, dpi: int = 90) -> Path:
    """Lay out ``fig``, write it to ``out_png`` (parents created) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=dpi)
    plt.close(fig)
    return out_png
