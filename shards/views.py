"""Re-filtering: apply a threshold profile to the catalog and write a named, immutable view.

Reads only the catalog (no video). A view (``views/<name>.json``) holds the selected keys grouped by shard,
the profile it applied, the catalog snapshot it read (part files with sizes and sha256), and counts and hours
per source tag and per rejection reason. The same thresholds over the same catalog give an identical view
(re-running is a no-op); a name already taken by other thresholds or another catalog snapshot is an error.
Selection is vectorised and agrees row for row with ``Profile.decide``.
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

from filters.profiles import Bound, Profile
from shards.atomic import atomic_write_json, read_json
from shards.catalog import catalog_files, read_catalog


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


def select(profile: Profile, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(keep mask, reason per row): the ingest reject reason, or ``profile:<first failed dimension>``."""
    n = table.num_rows
    status_ok = np.asarray(table.column("status").to_pylist(), dtype=object) == "ok"
    reasons = np.where(status_ok, None, np.asarray(table.column("reject_reason").to_pylist(), dtype=object))
    first_failed = np.full(n, None, dtype=object)

    def mark(failed: np.ndarray, dimension: str) -> None:
        first_failed[failed & (first_failed == None)] = f"profile:{dimension}"  # noqa: E711 (elementwise)

    for bound in profile.bounds:
        mark(_fails(bound, _values(table, bound.column)), bound.dimension)
    if profile.sync_bounds:
        scorer = np.asarray(table.column("sync_scorer").to_pylist(), dtype=object)
        offsets = np.abs(_values(table, "sync_offset"))
        sync_failed = ~np.isin(scorer, list(profile.sync_bounds))
        for name, bounds in profile.sync_bounds.items():
            rows = scorer == name
            for bound in bounds:
                values = offsets if bound.column == "abs_sync_offset" else _values(table, bound.column)
                sync_failed |= rows & _fails(bound, values)
        mark(sync_failed, "sync")
    keep = status_ok & (first_failed == None)  # noqa: E711
    reasons = np.where(status_ok, first_failed, reasons)
    return keep, reasons


def catalog_snapshot(data_dir: str | os.PathLike) -> dict:
    files = []
    for path in catalog_files(data_dir):
        files.append({"file": path.name, "size": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    return {"files": files, "digest": hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()}


def _summary(table: pa.Table, keep: np.ndarray, reasons: np.ndarray) -> dict:
    hours = _values(table, "n_frames") / _values(table, "fps") / 3600
    tags = np.asarray(table.column("source_tag").to_pylist(), dtype=object)
    per_tag: dict[str, dict] = defaultdict(lambda: {"kept": 0, "kept_hours": 0.0, "rejected": 0})
    per_reason: dict[str, dict] = defaultdict(lambda: {"clips": 0, "hours": 0.0})
    for tag in np.unique(tags.astype(str)):
        rows = tags.astype(str) == tag
        per_tag[tag] = {"kept": int((rows & keep).sum()), "kept_hours": float(np.nansum(hours[rows & keep])), "rejected": int((rows & ~keep).sum())}
    rejected_reasons = reasons[~keep].astype(str)
    rejected_hours = hours[~keep]
    for reason in np.unique(rejected_reasons):
        rows = rejected_reasons == reason
        per_reason[reason] = {"clips": int(rows.sum()), "hours": float(np.nansum(rejected_hours[rows]))}
    return {
        "clips": int(table.num_rows),
        "kept": int(keep.sum()),
        "kept_hours": float(np.nansum(hours[keep])),
        "per_source_tag": dict(per_tag),
        "per_reason": dict(per_reason),
    }


def refilter(data_dir: str | os.PathLike, profile: Profile, name: str) -> tuple[dict, bool]:
    """Write (or find identical) view ``name``; returns (view, created)."""
    path = view_path(data_dir, name)
    snapshot = catalog_snapshot(data_dir)
    if not snapshot["files"]:
        raise ViewError(f"no catalog in {data_dir}: run `fada ingest` first")
    profile_doc = {"name": profile.name, "description": profile.description, "dimensions": profile.raw.get("dimensions", {})}
    profile_digest = hashlib.sha256(json.dumps(profile_doc["dimensions"], sort_keys=True).encode()).hexdigest()
    if path.exists():
        existing = read_json(path)
        if existing["profile_digest"] != profile_digest:
            raise ViewError(f"view {name!r} already exists with other thresholds; choose another name")
        if existing["catalog"]["digest"] != snapshot["digest"]:
            raise ViewError(f"view {name!r} was made from an older catalog snapshot; views are immutable, choose a new name")
        return existing, False
    table = read_catalog(data_dir)
    keep, reasons = select(profile, table)
    keys = np.asarray(table.column("key").to_pylist(), dtype=object)[keep]
    shards = np.asarray(table.column("shard").to_pylist(), dtype=object)[keep]
    by_shard: dict[str, list[str]] = defaultdict(list)
    for shard, key in sorted(zip(shards, keys)):
        by_shard[shard].append(key)
    view = {
        "name": name,
        "profile": profile_doc,
        "profile_digest": profile_digest,
        "catalog": snapshot,
        "shards": dict(by_shard),
        "summary": _summary(table, keep, reasons),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(path, view)
    return view, True


def format_view_summary(view: dict) -> str:
    summary = view["summary"]
    lines = [
        f"view {view['name']!r} (profile {view['profile']['name']}): kept {summary['kept']} of {summary['clips']} clips, "
        f"{summary['kept_hours'] * 3600:.1f} s ({summary['kept_hours']:.4f} h) in {len(view['shards'])} shard(s)",
        f"  {'source tag':<22}{'kept':>8}{'seconds':>10}{'rejected':>10}",
    ]
    for tag, row in sorted(summary["per_source_tag"].items()):
        lines.append(f"  {tag:<22}{row['kept']:>8}{row['kept_hours'] * 3600:>10.1f}{row['rejected']:>10}")
    lines.append(f"  {'rejected by':<22}{'clips':>8}{'seconds':>10}")
    for reason, row in sorted(summary["per_reason"].items()):
        lines.append(f"  {reason:<22}{row['clips']:>8}{row['hours'] * 3600:>10.1f}")
    return "\n".join(lines)
