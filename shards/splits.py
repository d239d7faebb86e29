"""The held-out test split: whole sources kept out of training, so no speaker identity leaks into evaluation.
Which sources it holds out is the rule of `shards.split_rule`.

``write_test_view`` writes the split as an immutable view in the format of ``shards.views.refilter``
(``shards``, ``catalog``, ``summary``; ``split`` records the rule and the held-out sources), selecting the
status-ok clips of the held-out sources with no quality thresholds, so ``shards.reader`` streams it like
any view. ``ensure_test_split`` is the one policy `fada split` and dataset-refresh share: a split of the same rule
that exists is kept as it is, also when made from an older catalog snapshot (views are immutable, and training
views leave out every source its rule holds out in the current catalog). Training views exclude it with ``refilter(..., exclude_split=name)``: they drop the split
view's recorded sources and every source the rule holds out in the current catalog, so a view made
from a grown catalog still shares no source with the test split.
"""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shards.atomic import atomic_write_json, read_json
from shards.catalog import catalog_files, read_catalog
from shards.lock import writer_lock
from shards.split_rule import test_sources
from shards.views import ViewError, catalog_snapshot, summarize, view_path


def _is_held_out(table: pa.Table, sources: set[str]) -> np.ndarray:
    column = table.column("source_id")
    return pc.fill_null(pc.is_in(column, pa.array(sorted(sources), column.type)), False).to_numpy(zero_copy_only=False)


def write_test_view(data_dir: str | os.PathLike, name: str = "test", fraction: float = 0.1, seed: int = 0, *,
                    wait: float = 0.0) -> tuple[dict, bool]:
    """Write (or find identical) test-split view ``name``; returns (view, created).

    Like ``refilter``: re-running with the same rule over the same catalog snapshot is a no-op; the name
    taken by another rule, by a view that is not a split, or by an older catalog snapshot is a ViewError.
    Holds the data dir's writer lock (``wait`` seconds for another writer, then `shards.lock.LockHeld`).
    """
    with writer_lock(data_dir, wait=wait, command=f"split {name}"):
        return _write_test_view(data_dir, name, fraction, seed)


def ensure_test_split(data_dir: str | os.PathLike, name: str = "test", fraction: float = 0.1, seed: int = 0, *,
                      wait: float = 0.0) -> tuple[dict | None, str]:
    """Keep test split ``name`` when it exists with this rule, else write it; returns (view, outcome), outcome
    ``kept``, ``written``, or (view None: nothing can be held out yet) ``no_catalog`` or ``too_few_sources``
    (fewer than two sources with a usable clip). The name taken by another rule or by a view that is not a
    split is a ViewError. Holds the writer lock (``wait`` seconds for another writer)."""
    with writer_lock(data_dir, wait=wait, command=f"split {name}"):
        path = view_path(data_dir, name)
        if path.exists():
            existing = read_json(path)
            rule = existing.get("split")
            if rule is not None and (rule["fraction"], rule["seed"]) == (fraction, seed):
                return existing, "kept"
        elif not catalog_files(data_dir):
            return None, "no_catalog"
        elif not test_sources(read_catalog(data_dir, ["source_id", "status"]), fraction, seed):
            return None, "too_few_sources"
        view, _ = _write_test_view(data_dir, name, fraction, seed)  # a conflicting view raises ViewError
        return view, "written"


def _write_test_view(data_dir: str | os.PathLike, name: str, fraction: float, seed: int) -> tuple[dict, bool]:
    path = view_path(data_dir, name)
    snapshot = catalog_snapshot(data_dir)
    if not snapshot["files"]:
        raise ViewError(f"no catalog in {data_dir}: run `fada ingest` first")
    if path.exists():
        existing = read_json(path)
        rule = existing.get("split")
        if rule is None or (rule["fraction"], rule["seed"]) != (fraction, seed):
            raise ViewError(f"view {name!r} already exists with another selection; choose another name")
        if existing["catalog"]["digest"] != snapshot["digest"]:
            raise ViewError(f"view {name!r} was made from an older catalog snapshot; views are immutable, choose a new name")
        return existing, False
    table = read_catalog(data_dir)
    sources = test_sources(table, fraction, seed)
    if not sources:
        raise ViewError(f"the catalog in {data_dir} has fewer than 2 sources: nothing can be held out")
    held = _is_held_out(table, sources)
    status_ok = pc.fill_null(pc.equal(table.column("status"), "ok"), False).to_numpy(zero_copy_only=False)
    keep = held & status_ok
    reasons = pc.if_else(pa.array(status_ok), pa.scalar("split:training_source", pa.string()),
                         table.column("reject_reason").combine_chunks())
    kept = table.select(["shard", "key"]).filter(pa.array(keep)).sort_by([("shard", "ascending"), ("key", "ascending")])
    by_shard: dict[str, list[str]] = defaultdict(list)
    for shard, key in zip(kept.column("shard").to_pylist(), kept.column("key").to_pylist()):
        by_shard[shard].append(key)
    view = {
        "name": name,
        "split": {"fraction": fraction, "seed": seed, "sources": sorted(sources)},
        "catalog": snapshot,
        "shards": dict(by_shard),
        "summary": summarize(table, keep, reasons),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(path, view, exclusive=True)
    return view, True
