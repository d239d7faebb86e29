"""Re-filtering: apply a threshold profile to the catalog and write a named, immutable view.

Reads only the catalog (no video). A view (``views/<name>.json``) holds the selected keys grouped by shard,
the profile it applied, the catalog snapshot it read (part files with sizes and sha256), and counts and hours
per source tag and per rejection reason. The same thresholds over the same catalog give an identical view
(re-running is a no-op); a name already taken by other thresholds or another catalog snapshot is an error.
Selection is vectorised and agrees row for row with ``Profile.decide``. A training view can leave out the
sources of a held-out test split (``exclude_split``; ``shards.splits``).

At scale (10M rows) the catalog parts of the snapshot are read batch by batch, only the columns the profile,
the summary and the view need; each batch contributes its kept (shard, key) rows and summary counts, and the
view's JSON is written from the Arrow key buffer (``write_view``). `shards.dry_run` does the same selection and
writes score histograms instead of a view.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from filters.profiles import Bound, Profile
from shards.atomic import atomic_path, atomic_write_json, read_json
from shards.catalog import catalog_dir, catalog_files, iter_catalog
from shards.lock import writer_lock
from shards.reshard import reshard
from shards.split_rule import test_sources


class ViewError(ValueError):
    """The view cannot be written as asked (name taken by other thresholds, no catalog, bad name)."""


def view_path(data_dir: str | os.PathLike, name: str) -> Path:
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise ViewError(f"view name {name!r}: use letters, digits, '-' and '_'")
    return Path(data_dir) / "views" / f"{name}.json"


def load_split(data_dir: str | os.PathLike, name: str) -> dict:
    """The ``split`` record (fraction, seed, sources) of test-split view ``name``."""
    path = view_path(data_dir, name)
    if not path.exists():
        raise ViewError(f"no test split {name!r} in {data_dir}: run write_test_view first")
    split = read_json(path).get("split")
    if split is None:
        raise ViewError(f"view {name!r} is not a test split")
    return split


def _values(table: pa.Table, column: str) -> np.ndarray:
    """The column as floats in its stored precision (float32 scores stay float32; missing → NaN)."""
    values = table.column(column).to_numpy(zero_copy_only=False)
    return values if values.dtype.kind == "f" else values.astype(np.float64)


def _threshold(bound: float, dtype: np.dtype, up: bool) -> np.floating:
    """``bound`` in ``dtype`` such that comparing stored values against it decides exactly as against the
    float64 bound: the nearest representable value above (``up``, for min bounds) or below (max bounds)."""
    near = dtype.type(bound)
    if float(near) == bound or (float(near) > bound) == up:
        return near
    return np.nextafter(near, dtype.type(np.inf if up else -np.inf))


def _fails(bound: Bound, values: np.ndarray) -> np.ndarray:
    failed = np.isnan(values)
    if bound.min is not None:
        failed |= values < _threshold(bound.min, values.dtype, up=True)
    if bound.max is not None:
        failed |= values > _threshold(bound.max, values.dtype, up=False)
    return failed


def _equals(table: pa.Table, column: str, value: str) -> np.ndarray:
    values = table.column(column)
    if pa.types.is_dictionary(values.type):  # compare the few dictionary values, then look up each row's
        values = values.combine_chunks()
        matches = np.append(np.asarray(values.dictionary.to_pylist(), dtype=object) == value, False)
        return matches[pc.fill_null(values.indices, -1).to_numpy(zero_copy_only=False)]
    return pc.fill_null(pc.equal(values, value), False).to_numpy(zero_copy_only=False)


def dimension_failures(profile: Profile, table: pa.Table) -> dict[str, np.ndarray]:
    """Per bounded dimension (profile order, ``sync`` last): which rows fail it (missing scores fail)."""
    failures: dict[str, np.ndarray] = {}
    for bound in profile.bounds:
        failed = _fails(bound, _values(table, bound.column))
        failures[bound.dimension] = failures[bound.dimension] | failed if bound.dimension in failures else failed
    if profile.sync_bounds:
        offsets = np.abs(_values(table, "sync_offset"))
        sync_failed = np.ones(table.num_rows, bool)
        for name, bounds in profile.sync_bounds.items():
            rows = _equals(table, "sync_scorer", name)
            scorer_failed = np.zeros(table.num_rows, bool)
            for bound in bounds:
                scorer_failed |= _fails(bound, offsets if bound.column == "abs_sync_offset" else _values(table, bound.column))
            sync_failed[rows] = scorer_failed[rows]
        failures["sync"] = sync_failed
    return failures


def select(profile: Profile, table: pa.Table) -> tuple[np.ndarray, pa.Array]:
    """(keep mask, reason per row): the ingest reject reason, or ``profile:<first failed dimension>``."""
    keep, reasons, _ = _decide(profile, table)
    return keep, reasons.cast(pa.string())


def _dictionary(values: pa.Array | pa.ChunkedArray) -> pa.DictionaryArray:
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)


def _decide(profile: Profile, table: pa.Table) -> tuple[np.ndarray, pa.DictionaryArray, dict[str, np.ndarray]]:
    """``select`` with the reasons dictionary-encoded (no string per row), plus the failures of each
    dimension (for the dry run's per-dimension counts)."""
    status_ok = _equals(table, "status", "ok")
    failures = dimension_failures(profile, table)
    first_failed = np.zeros(table.num_rows, np.int32)  # 0 = passed, else 1 + index into `failures`
    for index, failed in enumerate(failures.values()):
        first_failed[failed & (first_failed == 0)] = index + 1
    keep = status_ok & (first_failed == 0)
    rejected = _dictionary(table.column("reject_reason"))
    reject_code = pc.fill_null(rejected.indices, -1).to_numpy(zero_copy_only=False)
    labels = pa.concat_arrays([pa.array([f"profile:{d}" for d in failures], pa.string()), rejected.dictionary.cast(pa.string())])
    codes = np.where(status_ok, first_failed - 1, len(failures) + reject_code)
    reasons = pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32), mask=keep | (~status_ok & (reject_code < 0))), labels)
    return keep, reasons, failures


