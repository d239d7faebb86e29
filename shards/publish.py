"""Publish committed clips into WebDataset shards, lineage sidecars and a catalog part.

``clips/`` is the queue of committed, not yet sharded clips. ``publish_clips`` writes them (every kept
clip's ``KEY.mp4``, ``KEY.wav``, ``KEY.json``; a rejected clip as ``KEY.json`` alone, kept for audit and
for rebuilding the catalog) into new shards after the existing ones, writes each shard's lineage sidecar,
appends the catalog part, and only then removes the published clip folders. A key already listed in a
lineage sidecar is never written again, and catalog rows missing for sharded keys (a crash between the
two) are restored from the shards first — so re-running after any interruption is safe.

A shard's lineage is written under its final name before the shard is renamed into place, so a visible
shard always has its lineage; a lineage whose shard never appeared (killed between the two) is removed here.
Publishing holds the data dir's writer lock (`shards.lock`); ``crash_point`` marks each step boundary for the
crash tests.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from shards.atomic import read_json
from shards.catalog import append_part, is_derived, read_catalog, records_from_shards, rows_to_table
from shards.clip_store import ClipStore
from shards.crashpoints import crash_point
from shards.lineage import build_lineage, iter_lineage, shard_path_of, write_lineage
from shards.lock import writer_lock
from shards.shard_writer import ShardInfo, ShardWriter


@dataclass(frozen=True)
class ShardLimits:
    max_count: int = 1000  # samples per shard
    max_bytes: int = 1 << 30  # bytes per shard (1 GiB)


def _next_index(folder: Path) -> int:
    existing = sorted(folder.glob("clips-*.tar"))
    return int(existing[-1].stem.split("-")[1]) + 1 if existing else 0


def remove_unshipped_lineage(shard_folder: Path) -> list[Path]:
    """Lineage sidecars whose shard was never renamed into place (the writer died in between)."""
    removed = [path for path in sorted(shard_folder.glob("clips-*.lineage.json")) if not shard_path_of(path).exists()]
    for path in removed:
        path.unlink()
    return removed


def _repair_catalog(data_dir: Path, lineage: list[dict]) -> None:
    catalogued = set(read_catalog(data_dir, columns=["key"]).column("key").to_pylist())
    missing_in = [doc["shard"] for doc in lineage if not set(doc["keys"]) <= catalogued]
    if missing_in:
        records, shard_of_key = records_from_shards(data_dir, shards=missing_in)
        append_part(data_dir, rows_to_table([r for r in records if r["key"] not in catalogued], shard_of_key))


def publish_clips(
    data_dir: str | os.PathLike,
    *,
    dataset_version: str = "v1",
    limits: ShardLimits = ShardLimits(),
    code_version: str = "",
    config_hash: str = "",
    flow_run_id: str | None = None,
) -> list[ShardInfo]:
    """``flow_run_id``: the Prefect flow run publishing, recorded in each lineage sidecar (None outside one)."""
    data_dir = Path(data_dir)
    with writer_lock(data_dir, command="publish"):
        return _publish(data_dir, dataset_version, limits, code_version, config_hash, flow_run_id)


def _publish(data_dir: Path, dataset_version: str, limits: ShardLimits, code_version: str, config_hash: str,
             flow_run_id: str | None) -> list[ShardInfo]:
    shard_folder = data_dir / "shards" / dataset_version
    shard_folder.mkdir(parents=True, exist_ok=True)
    remove_unshipped_lineage(shard_folder)
    lineage = [doc for doc in iter_lineage(data_dir) if not is_derived(doc["shard"])]
    sharded = {key for doc in lineage for key in doc["keys"]}
    _repair_catalog(data_dir, lineage)
    store = ClipStore(data_dir)
    folders = sorted(p for p in store.clips_root.glob("*") if p.is_dir() and not p.name.startswith(".")) if store.clips_root.exists() else []
    records = sorted((read_json(path) for folder in folders for path in folder.glob("[!.]*.json")), key=lambda r: r["key"])
    pending = [r for r in records if r["key"] not in sharded]
    by_key = {r["key"]: r for r in pending}
    shard_of_key: dict[str, str] = {}
    scorers = next((r["scorers"] for r in pending if r.get("scorers")), {})

    def on_close(info: ShardInfo) -> None:
        relative = str((shard_folder / info.name).relative_to(data_dir))
        shard_of_key.update({key: relative for key in info.keys if by_key[key]["status"] == "ok"})
        write_lineage(data_dir, build_lineage(
            shard=relative, sha256=info.sha256, size=info.size, records=[by_key[k] for k in info.keys],
            dataset_version=dataset_version, code_version=code_version, config_hash=config_hash, scorers=scorers,
            flow_run_id=flow_run_id,
        ))

    writer = ShardWriter(str(shard_folder), start_index=_next_index(shard_folder), max_count=limits.max_count, max_bytes=limits.max_bytes, on_close=on_close)
    with writer:
        for record in pending:
            folder = store.source_dir(record["source_id"])
            files = {"json": (folder / f"{record['key']}.json").read_bytes()}
            if record["status"] == "ok":
                files["mp4"] = (folder / f"{record['key']}.mp4").read_bytes()
                files["wav"] = (folder / f"{record['key']}.wav").read_bytes()
            writer.add(record["key"], files)
    append_part(data_dir, rows_to_table(pending, shard_of_key))
    crash_point("catalog_part_written")
    for folder in folders:
        shutil.rmtree(folder)
    crash_point("queue_removed")
    return writer.written
