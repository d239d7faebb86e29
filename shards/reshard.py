"""Reshard a view's sparse selections: copy the kept samples of shards the view uses sparsely into new,
dense shards whose lineage names their parents.

Skipping most of a shard still costs reading all of it, so when a view keeps under ``min_keep_ratio``
(about half) of a shard's samples, its kept samples are copied (bytes unchanged) into
``shards/view-<name>/clips-%06d.tar``. Tar members are checked on the way: names must be ``KEY.EXT`` with a
safe key and a known extension, or the shard is refused. A new shard's lineage names the code that copied it
and the ingest configuration hash of its parents (their distinct hashes joined by ``+`` when they differ).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from shards.lineage import build_lineage, code_version, lineage_path, read_lineage, write_lineage
from shards.publish import ShardLimits
from shards.shard_writer import ShardInfo, ShardWriter
from shards.tar_members import ReaderStats, read_shard


def read_samples(shard_path: Path, keys: set[str]) -> dict[str, dict[str, bytes]]:
    """The members of ``keys`` in a shard, by key and extension (`shards.tar_members`); a shard with an unsafe
    or unknown member, or unreadable, is refused (ValueError naming what was found)."""
    stats = ReaderStats()
    samples = read_shard(str(shard_path), frozenset(keys), stats)
    if stats.counts:
        raise ValueError(f"{shard_path}: refused to reshard ({', '.join(f'{n} {reason}' for reason, n in sorted(stats.counts.items()))})")
    return samples


def sparse_shards(data_dir: Path, shard_keys: dict[str, list[str]], min_keep_ratio: float) -> dict[str, dict]:
    """The lineage of each shard the view keeps less than ``min_keep_ratio`` of, by shard."""
    sparse = {}
    for shard, keys in sorted(shard_keys.items()):
        lineage = read_lineage(lineage_path(data_dir / shard), data_dir)
        if len(keys) < min_keep_ratio * lineage["n_samples"]:
            sparse[shard] = lineage
    return sparse


def reshard(
    data_dir: str | os.PathLike,
    view_name: str,
    shard_keys: dict[str, list[str]],
    *,
    min_keep_ratio: float = 0.5,
    limits: ShardLimits = ShardLimits(),
    flow_run_id: str | None = None,
) -> dict[str, list[str]]:
    """Return the view's shard → keys mapping with sparse shards replaced by new dense ones (``flow_run_id``:
    the Prefect flow run doing it, for the new shards' lineage)."""
    data_dir = Path(data_dir)
    sparse = sparse_shards(data_dir, shard_keys, min_keep_ratio)
    if not sparse:
        return shard_keys
    folder = data_dir / "shards" / f"view-{view_name}"
    if folder.exists():  # copies of a refilter killed before it wrote the view (refilter holds the writer lock)
        shutil.rmtree(folder)
    records: dict[str, dict] = {}
    parents_of: dict[str, str] = {}
    version = code_version()
    result = {shard: keys for shard, keys in shard_keys.items() if shard not in sparse}

    def on_close(info: ShardInfo) -> None:
        relative = str((folder / info.name).relative_to(data_dir))
        result[relative] = list(info.keys)
        parents = sorted({parents_of[k] for k in info.keys})
        write_lineage(data_dir, build_lineage(
            shard=relative, sha256=info.sha256, size=info.size, records=[records[k] for k in info.keys],
            dataset_version=f"view-{view_name}", code_version=version,
            config_hash="+".join(sorted({sparse[p]["config_hash"] for p in parents})),
            scorers=records[info.keys[0]].get("scorers", {}), parents=parents, flow_run_id=flow_run_id,
        ))

    with ShardWriter(str(folder), max_count=limits.max_count, max_bytes=limits.max_bytes, on_close=on_close) as writer:
        for shard in sparse:
            samples = read_samples(data_dir / shard, set(shard_keys[shard]))
            for key in shard_keys[shard]:
                records[key] = json.loads(samples[key]["json"])
                parents_of[key] = shard
                writer.add(key, samples[key])
    return dict(sorted(result.items()))