def _with_reason(reasons: pa.DictionaryArray, rows: np.ndarray, label: str) -> pa.DictionaryArray:
    """``reasons`` with ``label`` at ``rows``."""
    codes = pc.fill_null(reasons.indices, -1).to_numpy(zero_copy_only=False)
    codes = np.where(rows, len(reasons.dictionary), codes).astype(np.int32)
    labels = pa.concat_arrays([reasons.dictionary, pa.array([label], pa.string())])
    return pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0), labels)


def profile_columns(profile: Profile) -> list[str]:
    """The catalog columns ``select`` reads for ``profile``."""
    columns = ["status", "reject_reason", *(b.column for b in profile.bounds)]
    if profile.sync_bounds:
        columns += ["sync_scorer", "sync_offset"]
        columns += [b.column for bounds in profile.sync_bounds.values() for b in bounds if b.column != "abs_sync_offset"]
    return list(dict.fromkeys(columns))


def catalog_snapshot(data_dir: str | os.PathLike) -> dict:
    """The catalog's parts with size and sha256, and one digest of them all.

    Parts are immutable, so a part's sha256 is computed once and remembered in ``catalog/.sha256.json``
    (keyed by name, size and mtime; any change means hashing again): a 10M-row catalog is ~0.8 GB to hash."""
    known_path = catalog_dir(data_dir) / ".sha256.json"
    known = read_json(known_path) if known_path.exists() else {}
    files, changed = [], False
    for path in catalog_files(data_dir):
        stat = path.stat()
        entry = known.get(path.name)
        if entry is None or (entry["size"], entry["mtime_ns"]) != (stat.st_size, stat.st_mtime_ns):
            with open(path, "rb") as fh:
                entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": hashlib.file_digest(fh, "sha256").hexdigest()}
            known[path.name], changed = entry, True
        files.append({"file": path.name, "size": stat.st_size, "sha256": entry["sha256"]})
    if changed:
        atomic_write_json(known_path, known)
    return {"files": files, "digest": hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()}


