"""Histograms of each bounded score over a view's catalog rows, with the profile's thresholds marked.

The rows are those of the catalog snapshot the view was made from (a later rescore does not change an old
view's plots); only the key and the bounded columns are read."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from filters.profiles import profile_from_dict
from shards.catalog import read_catalog
from shards.views import kept_keys, snapshot_files


def score_histograms(data_dir: str | os.PathLike, view: dict, out_dir: str | os.PathLike) -> list[Path]:
    """One PNG per bounded column: all scored clips, the kept ones on top, min/max thresholds as lines. Sync
    bounds are per scorer (each has its own scale), so each sync scorer gets its own files
    (``sync-<scorer>-<column>.png``) over the clips that scorer scored."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profile = profile_from_dict({"name": view["profile"]["name"], "dimensions": view["profile"]["dimensions"]})
    bounds = [(None, b) for b in profile.bounds] + [(scorer, b) for scorer, bs in profile.sync_bounds.items() for b in bs]
    columns = list(dict.fromkeys(["key", "sync_scorer", *("sync_offset" if b.column == "abs_sync_offset" else b.column for _, b in bounds)]))
    files = snapshot_files(data_dir, view["catalog"]) if view.get("catalog") else None
    table = read_catalog(data_dir, columns, files)
    scorers = np.asarray(table.column("sync_scorer").to_pylist(), dtype=object)
    kept = pc.fill_null(pc.is_in(table.column("key"), value_set=kept_keys(view)), False).to_numpy(zero_copy_only=False)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for scorer, bound in bounds:
        column = "sync_offset" if bound.column == "abs_sync_offset" else bound.column
        values = np.abs(table.column(column).to_numpy(zero_copy_only=False).astype(float)) if bound.column == "abs_sync_offset" else table.column(column).to_numpy(zero_copy_only=False).astype(float)
        finite = np.isfinite(values) & (True if scorer is None else scorers == scorer)
        if not finite.any():
            continue
        figure, axes = plt.subplots(figsize=(5, 3))
        bins = np.histogram_bin_edges(values[finite], bins=30)
        axes.hist(values[finite], bins=bins, color="0.75", label="all scored clips")
        axes.hist(values[finite & kept], bins=bins, color="tab:green", label=f"kept by {view['name']}")
        for threshold, label in ((bound.min, "min"), (bound.max, "max")):
            if threshold is not None:
                axes.axvline(threshold, color="tab:red", linestyle="--", label=f"{label} {threshold:g}")
        label = bound.dimension if scorer is None else f"{bound.dimension}-{scorer}"
        axes.set_title(f"{label.replace('-', '.')}.{bound.column}")
        axes.legend(fontsize=7)
        figure.tight_layout()
        path = out_dir / f"{label}-{bound.column}.png"
        figure.savefig(path, dpi=80)
        plt.close(figure)
        paths.append(path)
    return paths
