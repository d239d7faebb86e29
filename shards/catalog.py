"""The catalog: a parquet dataset with one row per clip (rejected clips included), the only thing a
re-filter reads. Column names are a public contract (DESIGN.md §2).

Each ingest run appends one part file (``catalog/part-%06d.parquet``), written under a temporary name and
renamed; old parts are never rewritten. ``rebuild_catalog`` recreates it from the shards' JSON members.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from shards.atomic import atomic_path

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


def append_part(data_dir: str | os.PathLike, table: pa.Table) -> Path | None:
    """Write ``table`` as the next part file; returns its path (None for an empty table)."""
    if table.num_rows == 0:
        return None
    folder = catalog_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob("part-*.parquet"))
    index = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
    final = folder / f"part-{index:06d}.parquet"
    with atomic_path(final) as tmp:
        pq.write_table(table.sort_by("key"), tmp, compression="zstd")
    return final


def catalog_files(data_dir: str | os.PathLike) -> list[Path]:
    return sorted(catalog_dir(data_dir).glob("part-*.parquet"))


def read_catalog(data_dir: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    files = catalog_files(data_dir)
    if not files:
        return CATALOG_SCHEMA.empty_table() if columns is None else CATALOG_SCHEMA.empty_table().select(columns)
    try:
        return pads.dataset([str(f) for f in files], schema=CATALOG_SCHEMA, format="parquet").to_table(columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise damaged_part_error(data_dir, files, exc) from exc


def check_part(path: str | os.PathLike) -> None:
    """Read one part whole (every page); raises what pyarrow raises for a damaged file."""
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
        with tarfile.open(shard) as tar:
            for member in tar:
                if not member.name.endswith(".json"):
                    continue
                record = json.loads(tar.extractfile(member).read())
                if record["key"] in seen:
                    continue
                seen.add(record["key"])
                records.append(record)
                if record.get("status") == "ok":
                    shard_of_key[record["key"]] = relative
    return records, shard_of_key


def rebuild_catalog(data_dir: str | os.PathLike) -> Path | None:
    """Recreate the catalog from the shards alone (after a loss): built aside, then swapped in."""
    records, shard_of_key = records_from_shards(data_dir)
    folder = catalog_dir(data_dir)
    building = folder.with_name(".catalog.rebuild")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    pq.write_table(rows_to_table(records, shard_of_key).sort_by("key"), building / "part-000000.parquet", compression="zstd")
    retired = folder.with_name(".catalog.old")
    shutil.rmtree(retired, ignore_errors=True)
    if folder.exists():
        os.replace(folder, retired)
    os.replace(building, folder)
    shutil.rmtree(retired, ignore_errors=True)
    return folder / "part-000000.parquet"
