"""Reshard a view's sparse selections: copy the kept samples of shards the view uses sparsely into new,
dense shards whose lineage names their parents.

Skipping most of a shard still costs reading all of it, so when a view keeps under ``min_keep_ratio``
(about half) of a shard's samples, its kept samples are copied (bytes unchanged) into
``shards/view-<name>/clips-%06d.tar``. Tar members are checked on the way: names must be ``KEY.EXT`` with a
safe key and a known extension, or the shard is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections import defaultdict
from pathlib import Path

from shards.lineage import build_lineage, lineage_path, write_lineage
from shards.publish import ShardLimits
from shards.shard_writer import SAMPLE_EXTENSIONS, ShardInfo, ShardWriter, check_key


def read_samples(shard_path: Path, keys: set[str]) -> dict[str, dict[str, bytes]]:
    """The members of ``keys`` in a shard, by key and extension; unsafe member names raise ValueError."""
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    with tarfile.open(shard_path) as tar:
        for member in tar:
            key, _, extension = member.name.partition(".")
            if not member.isfile() or extension not in SAMPLE_EXTENSIONS:
                raise ValueError(f"{shard_path}: unexpected member {member.name!r}")
            check_key(key)
            if key in keys:
                samples[key][extension] = tar.extractfile(member).read()
    return samples


def sparse_shards(data_dir: Path, shard_keys: dict[str, list[str]], min_keep_ratio: float) -> list[str]:
    sparse = []
    for shard, keys in sorted(shard_keys.items()):
        total = json.loads(lineage_path(data_dir / shard).read_text())["n_samples"]
        if len(keys) < min_keep_ratio * total:
            sparse.append(shard)
    return sparse


def reshard(
    data_dir: str | os.PathLike,
    view_name: str,
    shard_keys: dict[str, list[str]],
    *,
    min_keep_ratio: float = 0.5,
    limits: ShardLimits = ShardLimits(),
) -> dict[str, list[str]]:
    """Return the view's shard → keys mapping with sparse shards replaced by new dense ones."""
    data_dir = Path(data_dir)
    sparse = sparse_shards(data_dir, shard_keys, min_keep_ratio)
    if not sparse:
        return shard_keys
    folder = data_dir / "shards" / f"view-{view_name}"
    if folder.exists():  # copies of a refilter killed before it wrote the view (refilter holds the writer lock)
        shutil.rmtree(folder)
    records: dict[str, dict] = {}
    parents_of: dict[str, str] = {}
    result = {shard: keys for shard, keys in shard_keys.items() if shard not in sparse}

    def on_close(info: ShardInfo) -> None:
        relative = str((folder / info.name).relative_to(data_dir))
        result[relative] = list(info.keys)
        write_lineage(data_dir, build_lineage(
            shard=relative, sha256=info.sha256, size=info.size, records=[records[k] for k in info.keys],
            dataset_version=f"view-{view_name}", code_version=records[info.keys[0]].get("code_version", ""),
            config_hash="", scorers=records[info.keys[0]].get("scorers", {}),
            parents=sorted({parents_of[k] for k in info.keys}),
        ))

    with ShardWriter(str(folder), max_count=limits.max_count, max_bytes=limits.max_bytes, on_close=on_close) as writer:
        for shard in sparse:
            samples = read_samples(data_dir / shard, set(shard_keys[shard]))
            for key in shard_keys[shard]:
                records[key] = json.loads(samples[key]["json"])
                parents_of[key] = shard
                writer.add(key, samples[key])
    return dict(sorted(result.items()))
