"""Small published data dirs for the integrity tests: committed clips of `commit_scored_source`
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

REPO = Path(__file__).resolve().parent.parent

GOOD_SCORES = {"source_prior": 0.9, "source_denied": 0.0, "iqa": 0.93, "sharpness": 100.0, "reblur_ratio": 0.15, "face_px": 250.0, "exposure_clip": 0.0,
               "blockiness": 0.02, "sync_scorer": "lip_audio_xcorr", "sync_offset": 0.0, "sync_conf": 0.8, "sync_dist": 0.2, "camera_shake": 0.03,
               "bg_motion": 0.08, "head_motion": 0.005, "pose_range_deg": 5.0, "single_face_ratio": 1.0, "face_mesh_ratio": 1.0,
               "speech_ratio": 0.5, "audio_clip_ratio": 0.0, "snr_db": 50.0}


def commit_scored_source(store, index: int, rng) -> str:
    """Stage and commit source ``index``: four clips (random media bytes, real records; clips 0–1 pass strict, 2–3 only
    lenient) and one rejected as too short. Returns the source id, f"{index:02d}" + "ab" * 31."""
    source_id = f"{index:02d}" + "ab" * 31
    staging = store.reset_staging(source_id)
    records = []
    for clip in range(4):
        # clip 0 and 1 pass strict; 2 and 3 only lenient (image quality, sync offset and shake get worse)
        scores = {**GOOD_SCORES, "iqa": [0.95, 0.9, 0.7, 0.6][clip], "sync_offset": [0.0, 1.0, 2.0, -2.0][clip], "camera_shake": [0.1, 0.3, 0.6, 1.5][clip]}
        name = f"c00000_{clip:04d}"
        (staging / f"{name}.mp4").write_bytes(rng.bytes(2000))
        (staging / f"{name}.wav").write_bytes(rng.bytes(500))
        records.append({"source_id": source_id, "chunk_index": 0, "start_s": clip * 4.0, "end_s": clip * 4.0 + 4.0, "n_frames": 100,
                        "fps": 25.0, "status": "ok", "reject_reason": None, "staged_name": name, **scores})
    records.append({"source_id": source_id, "chunk_index": 0, "start_s": 16.0, "end_s": 17.0, "n_frames": 25, "fps": 25.0,
                    "status": "rejected", "reject_reason": "too_short"})
    tag = ["interview", "news", "vlog"][index % 3]
    store.commit_source(source_id, {"source_uri": f"/videos/{index}.mp4", "source_tag": tag}, records)
    return source_id


def commit_sources(data_dir: Path, indices: list[int]) -> None:
    """Commit sources ``indices`` into the publish queue and write their 'done' ledger records."""
    rng = np.random.default_rng(indices[0])
    store, ledger = ClipStore(data_dir), SourceLedger(data_dir)
    for index in indices:
        source_id = commit_scored_source(store, index, rng)
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
