"""The catalog: a parquet dataset with one row per clip (rejected clips included), the only thing a
re-filter reads. Column names are a public contract (DESIGN.md §2).

Each ingest run appends one part file (``catalog/part-%06d.parquet``), written under a temporary name and
renamed; old parts are never rewritten. ``rebuild_catalog`` recreates it from the shards' JSON members.

A rescore (``shards.rescore``) appends a *column part* ``part-%06d-rescore-<scorer>.parquet``: only ``key``
and that scorer's columns, with the scorer, its version and the run id in the parquet metadata
(``fada.part``). Parts share one sequence, so the index orders them: a read takes each column of a key from
the newest part that carries the column and the key (``read_catalog``; a key missing from a column part
keeps its older value). Old parts stay for audit and for the views made from them (``files=``: the parts
of a view's catalog snapshot). Every part is sorted by key, which makes that merge a streaming one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from shards.atomic import atomic_path
from shards.tar_members import ReaderStats, read_shard

CATALOG_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.string()),  # shard path relative to DATA_DIR; null when the clip has no media (rejected)
        ("source_id", pa.string()),
        ("source_uri", pa.string()),
        ("source_tag", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("n_frames", pa.int32()),
        ("fps", pa.float32()),
        ("status", pa.string()),
        ("reject_reason", pa.string()),
        ("source_prior", pa.float32()),
        ("source_denied", pa.float32()),
        ("iqa", pa.float32()),
        ("iqa_learned", pa.float32()),
        ("sharpness", pa.float32()),
        ("reblur_ratio", pa.float32()),
        ("face_px", pa.float32()),
        ("exposure_clip", pa.float32()),
        ("noise", pa.float32()),
        ("blockiness", pa.float32()),
        ("sync_offset", pa.float32()),
        ("sync_conf", pa.float32()),
        ("sync_dist", pa.float32()),
        ("sync_scorer", pa.string()),
        ("bg_motion", pa.float32()),
        ("camera_shake", pa.float32()),
        ("bg_share", pa.float32()),
        ("head_motion", pa.float32()),
        ("pose_range_deg", pa.float32()),
        ("head_speed_deg_s", pa.float32()),
        ("single_face_ratio", pa.float32()),
        ("face_mesh_ratio", pa.float32()),
        ("speech_ratio", pa.float32()),
        ("audio_clip_ratio", pa.float32()),
        ("snr_db", pa.float32()),
        ("score_errors", pa.string()),  # JSON object: scorer → why it could not score
    ]
)
CATALOG_COLUMNS = tuple(CATALOG_SCHEMA.names)


def catalog_dir(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / "catalog"


def rows_to_table(records: list[dict], shard_of_key: dict[str, str]) -> pa.Table:
    """Catalog rows for clip records; columns a record lacks are null."""
    rows = []
    for record in records:
        row = {name: record.get(name) for name in CATALOG_COLUMNS}
        row["shard"] = shard_of_key.get(record["key"])
        row["score_errors"] = json.dumps(record.get("score_errors") or {}, sort_keys=True)
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=CATALOG_SCHEMA)


def _next_part(folder: Path, suffix: str = "") -> Path:
    existing = sorted(folder.glob("part-*.parquet"))
    index = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
    return folder / f"part-{index:06d}{suffix}.parquet"


def append_part(data_dir: str | os.PathLike, table: pa.Table) -> Path | None:
    """Write ``table`` as the next part file; returns its path (None for an empty table)."""
    if table.num_rows == 0:
        return None
    folder = catalog_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    final = _next_part(folder)
    with atomic_path(final) as tmp:
        pq.write_table(table.sort_by("key"), tmp, compression="zstd")
    return final


COLUMN_PART_META = b"fada.part"


def append_column_part(data_dir: str | os.PathLike, table: pa.Table, scorer: str, meta: dict) -> Path:
    """Write a rescore part: ``key`` plus some catalog columns (types of ``CATALOG_SCHEMA``), newest from now on.

    ``meta`` (scorer version, run id …) is stored with the part's column list in the parquet metadata."""
    columns = [name for name in table.column_names if name != "key"]
    unknown = sorted(set(columns) - set(CATALOG_COLUMNS))
    if "key" not in table.column_names or unknown or not columns:
        raise ValueError(f"a column part needs 'key' and catalog columns; got {table.column_names}")
    if not all(c.isalnum() or c == "_" for c in scorer):
        raise ValueError(f"scorer name {scorer!r}: letters, digits and '_' only")
    schema = pa.schema([CATALOG_SCHEMA.field("key"), *(CATALOG_SCHEMA.field(c) for c in columns)])
    doc = {"kind": "rescore", "scorer": scorer, "columns": columns, **meta}
    table = table.select(schema.names).cast(schema).replace_schema_metadata({COLUMN_PART_META: json.dumps(doc, sort_keys=True).encode()})
    folder = catalog_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    final = _next_part(folder, f"-rescore-{scorer}")
    with atomic_path(final) as tmp:
        pq.write_table(table.sort_by("key"), tmp, compression="zstd")
    return final


