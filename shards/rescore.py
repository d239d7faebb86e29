"""Re-scoring without re-ingesting: recompute one scorer's catalog columns from the clips in the shards.

``rescore(data_dir, "sync", ScoringConfig(...))`` reads every status-ok clip the catalog names from its shard
(``KEY.mp4``, ``KEY.wav``, ``KEY.json``: the crops ingest stored, never the source videos), with the training
reader's member checks and decoders (``shards.reader``), runs the current code of one scorer
(``filters.scoring.ClipScorer`` restricted to it, configured like ingest's ``scoring`` section) and appends a
column part to the catalog: ``key`` plus that scorer's columns, with the scorer version and the run id in
the part's metadata (``shards.catalog.append_column_part``). Catalog reads then take the newest value of each
column per key; older parts stay for audit and for the views made from them (a view records its catalog
snapshot). A lineage record ``lineage/rescore-<run id>.json`` in the data directory names the run: scorer,
version, configuration, code version, flow run, the part it wrote, and the clips it could not read or score.

A clip whose sample cannot be read keeps its older values (it is listed under ``skipped``); a clip the scorer
cannot score gets missing values and its reason under ``score_errors`` in the lineage record.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from webdataset.tariterators import group_by_keys

from filters.media_contract import AUDIO_RATE
from filters.profiles import SYNC_SCORERS
from filters.scoring import ClipScorer, ScoringConfig
from filters.strict_json import json_safe
from shards.atomic import atomic_write_json
from shards.catalog import CATALOG_SCHEMA, append_column_part, read_catalog
from shards.reader import BadSample, decode_frames, open_video, parse_audio, parse_record
from shards.tar_members import ReaderStats, TarMembers

SYNC_COLUMNS = ("sync_offset", "sync_conf", "sync_dist", "sync_scorer")
# The catalog columns each scorer fills (DESIGN.md §2); ``sync`` names whichever sync scorer the config builds.
SCORER_COLUMNS: dict[str, tuple[str, ...]] = {
    "source_prior": ("source_prior", "source_denied"),
    "iqa": ("iqa", "sharpness", "reblur_ratio", "face_px", "exposure_clip", "noise", "blockiness"),
    "iqa_learned": ("iqa_learned",),
    "sync": SYNC_COLUMNS,
    **{name: SYNC_COLUMNS for name in SYNC_SCORERS},
    "background": ("camera_shake", "bg_motion", "bg_share"),
    "movement": ("head_motion", "pose_range_deg", "head_speed_deg_s"),
    "face_audio": ("single_face_ratio", "face_mesh_ratio", "speech_ratio", "audio_clip_ratio", "snr_db"),
}


class RescoreError(ValueError):
    """The rescore cannot run as asked (unknown scorer, no catalog)."""


def lineage_dir(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / "lineage"


class _ShardSamples:
    """Samples of chosen shards and keys through the shards' tar reader (`shards.tar_members.TarMembers`: unsafe keys
    and unknown members refused before their bytes are read, unreadable tars counted), no view needed."""

    def __init__(self, keys_by_url: dict[str, frozenset]):
        self.keys_by_url = keys_by_url
        self.stats = ReaderStats()

    def __iter__(self) -> Iterator[dict]:
        members = TarMembers(self.keys_by_url, self.stats)({"url": url} for url in sorted(self.keys_by_url))
        return group_by_keys(members, handler=self.stats.on_tar_error)


def _decode(sample: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """(frames (N, S, S, 3) uint8, mono float32 audio, record) of one shard sample; BadSample if unusable."""
    missing = [ext for ext in ("mp4", "wav", "json") if ext not in sample]
    if missing:
        raise BadSample("missing_member", f"no {', '.join(missing)}")
    record, audio = parse_record(sample["json"]), parse_audio(sample["wav"])
    video = open_video(sample["mp4"], None)
    frames = decode_frames(video, [0], 0, len(video))
    return np.stack([frames[i] for i in range(len(video))]), audio, record


def choose_scorer(clip_scorer: ClipScorer, name: str):
    """The scorer of ``clip_scorer`` called ``name`` (``sync``: the sync scorer the configuration builds)."""
    for scorer in clip_scorer.scorers:
        if scorer.name == name or (name == "sync" and scorer.name in SYNC_SCORERS):
            return scorer
    built = sorted(s.name for s in clip_scorer.scorers)
    raise RescoreError(f"the scoring configuration builds no scorer {name!r} (it builds {built}); check --set scoring.*")


def score_shards(data_dir: str | os.PathLike, scorer_name: str, config: ScoringConfig, progress=None) -> dict:
    """Score every status-ok clip of the catalog with one scorer; returns the part table and the run's facts."""
    if scorer_name not in SCORER_COLUMNS:
        raise RescoreError(f"unknown scorer {scorer_name!r}; known: {sorted(SCORER_COLUMNS)}")
    data_dir = Path(data_dir)
    catalog = read_catalog(data_dir, ["key", "shard", "status"])
    ok = catalog.filter(pc.fill_null(pc.equal(catalog.column("status"), "ok"), False))
    if ok.num_rows == 0:
        raise RescoreError(f"no status-ok clips in the catalog of {data_dir}: nothing to rescore")
    keys_by_url: dict[str, set] = {}
    for shard, key in zip(ok.column("shard").to_pylist(), ok.column("key").to_pylist()):
        keys_by_url.setdefault(str(data_dir / shard), set()).add(key)
    clip_scorer = ClipScorer(config)
    scorer = choose_scorer(clip_scorer, scorer_name)
    clip_scorer.scorers = [scorer]  # the landmarks are still computed once per clip, for this scorer only
    columns = list(SCORER_COLUMNS[scorer_name])
    samples = _ShardSamples({url: frozenset(keys) for url, keys in keys_by_url.items()})
    rows: dict[str, list] = {"key": [], **{c: [] for c in columns}}
    errors: dict[str, str] = {}
    frames_scored, started = 0, time.perf_counter()
    for sample in samples:
        try:
            frames, audio, record = _decode(sample)
        except BadSample as bad:
            samples.stats.skip(bad.reason, f"sample {sample['__key__']} of {sample['__url__']} ({bad})")
            continue
        scores = clip_scorer.score_frames(frames, audio, AUDIO_RATE, record)
        key = sample["__key__"]
        rows["key"].append(key)
        for column in columns:
            rows[column].append(scores.get(column))
        if scorer.name in scores["score_errors"]:
            errors[key] = scores["score_errors"][scorer.name]
        frames_scored += len(frames)
        if progress is not None:
            progress(len(rows["key"]), ok.num_rows)
    seconds = time.perf_counter() - started
    read = set(rows["key"])
    unread = sorted(k for keys in keys_by_url.values() for k in keys if k not in read)
    table = pa.table({name: pa.array(values, CATALOG_SCHEMA.field(name).type) for name, values in rows.items()})
    return {"table": table, "scorer": scorer.name, "scorer_version": scorer.version, "columns": columns, "score_errors": errors,
            "skipped": {"keys": unread, "reasons": dict(samples.stats.counts)}, "clips": table.num_rows,
            "frames": frames_scored, "seconds": seconds}