def snapshot_files(data_dir: str | os.PathLike, snapshot: dict) -> list[Path]:
    """The catalog parts a snapshot names (old parts are never deleted, so a view's snapshot stays readable)."""
    return [catalog_dir(data_dir) / entry["file"] for entry in snapshot["files"]]


class _Tally:
    """Clips and hours per (source tag, kept, reason), added batch by batch with integer codes (no group-by
    over strings): what a view's ``summary`` reports."""

    def __init__(self):
        self.cells: dict[tuple, list] = {}

    def add(self, table: pa.Table, keep: np.ndarray, reasons: pa.Array) -> None:
        frames = table.column("n_frames").to_numpy(zero_copy_only=False).astype(np.float64)
        hours = frames / (table.column("fps").to_numpy(zero_copy_only=False).astype(np.float64) * 3600.0)
        tags, reasons = _dictionary(pc.fill_null(table.column("source_tag"), "(none)")), _dictionary(reasons)
        n_reasons = len(reasons.dictionary) + 1  # code 0: no reason (kept)
        tag_code = tags.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        reason_code = pc.fill_null(reasons.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64) + 1
        cell_of_row = (tag_code * n_reasons + reason_code) * 2 + keep
        counts, sums = np.bincount(cell_of_row), np.bincount(cell_of_row, weights=np.nan_to_num(hours))
        tag_values, reason_values = tags.dictionary.to_pylist(), [None, *reasons.dictionary.to_pylist()]
        cells = np.flatnonzero(counts)
        for cell, count, total in zip(cells.tolist(), counts[cells].tolist(), sums[cells].tolist()):
            rest, kept = divmod(cell, 2)
            tag, reason = divmod(rest, n_reasons)
            entry = self.cells.setdefault((tag_values[tag], bool(kept), reason_values[reason]), [0, 0.0])
            entry[0] += count
            entry[1] += total

    def summary(self) -> dict:
        per_tag: dict[str, dict] = {}
        per_reason: dict[str, dict] = {}
        for (tag, kept, reason), (clips, hours) in self.cells.items():
            entry = per_tag.setdefault(tag, {"kept": 0, "kept_hours": 0.0, "rejected": 0})
            if kept:
                entry["kept"] += clips
                entry["kept_hours"] += hours
            else:
                entry["rejected"] += clips
                cause = per_reason.setdefault(str(reason), {"clips": 0, "hours": 0.0})
                cause["clips"] += clips
                cause["hours"] += hours
        return {
            "clips": sum(clips for clips, _ in self.cells.values()),
            "kept": sum(entry["kept"] for entry in per_tag.values()),
            "kept_hours": sum(entry["kept_hours"] for entry in per_tag.values()),
            "per_source_tag": per_tag,
            "per_reason": per_reason,
        }


def summarize(table: pa.Table, keep: np.ndarray, reasons: pa.Array) -> dict:
    """A view's ``summary`` of the rows ``keep`` selects: clips, kept and hours, per source tag and per reason."""
    tally = _Tally()
    tally.add(table, keep, reasons)
    return tally.summary()


class KeysByShard(Mapping):
    """A view's ``shards`` mapping (shard → sorted keys) backed by an Arrow table of the kept (shard, key) rows,
    sorted: a 10M-row re-filter hands it on without building millions of Python strings."""

    def __init__(self, kept: pa.Table):
        self.kept = kept
        shard = kept.column("shard").combine_chunks()
        starts = [0] if kept.num_rows else []
        if kept.num_rows > 1:
            changed = pc.not_equal(shard.slice(1), shard.slice(0, kept.num_rows - 1)).to_numpy(zero_copy_only=False)
            starts += list(np.flatnonzero(changed) + 1)
        self.spans = {shard[i].as_py(): (i, j) for i, j in zip(starts, starts[1:] + [kept.num_rows])}

    def keys_array(self) -> pa.Array:
        return self.kept.column("key").combine_chunks()

    def __getitem__(self, shard: str) -> list[str]:
        i, j = self.spans[shard]
        return self.kept.column("key").slice(i, j - i).to_pylist()

    def __iter__(self):
        return iter(self.spans)

    def __len__(self) -> int:
        return len(self.spans)