def is_column_part(path: str | os.PathLike) -> bool:
    return "-rescore-" in Path(path).name


def column_part_info(path: str | os.PathLike) -> dict:
    """The ``fada.part`` metadata of a column part (scorer, version, run id, columns); reads the footer only."""
    return json.loads(pq.read_schema(path).metadata[COLUMN_PART_META])


def catalog_files(data_dir: str | os.PathLike) -> list[Path]:
    return sorted(catalog_dir(data_dir).glob("part-*.parquet"))


def _split_parts(data_dir: str | os.PathLike, files: list[Path] | None) -> tuple[list[Path], list[Path]]:
    """(row parts, column parts oldest first) of ``files`` (default: every part of the catalog)."""
    files = catalog_files(data_dir) if files is None else sorted(Path(f) for f in files)
    return [f for f in files if not is_column_part(f)], [f for f in files if is_column_part(f)]


def _overlays(column_parts: list[Path], wanted: list[str]) -> list[tuple[Path, list[str]]]:
    """The column parts that carry any of ``wanted``, with those columns, oldest first."""
    out = []
    for path in column_parts:
        carried = [c for c in column_part_info(path)["columns"] if c in wanted]
        if carried:
            out.append((path, carried))
    return out


def _empty(columns: list[str] | None) -> pa.Table:
    return CATALOG_SCHEMA.empty_table() if columns is None else CATALOG_SCHEMA.empty_table().select(columns)


def read_catalog(data_dir: str | os.PathLike, columns: list[str] | None = None, files: list[Path] | None = None) -> pa.Table:
    """The catalog (one row per key) with the newest value of each column; ``files``: read only these parts
    (e.g. a view's snapshot), else all. See ``iter_catalog``."""
    wanted = list(CATALOG_COLUMNS) if columns is None else list(columns)
    batches = list(iter_catalog(data_dir, wanted, files))
    return pa.concat_tables(batches) if batches else _empty(wanted)


def iter_catalog(data_dir: str | os.PathLike, columns: list[str], files: list[Path] | None = None,
                 batch_rows: int = 1 << 18, dictionary: tuple[str, ...] = ()) -> Iterator[pa.Table]:
    """The catalog's rows in batches (only ``columns`` decoded), without holding the whole catalog.

    Row parts are streamed batch by batch. For each column part carrying one of ``columns`` (oldest first),
    its key and those columns are held in memory; parts are sorted by key, so the part's rows for a batch lie
    between the batch's smallest and largest key (found by bisection) and only that slice is hashed to look up
    the batch's keys: a merge in linear time. A key the column part lacks keeps its older value.
    ``dictionary``: string columns to keep dictionary-encoded as parquet stores them (status, tags, shard
    paths: a few distinct values), which saves materialising a string per row; a column a column part
    carries comes back plain."""
    rows, column_parts = _split_parts(data_dir, files)
    if not rows:
        return
    columns = list(columns)
    try:  # a damaged part raises an error naming it and pointing at `fada repair` (pyarrow's names no file)
        overlays = [(pq.read_table(path, columns=["key", *carried], read_dictionary=[c for c in carried if c in dictionary]), carried)
                    for path, carried in _overlays(column_parts, columns)]
        read = columns if not overlays or "key" in columns else ["key", *columns]
        schema = pa.schema([pa.field(f.name, pa.dictionary(pa.int32(), f.type)) if f.name in dictionary else f for f in CATALOG_SCHEMA])
        parquet = pads.ParquetFileFormat(read_options=pads.ParquetReadOptions(dictionary_columns=set(dictionary)))
        dataset = pads.dataset([str(f) for f in rows], schema=schema, format=parquet)
        for batch in dataset.to_batches(columns=read, batch_size=batch_rows, batch_readahead=2, fragment_readahead=1):
            if not batch.num_rows:
                continue
            table = pa.Table.from_batches([batch])
            for part, carried in overlays:
                table = _apply_column_part(table, part, carried)
            yield table.select(columns)
    except (pa.ArrowException, OSError) as exc:
        raise damaged_part_error(data_dir, rows + column_parts, exc) from exc


