"""The held-out test split: whole sources kept out of training, so no speaker identity leaks into evaluation.

A source (catalog column ``source_id``, the sha256 of its bytes) is held out when

    u(source) = int(sha256(f"{seed}:{source_id}")[:16 hex digits]) / 2^64  <  fraction,

the hashed-identifier split (Géron, "Hands-On Machine Learning", ch. 2: a test set that stays put when the
data set is refreshed), applied to sources rather than clips. Membership depends only on the source and
(fraction, seed), so it never changes when new sources arrive. Two guards keep tiny catalogs usable, and
only they can change a source's membership as the catalog grows: with at least two sources and none below
``fraction`` the source of smallest u is held out; if every source would be, the one of largest u is left
for training. The unit is the source video: the catalog has no speaker identity, so one speaker filmed in
two source videos can still land on both sides.

``write_test_view`` writes the split as an immutable view in the format of ``shards.views.refilter``
(``shards``, ``catalog``, ``summary``; ``split`` records the rule and the held-out sources), selecting the
status-ok clips of the held-out sources with no quality thresholds, so ``shards.reader`` streams it like
any view. Training views exclude it with ``refilter(..., exclude_split=name)``: they drop the split
view's recorded sources and every source the rule holds out in the current catalog, so a view made
from a grown catalog still shares no source with the test split.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shards.atomic import atomic_write_json, read_json
from shards.catalog import read_catalog
from shards.lock import writer_lock
from shards.views import ViewError, catalog_snapshot, selection_summary, view_path


def source_score(source_id: str, seed: int) -> float:
    """u(source) in [0, 1): the first 64 bits of sha256(f"{seed}:{source_id}") over 2^64."""
    digest = hashlib.sha256(f"{seed}:{source_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def test_sources(catalog_table: pa.Table, fraction: float = 0.1, seed: int = 0) -> set[str]:
    """The ``source_id`` values held out by the rule in the module docstring (empty for < 2 sources).

    Only sources with at least one usable (status ``ok``) clip are candidates: a source whose clips were all
    rejected at ingest would leave the test view empty (a source's clips never change once ingested).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie strictly between 0 and 1, got {fraction}")
    usable = pc.equal(catalog_table.column("status"), "ok")
    ids = pc.filter(catalog_table.column("source_id"), pc.fill_null(usable, False)).to_pylist()
    sources = sorted(s for s in set(ids) if s is not None)
    if len(sources) < 2:
        return set()
    scores = {source: source_score(source, seed) for source in sources}
    held = {source for source in sources if scores[source] < fraction}
    if not held:
        held = {min(sources, key=scores.__getitem__)}
    elif len(held) == len(sources):
        held.remove(max(sources, key=scores.__getitem__))
    return held


test_sources.__test__ = False  # a library function, not a pytest test


def _is_held_out(table: pa.Table, sources: set[str]) -> np.ndarray:
    column = table.column("source_id")
    return pc.fill_null(pc.is_in(column, pa.array(sorted(sources), column.type)), False).to_numpy(zero_copy_only=False)


def load_split(data_dir: str | os.PathLike, name: str) -> dict:
    """The ``split`` record (fraction, seed, sources) of test-split view ``name``."""
    path = view_path(data_dir, name)
    if not path.exists():
        raise ViewError(f"no test split {name!r} in {data_dir}: run write_test_view first")
    split = read_json(path).get("split")
    if split is None:
        raise ViewError(f"view {name!r} is not a test split")
    return split


def without_split(table: pa.Table, keep: np.ndarray, reasons: pa.Array, name: str, split: dict) -> tuple[np.ndarray, pa.Array]:
    """``(keep, reasons)`` of a selection with the clips of split ``name``'s sources dropped.

    Held out: the split's recorded sources and those its rule holds out in ``table``. Dropped clips that the
    selection kept get the reason ``split:<name>``; clips it already rejected keep their first reason.
    """
    held = _is_held_out(table, set(split["sources"]) | test_sources(table, split["fraction"], split["seed"]))
    reasons = pc.if_else(pa.array(keep & held), pa.scalar(f"split:{name}", pa.string()), reasons)
    return keep & ~held, reasons


def write_test_view(data_dir: str | os.PathLike, name: str = "test", fraction: float = 0.1, seed: int = 0, *,
                    wait: float = 0.0) -> tuple[dict, bool]:
    """Write (or find identical) test-split view ``name``; returns (view, created).

    Like ``refilter``: re-running with the same rule over the same catalog snapshot is a no-op; the name
    taken by another rule, by a view that is not a split, or by an older catalog snapshot is a ViewError.
    Holds the data dir's writer lock (``wait`` seconds for another writer, then `shards.lock.LockHeld`).
    """
    with writer_lock(data_dir, wait=wait, command=f"split {name}"):
        return _write_test_view(data_dir, name, fraction, seed)


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
        "summary": selection_summary(table, keep, reasons),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(path, view, exclusive=True)
    return view, True