def kept_keys(view: dict) -> pa.Array:
    """Every key a view selects, as an Arrow string array."""
    shards = view["shards"]
    return shards.keys_array() if isinstance(shards, KeysByShard) else pa.array([k for keys in shards.values() for k in keys or []], pa.string())


CATEGORICAL = ("shard", "status", "reject_reason", "source_tag", "sync_scorer")  # read dictionary-encoded


def _view_columns(profile: Profile, exclude: bool) -> list[str]:
    return list(dict.fromkeys(["key", "shard", "source_tag", "n_frames", "fps", *profile_columns(profile), *(["source_id"] if exclude else [])]))


def _held_sources(data_dir: str | os.PathLike, files: list[Path], excluded: dict) -> pa.Array:
    """The split's recorded sources and those its rule holds out in this catalog (``shards.split_rule``)."""
    usable = set()
    for batch in iter_catalog(data_dir, ["source_id", "status"], files):
        usable.update(pc.unique(pc.filter(batch.column("source_id"), pc.fill_null(pc.equal(batch.column("status"), "ok"), False))).to_pylist())
    sources = pa.table({"source_id": pa.array(sorted(s for s in usable if s is not None), pa.string())})
    sources = sources.append_column("status", pa.array(["ok"] * sources.num_rows, pa.string()))
    held = set(excluded["sources"]) | test_sources(sources, excluded["fraction"], excluded["seed"])
    return pa.array(sorted(held), pa.string())


def scan_selection(data_dir: str | os.PathLike, profile: Profile, files: list[Path], excluded: dict | None = None,
                   batch_rows: int = 1 << 18) -> dict:
    """Apply ``profile`` to the catalog parts ``files`` batch by batch, reading only the columns it needs.

    Returns ``kept`` (the kept (shard, key) rows sorted), ``summary`` (as in a view) and ``per_dimension``
    (status-ok clips that pass / fail each bounded dimension on its own). ``excluded``: a test split record
    (``{"view", "fraction", "seed", "sources"}``) whose sources are dropped with reason ``split:<view>``."""
    held = None if excluded is None else _held_sources(data_dir, files, excluded)
    kept, tally = [], _Tally()
    per_dimension: dict[str, dict[str, int]] = {}
    for batch in iter_catalog(data_dir, _view_columns(profile, excluded is not None), files, batch_rows, dictionary=CATEGORICAL):
        keep, reasons, failures = _decide(profile, batch)
        if held is not None:
            dropped = keep & pc.fill_null(pc.is_in(batch.column("source_id"), value_set=held), False).to_numpy(zero_copy_only=False)
            reasons = _with_reason(reasons, dropped, f"split:{excluded['view']}")
            keep = keep & ~dropped
        status_ok = _equals(batch, "status", "ok")
        for dimension, failed in failures.items():
            counts = per_dimension.setdefault(dimension, {"passed": 0, "failed": 0})
            counts["failed"] += int((failed & status_ok).sum())
            counts["passed"] += int((~failed & status_ok).sum())
        tally.add(batch, keep, reasons)
        kept_rows = batch.select(["shard", "key"]).filter(pa.array(keep))
        kept.append(pa.table({"shard": kept_rows.column("shard").cast(pa.string()), "key": kept_rows.column("key")}))
    schema = pa.schema([("shard", pa.string()), ("key", pa.string())])
    kept_table = pa.concat_tables(kept) if kept else schema.empty_table()
    return {"kept": kept_table.sort_by([("shard", "ascending"), ("key", "ascending")]), "summary": tally.summary(), "per_dimension": per_dimension}