def _bisect(keys: pa.ChunkedArray, value: str, right: bool) -> int:
    lo, hi = 0, len(keys)
    while lo < hi:
        mid = (lo + hi) // 2
        probe = keys[mid].as_py()
        if probe < value or (right and probe == value):
            lo = mid + 1
        else:
            hi = mid
    return lo


def _apply_column_part(table: pa.Table, part: pa.Table, carried: list[str]) -> pa.Table:
    """``table`` with ``carried`` columns replaced by ``part``'s values where ``part`` (sorted by key) has the key."""
    bounds = pc.min_max(table.column("key")).as_py()
    if bounds["min"] is None:
        return table
    part_keys = part.column("key")
    first, last = _bisect(part_keys, bounds["min"], False), _bisect(part_keys, bounds["max"], True)
    if first == last:
        return table
    window = part.slice(first, last - first)
    position = pc.index_in(table.column("key"), value_set=window.column("key").combine_chunks())
    found = pc.is_valid(position)
    for name in carried:
        newer = pc.take(window.column(name).cast(CATALOG_SCHEMA.field(name).type), position)
        older = table.column(name).cast(CATALOG_SCHEMA.field(name).type)  # plain, if read dictionary-encoded
        table = table.set_column(table.column_names.index(name), name, pc.if_else(found, newer, older))
    return table


def check_part(path: str | os.PathLike) -> None:
    """Read one part whole (every page); raises what pyarrow raises for a damaged file."""
    if is_column_part(path):
        column_part_info(path)
        pq.read_table(path)
    else:
        pq.read_table(path, schema=CATALOG_SCHEMA)


def damaged_part_error(data_dir: str | os.PathLike, files: list[Path], exc: Exception) -> Exception:
    """`DamagedFile` naming the first part that does not read (pyarrow's error names none), else ``exc``."""
    from shards.datadir import DamagedFile

    for path in files:
        try:
            check_part(path)
        except (pa.ArrowException, OSError) as part_exc:
            return DamagedFile(path, f"damaged catalog part ({part_exc})", data_dir)
    return exc


def is_derived(shard: str) -> bool:
    """Shards a refilter's reshard copied (``shards/view-<name>/``) rather than ingest published."""
    return Path(shard).parent.name.startswith("view-")


def records_from_shards(data_dir: str | os.PathLike, shards: list[str] | None = None) -> tuple[list[dict], dict[str, str]]:
    """Every clip record stored in the published shards' JSON members (``shards``: only these, relative to
    ``data_dir``), and the shard each key lives in. Derived (resharded) copies are left out, and a key found
    in two shards is taken from the first."""
    data_dir = Path(data_dir)
    paths = sorted(data_dir / s for s in shards) if shards is not None else sorted(data_dir.glob("shards/*/clips-*.tar"))
    records, shard_of_key, seen = [], {}, set()
    for shard in paths:
        relative = str(shard.relative_to(data_dir))
        if is_derived(relative):
            continue
        stats = ReaderStats()
        samples = read_shard(str(shard), None, stats, extensions=("json",))
        if stats.counts:
            raise ValueError(f"{shard}: shard not fully readable ({', '.join(sorted(stats.counts))})")
        for sample in samples.values():
            record = json.loads(sample["json"])
            if record["key"] in seen:
                continue
            seen.add(record["key"])
            records.append(record)
            if record.get("status") == "ok":
                shard_of_key[record["key"]] = relative
    return records, shard_of_key


def rebuild_catalog(data_dir: str | os.PathLike) -> Path | None:
    """Recreate the catalog's rows from the shards (after a loss or damage): built aside, then swapped in.
    The column parts of rescores (`shards.rescore`) that still read are carried over: their scores exist
    nowhere else."""
    records, shard_of_key = records_from_shards(data_dir)
    folder = catalog_dir(data_dir)
    building = folder.with_name(".catalog.rebuild")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    pq.write_table(rows_to_table(records, shard_of_key).sort_by("key"), building / "part-000000.parquet", compression="zstd")
    for part in (p for p in catalog_files(data_dir) if is_column_part(p)):
        try:
            check_part(part)
        except (pa.ArrowException, OSError, KeyError, ValueError):
            continue  # a damaged rescore part is dropped: rerun that rescore
        shutil.copy2(part, building / part.name)
    retired = folder.with_name(".catalog.old")
    shutil.rmtree(retired, ignore_errors=True)
    if folder.exists():
        os.replace(folder, retired)
    os.replace(building, folder)
    shutil.rmtree(retired, ignore_errors=True)
    return folder / "part-000000.parquet"