def commit_rescore(data_dir: str | os.PathLike, table: pa.Table, scorer_name: str, record: dict) -> dict:
    """The rescore's only write: append the column part, then the lineage record naming it. Returns the record."""
    part = append_column_part(data_dir, table, scorer_name, {"scorer_version": record["scorer_version"], "run_id": record["run_id"]})
    record = {**record, "part": part.name}
    atomic_write_json(lineage_dir(data_dir) / f"rescore-{record['run_id']}.json", json_safe(record))
    return record


def rescore(data_dir: str | os.PathLike, scorer_name: str, config: ScoringConfig = ScoringConfig(), *,
            code_version: str | None = None, flow_run_id: str | None = None, progress=None, wait: float = 0.0) -> dict:
    """Recompute ``scorer_name``'s columns for the catalog's clips from the shards; returns the lineage record
    (``flow_run_id``: the Prefect flow run doing it, passed in by the flow).
    Holds the data dir's writer lock throughout (``wait`` seconds for another writer): the shards it reads
    stay as they are until its part is committed."""
    from shards.lock import writer_lock

    with writer_lock(data_dir, wait=wait, command=f"rescore {scorer_name}"):
        return _rescore(data_dir, scorer_name, config, code_version=code_version, flow_run_id=flow_run_id, progress=progress)


def _rescore(data_dir: str | os.PathLike, scorer_name: str, config: ScoringConfig, *, code_version: str | None,
             flow_run_id: str | None, progress) -> dict:
    started = datetime.now(timezone.utc)
    scored = score_shards(data_dir, scorer_name, config, progress)
    config_doc = config.to_dict()
    record = {
        "kind": "rescore",
        "run_id": f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}",
        "scorer": scored["scorer"],
        "scorer_version": scored["scorer_version"],
        "columns": scored["columns"],
        "scoring_config": config_doc,
        "config_hash": hashlib.sha256(json.dumps(json_safe(config_doc), sort_keys=True).encode()).hexdigest()[:16],
        "code_version": code_version,
        "flow_run_id": flow_run_id,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "clips": scored["clips"],
        "frames": scored["frames"],
        "seconds": round(scored["seconds"], 3),
        "score_errors": scored["score_errors"],
        "skipped": scored["skipped"],
    }
    return commit_rescore(data_dir, scored["table"], scorer_name, record)


def format_rescore(record: dict) -> str:
    rate = record["frames"] / record["seconds"] if record["seconds"] else 0.0
    lines = [f"rescored {record['clips']} clip(s) with {record['scorer']} v{record['scorer_version']} "
             f"({record['frames']} frames in {record['seconds']:.1f} s, {rate:.1f} frames/s) → catalog/{record['part']}",
             f"  columns: {', '.join(record['columns'])}",
             f"  lineage: lineage/rescore-{record['run_id']}.json"]
    if record["score_errors"]:
        lines.append(f"  could not score {len(record['score_errors'])} clip(s) (values missing; reasons in the lineage record)")
    if record["skipped"]["keys"]:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(record["skipped"]["reasons"].items())) or "-"
        lines.append(f"  unreadable in the shards, old values kept: {len(record['skipped']['keys'])} clip(s) ({reasons})")
    return "\n".join(lines)