def refilter(data_dir: str | os.PathLike, profile: Profile, name: str, *, reshard_below: float | None = None,
             exclude_split: str | None = None, wait: float = 0.0, flow_run_id: str | None = None) -> tuple[dict, bool]:
    """`_refilter` holding the data dir's writer lock (`shards.lock`; ``wait`` seconds for another writer), so
    of two refilters of one name exactly one writes and the other finds the name taken (or identical)."""
    with writer_lock(data_dir, wait=wait, command=f"refilter {name}"):
        return _refilter(data_dir, profile, name, reshard_below=reshard_below, exclude_split=exclude_split,
                         flow_run_id=flow_run_id)


def _refilter(data_dir: str | os.PathLike, profile: Profile, name: str, *, reshard_below: float | None = None,
              exclude_split: str | None = None, flow_run_id: str | None = None) -> tuple[dict, bool]:
    """Write (or find identical) view ``name``; returns (view, created).

    ``reshard_below`` (e.g. 0.5): shards the view keeps less than that share of are first copied into new
    dense shards (``shards.reshard``) and the view points at those instead.
    ``exclude_split``: the name of a test-split view (``shards.splits``) whose sources the view leaves out.
    ``flow_run_id``: the Prefect flow run doing it, recorded in resharded shards' lineage.
    The catalog is read batch by batch, only the columns the profile needs (``scan_selection``); the view's
    ``shards`` is a `KeysByShard` over the kept rows, written to JSON straight from Arrow (``write_view``).
    """
    path = view_path(data_dir, name)
    snapshot = catalog_snapshot(data_dir)
    if not snapshot["files"]:
        raise ViewError(f"no catalog in {data_dir}: run `fada ingest` first")
    profile_doc = profile_record(profile)
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
    scan = scan_selection(data_dir, profile, snapshot_files(data_dir, snapshot), excluded)
    shard_keys: Mapping[str, list[str]] = KeysByShard(scan["kept"])
    if reshard_below is not None:
        shard_keys = reshard(data_dir, name, dict(shard_keys.items()), min_keep_ratio=reshard_below, flow_run_id=flow_run_id)
    view = {
        "name": name,
        "profile": profile_doc,
        "profile_digest": profile_digest,
        "excluded_split": excluded,
        "catalog": snapshot,
        "shards": shard_keys,
        "summary": scan["summary"],
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_view(path, view)
    return view, True


def profile_record(profile: Profile) -> dict:
    """What a view records of the profile it applied (name, description, thresholds)."""
    return {"name": profile.name, "description": profile.description, "dimensions": profile.raw.get("dimensions", {})}


def write_view(path: Path, view: dict) -> None:
    """Write the view JSON atomically (temporary name, then rename, never replacing an existing view). The one
    place a view file is written.

    A `KeysByShard` is written from the Arrow key buffer: one ``"key",`` string per row made by Arrow and
    sliced per shard, so no key becomes a Python string (keys that would need JSON escaping fall back to
    ``json.dumps``)."""
    shards = view["shards"]
    if not isinstance(shards, KeysByShard) or not shards.spans or pc.any(pc.match_substring_regex(shards.keys_array(), r'["\\\x00-\x1f]')).as_py():
        atomic_write_json(path, {**view, "shards": {shard: list(keys) for shard, keys in shards.items()}}, exclusive=True)
        return
    rest = json.dumps({k: v for k, v in view.items() if k != "shards"}, indent=1, sort_keys=True, allow_nan=False)
    quoted = pc.binary_join_element_wise('"', shards.keys_array(), '",', "")  # '"key",' per row, one buffer
    offsets = np.frombuffer(quoted.buffers()[1], np.int32)[quoted.offset:quoted.offset + len(quoted) + 1]
    data = memoryview(quoted.buffers()[2])
    with atomic_path(path, exclusive=True) as tmp, open(tmp, "wb") as out:
        out.write(b'{\n "shards": {')
        for index, (shard, (i, j)) in enumerate(shards.spans.items()):
            out.write(((",\n  " if index else "\n  ") + json.dumps(shard) + ": [").encode())
            out.write(data[offsets[i]:offsets[j] - 1])  # without the last comma
            out.write(b"]")
        out.write(b"\n },\n" + rest[1:].lstrip("\n").encode() + b"\n")
        out.flush()
        os.fsync(out.fileno())


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
