"""Re-filtering: apply a threshold profile to the catalog and write a named, immutable view.

Reads only the catalog (no video). A view (``views/<name>.json``) holds the selected keys grouped by shard,
the profile it applied, the catalog snapshot it read (part files with sizes and sha256), and counts and hours
per source tag and per rejection reason. The same thresholds over the same catalog give an identical view
(re-running is a no-op); a name already taken by other thresholds or another catalog snapshot is an error.
Selection is vectorised and agrees row for row with ``Profile.decide``. A training view can leave out the
sources of a held-out test split (``exclude_split``; ``shards.splits``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from filters.profiles import Bound, Profile
from shards.atomic import atomic_write_json, read_json
from shards.catalog import catalog_files, read_catalog
from shards.lock import writer_lock
from shards.reshard import reshard


class ViewError(ValueError):
    """The view cannot be written as asked (name taken by other thresholds, no catalog, bad name)."""


def view_path(data_dir: str | os.PathLike, name: str) -> Path:
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ViewError(f"view name {name!r}: use letters, digits, '-' and '_'")
    return Path(data_dir) / "views" / f"{name}.json"


def _values(table: pa.Table, column: str) -> np.ndarray:
    return table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)


def _fails(bound: Bound, values: np.ndarray) -> np.ndarray:
    failed = np.isnan(values)
    if bound.min is not None:
        failed |= values < bound.min
    if bound.max is not None:
        failed |= values > bound.max
    return failed


def _equals(table: pa.Table, column: str, value: str) -> np.ndarray:
    return pc.fill_null(pc.equal(table.column(column), value), False).to_numpy(zero_copy_only=False)


def select(profile: Profile, table: pa.Table) -> tuple[np.ndarray, pa.Array]:
    """(keep mask, reason per row): the ingest reject reason, or ``profile:<first failed dimension>``."""
    status_ok = _equals(table, "status", "ok")
    first_failed = np.zeros(table.num_rows, np.int16)  # 0 = passed, else 1 + index into `dimensions`
    dimensions: list[str] = []

    def mark(failed: np.ndarray, dimension: str) -> None:
        if dimension not in dimensions:
            dimensions.append(dimension)
        first_failed[failed & (first_failed == 0)] = dimensions.index(dimension) + 1

    for bound in profile.bounds:
        mark(_fails(bound, _values(table, bound.column)), bound.dimension)
    if profile.sync_bounds:
        offsets = np.abs(_values(table, "sync_offset"))
        sync_failed = np.ones(table.num_rows, bool)
        for name, bounds in profile.sync_bounds.items():
            rows = _equals(table, "sync_scorer", name)
            scorer_failed = np.zeros(table.num_rows, bool)
            for bound in bounds:
                scorer_failed |= _fails(bound, offsets if bound.column == "abs_sync_offset" else _values(table, bound.column))
            sync_failed[rows] = scorer_failed[rows]
        mark(sync_failed, "sync")
    keep = status_ok & (first_failed == 0)
    labels = pa.array([None] + [f"profile:{d}" for d in dimensions], pa.string())
    profile_reason = pc.take(labels, pa.array(first_failed.astype(np.int32)))
    reasons = pc.if_else(pa.array(status_ok), profile_reason, table.column("reject_reason").combine_chunks())
    return keep, reasons


def catalog_snapshot(data_dir: str | os.PathLike) -> dict:
    files = []
    for path in catalog_files(data_dir):
        files.append({"file": path.name, "size": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    return {"files": files, "digest": hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()}


def _summary(table: pa.Table, keep: np.ndarray, reasons: pa.Array) -> dict:
    hours = pc.divide(pc.cast(table.column("n_frames"), pa.float64()), pc.multiply(pc.cast(table.column("fps"), pa.float64()), 3600.0))
    facts = pa.table({"tag": pc.fill_null(table.column("source_tag"), "(none)"), "kept": pa.array(keep), "hours": hours, "reason": reasons})
    per_tag = {}
    grouped = facts.group_by(["tag", "kept"]).aggregate([("hours", "count"), ("hours", "sum")]).to_pylist()
    for row in grouped:
        entry = per_tag.setdefault(row["tag"], {"kept": 0, "kept_hours": 0.0, "rejected": 0})
        if row["kept"]:
            entry["kept"], entry["kept_hours"] = row["hours_count"], row["hours_sum"] or 0.0
        else:
            entry["rejected"] = row["hours_count"]
    rejected = facts.filter(pa.array(~keep)).group_by("reason").aggregate([("hours", "count"), ("hours", "sum")])
    per_reason = {str(r["reason"]): {"clips": r["hours_count"], "hours": r["hours_sum"] or 0.0} for r in rejected.to_pylist()}
    return {
        "clips": int(table.num_rows),
        "kept": int(keep.sum()),
        "kept_hours": float(pc.sum(pc.filter(hours, pa.array(keep))).as_py() or 0.0),
        "per_source_tag": per_tag,
        "per_reason": per_reason,
    }


def refilter(data_dir: str | os.PathLike, profile: Profile, name: str, *, reshard_below: float | None = None,
             exclude_split: str | None = None, wait: float = 0.0) -> tuple[dict, bool]:
    """`_refilter` holding the data dir's writer lock (`shards.lock`; ``wait`` seconds for another writer), so
    of two refilters of one name exactly one writes and the other finds the name taken (or identical)."""
    with writer_lock(data_dir, wait=wait, command=f"refilter {name}"):
        return _refilter(data_dir, profile, name, reshard_below=reshard_below, exclude_split=exclude_split)


def _refilter(data_dir: str | os.PathLike, profile: Profile, name: str, *, reshard_below: float | None = None,
              exclude_split: str | None = None) -> tuple[dict, bool]:
    """Write (or find identical) view ``name``; returns (view, created).

    ``reshard_below`` (e.g. 0.5): shards the view keeps less than that share of are first copied into new
    dense shards (``shards.reshard``) and the view points at those instead.
    ``exclude_split``: the name of a test-split view (``shards.splits``) whose sources the view leaves out.
    """
    from shards.splits import load_split, without_split  # here: shards.splits imports this module

    path = view_path(data_dir, name)
    snapshot = catalog_snapshot(data_dir)
    if not snapshot["files"]:
        raise ViewError(f"no catalog in {data_dir}: run `fada ingest` first")
    profile_doc = {"name": profile.name, "description": profile.description, "dimensions": profile.raw.get("dimensions", {})}
    profile_digest = hashlib.sha256(json.dumps(profile_doc["dimensions"], sort_keys=True).encode()).hexdigest()
    excluded = None if exclude_split is None else {"view": exclude_split, **load_split(data_dir, exclude_split)}
    if path.exists():
        existing = read_json(path)
        if existing["profile_digest"] != profile_digest:
            raise ViewError(f"view {name!r} already exists with other thresholds; choose another name")
        if existing.get("excluded_split") != excluded:
            raise ViewError(f"view {name!r} already exists with another test-split exclusion; choose another name")
        if existing["catalog"]["digest"] != snapshot["digest"]:
            raise ViewError(f"view {name!r} was made from an older catalog snapshot; views are immutable, choose a new name")
        return existing, False
    table = read_catalog(data_dir)
    keep, reasons = select(profile, table)
    if excluded is not None:
        keep, reasons = without_split(table, keep, reasons, exclude_split, excluded)
    kept = table.select(["shard", "key"]).filter(pa.array(keep)).sort_by([("shard", "ascending"), ("key", "ascending")])
    by_shard: dict[str, list[str]] = defaultdict(list)
    for shard, key in zip(kept.column("shard").to_pylist(), kept.column("key").to_pylist()):
        by_shard[shard].append(key)
    shard_keys = dict(by_shard)
    if reshard_below is not None:
        shard_keys = reshard(data_dir, name, shard_keys, min_keep_ratio=reshard_below)
    view = {
        "name": name,
        "profile": profile_doc,
        "profile_digest": profile_digest,
        "excluded_split": excluded,
        "catalog": snapshot,
        "shards": shard_keys,
        "summary": _summary(table, keep, reasons),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(path, view, exclusive=True)
    return view, True


def format_view_summary(view: dict) -> str:
    summary = view["summary"]
    if "split" in view:
        split = view["split"]
        made_by = f"test split: fraction {split['fraction']:g}, seed {split['seed']}, {len(split['sources'])} source(s)"
    else:
        made_by = f"profile {view['profile']['name']}"
    lines = [
        f"view {view['name']!r} ({made_by}): kept {summary['kept']} of {summary['clips']} clips, "
        f"{summary['kept_hours'] * 3600:.1f} s ({summary['kept_hours']:.4f} h) in {len(view['shards'])} shard(s)",
        f"  {'source tag':<22}{'kept':>8}{'seconds':>10}{'rejected':>10}",
    ]
    for tag, row in sorted(summary["per_source_tag"].items()):
        lines.append(f"  {tag:<22}{row['kept']:>8}{row['kept_hours'] * 3600:>10.1f}{row['rejected']:>10}")
    lines.append(f"  {'rejected by':<22}{'clips':>8}{'seconds':>10}")
    for reason, row in sorted(summary["per_reason"].items()):
        lines.append(f"  {reason:<22}{row['clips']:>8}{row['hours'] * 3600:>10.1f}")
    return "\n".join(lines)
