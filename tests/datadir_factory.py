"""Small published data dirs for the integrity tests: committed clips of `tests.test_dataset._commit_source`
(random media bytes, real records), their ledger records, then the real `publish_clips`."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

from shards.catalog import read_catalog
from shards.clip_store import ClipStore
from shards.ledger import SourceLedger
from shards.publish import ShardLimits, publish_clips
from tests.test_dataset import _commit_source

REPO = Path(__file__).resolve().parent.parent


def commit_sources(data_dir: Path, indices: list[int]) -> None:
    """Commit sources ``indices`` into the publish queue and write their 'done' ledger records."""
    rng = np.random.default_rng(indices[0])
    store, ledger = ClipStore(data_dir), SourceLedger(data_dir)
    for index in indices:
        source_id = _commit_source(store, index, rng)
        keys = sorted(path.stem for path in store.source_dir(source_id).glob("*.json"))
        ledger.write({"source_id": source_id, "uri": f"/videos/{index}.mp4", "status": "done", "clip_keys": keys, "audio_sha256": None})


def make_data_dir(data_dir: Path, n_sources: int = 3, max_count: int = 4) -> Path:
    commit_sources(data_dir, list(range(n_sources)))
    publish_clips(data_dir, limits=ShardLimits(max_count=max_count))
    return data_dir


def shard_keys(data_dir: Path, folder: str = "v1") -> list[str]:
    """Every sample key in the published shards (with repeats, if any)."""
    keys = []
    for shard in sorted((data_dir / "shards" / folder).glob("clips-*.tar")):
        with tarfile.open(shard) as tar:
            keys += sorted({name.partition(".")[0] for name in tar.getnames()})
    return keys


def catalog_keys(data_dir: Path) -> list[str]:
    return sorted(read_catalog(data_dir, columns=["key"]).column("key").to_pylist())


def fada(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real ``fada`` command line in a new process."""
    return subprocess.run([sys.executable, "-m", "flows.cli", *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
