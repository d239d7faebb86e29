"""Ingestion: a manifest of raw speaker videos → face-centred 512² clips, fanned out on Ray.

1. Inspect every source in parallel: sha256 of its bytes (its id) and a probe (``filters.probe``).
2. Skip sources the ledger already holds (same bytes under any name); record probe rejections.
3. Split each accepted source's usable span (where video and audio both exist) into chunks and run them
   on actors that load the face detector once (``filters.extract``).
4. Commit each source whose chunks all succeeded (``shards.clip_store``) and write its ledger record;
   a source with a failed chunk is recorded as ``failed`` and retried next run.
The CLI (``fada ingest``) and the Prefect flows call ``ingest`` alike.

A source's identity is (video sha256, sidecar sha256 or none): the ledger is keyed by the video (clip keys
derive from it), and a source rejected for its audio is probed again when its sidecar's bytes change.
A run holds the data dir's writer lock throughout (`shards.lock`), checks before any work that the catalog
and lineage read and that configured scorer weights load, and marks its step boundaries with
``crash_point`` (`shards.crashpoints`) for the crash tests.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import subprocess
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import fsspec
from tqdm.auto import tqdm

from filters.extract import ChunkJob, ChunkResult, ExtractConfig, extract_chunk
from filters.face_track import FaceDetector
from filters.probe import ProbeLimits, ProbeResult, probe_source
from filters.profiles import load_profile
from filters.scoring import ClipScorer, ScoringConfig
from flows.ray_pool import ActorPool, InlinePool, cluster_cpus, ensure_ray
from shards.atomic import atomic_write_json
from shards.clip_store import ClipStore
from shards.crashpoints import crash_point
from shards.integrity import check_readable
from shards.ledger import SourceLedger
from shards.lock import writer_lock
from shards.publish import ShardLimits, publish_clips
from shards.sources import HASH_BLOCK_BYTES, SourceSpec, is_local, load_manifest, read_yaml, source_sha256


PREVIEW_PROFILES = ("strict", "lenient")  # the run summary says how many new clips each would keep


@dataclass(frozen=True)
class IngestConfig:
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    probe: ProbeLimits = field(default_factory=ProbeLimits)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    shards: ShardLimits = field(default_factory=ShardLimits)
    chunk_s: float = 120.0  # long sources are split into chunks of this length, one Ray job each
    dataset_version: str = "v1"  # shards go to DATA_DIR/shards/<dataset_version>/

    def to_dict(self) -> dict:
        return {
            "extract": self.extract.to_dict(), "probe": asdict(self.probe), "scoring": self.scoring.to_dict(),
            "shards": asdict(self.shards), "chunk_s": self.chunk_s, "dataset_version": self.dataset_version,
        }

    def digest(self) -> str:
        """Hash of everything that changes the output; recorded in every ledger record."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, values: dict) -> "IngestConfig":
        """``{"probe": {...}, "scoring": {...}, "shards": {...}, "chunk_s": s, "dataset_version": v, <ExtractConfig sections>}``.

        Unknown sections or keys raise ValueError naming them.
        """
        values = dict(values or {})
        own = (("probe", ProbeLimits), ("scoring", ScoringConfig), ("shards", ShardLimits))
        sections = {name: section_cls(**_checked_section(name, values.pop(name, None) or {}, section_cls)) for name, section_cls in own}
        chunk_s = float(values.pop("chunk_s", 120.0))
        dataset_version = str(values.pop("dataset_version", "v1"))
        return cls(extract=ExtractConfig.from_dict(values), **sections, chunk_s=chunk_s, dataset_version=dataset_version)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "IngestConfig":
        return cls.from_dict(read_yaml(path) or {})


class IngestInputError(ValueError):
    """The run cannot start as configured (e.g. unreadable scorer weights); the message names the file."""


def check_scoring(config: ScoringConfig) -> None:
    """Load what the scorers read from files once, before any work (not once per source in every worker)."""
    from filters.image_quality import LearnedIQAScorer
    from filters.source_prior import SourcePriorScorer
    from filters.sync import make_sync_scorer

    SourcePriorScorer.from_config(config.source_priors)
    for name, path, load in (("syncnet_weights", config.syncnet_weights, make_sync_scorer),
                             ("iqa_weights", config.iqa_weights, LearnedIQAScorer)):
        if path is None:
            continue
        try:
            load(path)
        except Exception as exc:  # any failure to load is the same user error: this file is not usable weights
            raise IngestInputError(f"{path}: scoring.{name} cannot be loaded ({type(exc).__name__}: {str(exc)[:200]})") from exc


def _checked_section(name: str, values: dict, section_cls: type) -> dict:
    allowed = set(section_cls.__dataclass_fields__)
    bad = sorted(set(values) - allowed)
    if bad:
        raise ValueError(f"unknown key(s) {bad} in ingest config section {name!r}; allowed: {sorted(allowed)}")
    return values


@dataclass(frozen=True)
class InspectJob:
    spec: SourceSpec
    cache_dir: str
    limits: ProbeLimits


@dataclass(frozen=True)
class Inspection:
    spec: SourceSpec
    source_id: str  # sha256 of the video's bytes
    video_path: str
    audio_path: str | None
    size_bytes: int
    probe: ProbeResult
    audio_sha256: str | None = None  # sha256 of the sidecar's bytes; None without a (readable) sidecar


def code_version() -> str:
    """``FADA_CODE_VERSION`` when set (container images), else the git commit (``+dirty`` for local changes),
    else the package version."""
    if os.environ.get("FADA_CODE_VERSION"):
        return os.environ["FADA_CODE_VERSION"]
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        pass
    from importlib.metadata import version

    return f"fada-pipeline {version('fada-pipeline')}"


def _fetch_to_cache(uri: str, cache_dir: str) -> tuple[str, str]:
    """Copy a remote URI into the cache under its sha256; returns (sha256, local path)."""
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    tmp = Path(cache_dir) / f".download-{os.getpid()}-{time.monotonic_ns()}"
    with fsspec.open(uri, "rb") as src, open(tmp, "wb") as dst:
        for block in iter(lambda: src.read(HASH_BLOCK_BYTES), b""):
            digest.update(block)
            dst.write(block)
    sha = digest.hexdigest()
    final = Path(cache_dir) / f"{sha}{Path(uri.split('?', 1)[0]).suffix}"
    os.replace(tmp, final)
    return sha, str(final)


def _local(uri: str | None, cache_dir: str) -> tuple[str | None, str | None]:
    if uri is None:
        return None, None
    if is_local(uri):
        path = uri.removeprefix("file://")
        return source_sha256(path), path
    return _fetch_to_cache(uri, cache_dir)


def inspect_source(job: InspectJob) -> Inspection:
    source_id, video_path = _local(job.spec.uri, job.cache_dir)
    try:
        audio_sha256, audio_path = _local(job.spec.audio_uri, job.cache_dir)
    except OSError as exc:  # a missing or unreadable sidecar rejects the source, naming the file
        probe = probe_source(video_path, limits=job.limits)
        if probe.ok or probe.reject_reason == "no_audio":
            probe = dataclasses.replace(probe, reject_reason="sidecar_unreadable",
                                        detail=f"sidecar {job.spec.audio_uri}: {type(exc).__name__}: {exc.strerror or exc}")
        return Inspection(job.spec, source_id, video_path, None, os.path.getsize(video_path), probe)
    probe = probe_source(video_path, sidecar_audio=audio_path, limits=job.limits)
    return Inspection(job.spec, source_id, video_path, audio_path, os.path.getsize(video_path), probe, audio_sha256)


def plan_chunks(inspection: Inspection, config: IngestConfig, staging_dir: str) -> list[ChunkJob]:
    """Split the usable span on the output frame grid into chunks of ``chunk_s`` seconds."""
    start, end = inspection.probe.usable_span_s
    fps = config.extract.clip.fps
    n_frames = int((end - start) * fps + 1e-6)
    per_chunk = max(1, int(round(config.chunk_s * fps)))
    sidecar = inspection.probe.audio_source == "sidecar"
    jobs = []
    for index, first in enumerate(range(0, n_frames, per_chunk)):
        last = min(first + per_chunk, n_frames)
        jobs.append(
            ChunkJob(
                source_id=inspection.source_id,
                video_path=inspection.video_path,
                start_s=start + first / fps,
                end_s=start + last / fps,
                chunk_index=index,
                staging_dir=staging_dir,
                rotation=inspection.probe.rotation,
                audio_path=inspection.audio_path if sidecar else None,
                audio_origin_s=inspection.probe.video_start_s if sidecar else None,
                source_tag=inspection.spec.tag,
            )
        )
    return jobs


def _make_worker_state(config: IngestConfig) -> dict:
    """Models a worker loads once and keeps: the face detector and every quality scorer."""
    track = config.extract.track
    return {
        "config": config,
        "detector": FaceDetector(model_selection=track.model_selection, min_confidence=track.min_confidence),
        "scorer": ClipScorer(config.scoring),
    }


def _work(state: dict, job: InspectJob | ChunkJob) -> Inspection | ChunkResult:
    if isinstance(job, InspectJob):
        return inspect_source(job)
    return extract_chunk(job, state["detector"], state["config"].extract, score=state["scorer"].score_frames)


@dataclass
class IngestReport:
    data_dir: str
    started_at: str
    config_hash: str
    code_version: str
    sources: list[dict] = field(default_factory=list)  # one row per manifest row: uri, source_id, outcome, reason
    clips_ok: int = 0
    clips_rejected: Counter = field(default_factory=Counter)
    shards: list[str] = field(default_factory=list)  # shards written by this run
    profiles: dict = field(default_factory=dict)  # shipped profile → {"kept": n, "hours": h, "failed": {dimension: n}} over kept clips
    hours_ok: float = 0.0
    frames_read: int = 0
    seconds: float = 0.0

    def outcome_counts(self) -> Counter:
        return Counter(row["outcome"] for row in self.sources)

    def to_dict(self) -> dict:
        return {**asdict(self), "clips_rejected": dict(self.clips_rejected), "outcomes": dict(self.outcome_counts())}


def ingest(
    manifest: str | os.PathLike,
    data_dir: str | os.PathLike,
    config: IngestConfig = IngestConfig(),
    *,
    workers: int | None = None,
    progress: bool = True,
    wait: float = 0.0,
) -> IngestReport:
    """Ingest every new source of the manifest into ``data_dir``; safe to re-run (done sources are skipped).

    ``workers``: number of Ray actors (default: the cluster's CPUs); 0 runs everything in this process.
    ``wait``: seconds to wait for another writer of ``data_dir`` (`shards.lock.LockHeld` after that).
    """
    specs = load_manifest(manifest)
    check_scoring(config.scoring)
    with writer_lock(data_dir, wait=wait, command="ingest"):
        check_readable(data_dir)
        return _ingest(specs, Path(data_dir), config, workers, progress)


def _ingest(specs: list[SourceSpec], data_dir: Path, config: IngestConfig, workers: int | None, progress: bool) -> IngestReport:
    started = time.monotonic()
    ledger, store = SourceLedger(data_dir), ClipStore(data_dir)
    report = IngestReport(str(data_dir), datetime.now(timezone.utc).isoformat(timespec="seconds"), config.digest(), code_version())
    make_state = functools.partial(_make_worker_state, config)
    if workers == 0:
        pool = InlinePool(make_state, _work)
    else:
        ensure_ray()
        pool = ActorPool(make_state, _work, n_actors=workers or cluster_cpus())
    with pool:
        inspections = _inspect_all(pool, specs, data_dir, config, report, progress)
        to_process = _select_new(inspections, ledger, config, report)
        jobs = [job for insp in to_process for job in plan_chunks(insp, config, str(store.reset_staging(insp.source_id)))]
        results = _extract_all(pool, jobs, config, report, progress)
    crash_point("staged")
    profiles = [load_profile(name) for name in PREVIEW_PROFILES]
    for insp in to_process:
        _commit(insp, results.get(insp.source_id, []), store, ledger, config, report, profiles)
    store.remove_empty_staging()
    crash_point("all_committed")
    report.shards = [info.name for info in publish_clips(
        data_dir, dataset_version=config.dataset_version, limits=config.shards,
        code_version=report.code_version, config_hash=report.config_hash,
    )]
    crash_point("published")
    report.seconds = round(time.monotonic() - started, 2)
    atomic_write_json(data_dir / "runs" / f"ingest-{report.started_at.replace(':', '')}.json", report.to_dict())
    return report


def _inspect_all(pool, specs, data_dir, config, report, progress) -> list[Inspection]:
    jobs = [InspectJob(spec, str(data_dir / "cache"), config.probe) for spec in specs]
    inspections = []
    for outcome in tqdm(pool.map(jobs), total=len(jobs), desc="probe", unit="source", disable=not progress):
        if outcome.ok:
            inspections.append(outcome.value)
        else:  # not even readable enough to hash: nothing to key a ledger record on
            report.sources.append({"uri": outcome.job.spec.uri, "source_id": None, "outcome": "failed", "reason": "unreadable", "detail": outcome.error.splitlines()[0]})
    order = {spec.uri: i for i, spec in enumerate(specs)}
    return sorted(inspections, key=lambda insp: order[insp.spec.uri])


def _select_new(inspections, ledger, config, report) -> list[Inspection]:
    """Drop sources already ingested (by content) or listed twice; record probe rejections."""
    selected, seen = [], set()
    for insp in inspections:
        row = {"uri": insp.spec.uri, "source_id": insp.source_id}
        if insp.source_id in seen or ledger.is_final(insp.source_id, insp.audio_sha256, insp.spec.audio_uri is not None):
            ledger.add_alias(insp.source_id, insp.spec.uri)
            report.sources.append({**row, "outcome": "skipped", "reason": "already_ingested"})
            continue
        seen.add(insp.source_id)
        if not insp.probe.ok:
            ledger.write(_ledger_record(insp, "rejected", insp.probe.reject_reason, insp.probe.detail, [], config, report))
            report.sources.append({**row, "outcome": "rejected", "reason": insp.probe.reject_reason, "detail": insp.probe.detail})
            continue
        selected.append(insp)
    return selected


def _extract_all(pool, jobs, config, report, progress) -> dict[str, list]:
    """Run every chunk; returns per source the list of ChunkResult or error strings."""
    results: dict[str, list] = {job.source_id: [] for job in jobs}
    total = sum(int(round((job.end_s - job.start_s) * config.extract.clip.fps)) for job in jobs)
    with tqdm(total=total, desc="ingest", unit="frame", disable=not progress) as bar:
        for outcome in pool.map(jobs):
            results[outcome.job.source_id].append(outcome.value if outcome.ok else outcome.error)
            bar.update(int(round((outcome.job.end_s - outcome.job.start_s) * config.extract.clip.fps)))
            if outcome.ok:
                report.frames_read += outcome.value.frames_read
    return results


def _commit(insp: Inspection, chunk_results: list, store: ClipStore, ledger: SourceLedger, config: IngestConfig, report: IngestReport, profiles: list) -> None:
    row = {"uri": insp.spec.uri, "source_id": insp.source_id}
    errors = [r for r in chunk_results if isinstance(r, str)]
    if errors:
        store.discard_staging(insp.source_id)
        detail = errors[0].splitlines()[0]
        ledger.write(_ledger_record(insp, "failed", "task_error", detail, [], config, report))
        report.sources.append({**row, "outcome": "failed", "reason": "task_error", "detail": detail})
        return
    clips = [clip for result in chunk_results for clip in result.clips]
    records = store.commit_source(insp.source_id, _source_fields(insp), clips)
    crash_point("committed")
    for record in records:
        if record["status"] == "ok":
            report.clips_ok += 1
            report.hours_ok += record["n_frames"] / record["fps"] / 3600
            _preview_profiles(record, profiles, report)
        else:
            report.clips_rejected[record["reject_reason"]] += 1
    ledger.write(_ledger_record(insp, "done", None, "", records, config, report))
    crash_point("ledger_written")
    report.sources.append({**row, "outcome": "ingested", "reason": None, "clips": sum(r["status"] == "ok" for r in records)})


def _preview_profiles(record: dict, profiles: list, report: IngestReport) -> None:
    """Tally what each shipped profile would keep: a preview only; views (re-filters) make the real choice."""
    for profile in profiles:
        tally = report.profiles.setdefault(profile.name, {"kept": 0, "hours": 0.0, "failed": {}})
        decision = profile.decide(record)
        if decision.keep:
            tally["kept"] += 1
            tally["hours"] += record["n_frames"] / record["fps"] / 3600
        for dimension in decision.failed_dimensions:
            tally["failed"][dimension] = tally["failed"].get(dimension, 0) + 1


def _source_fields(insp: Inspection) -> dict:
    probe = insp.probe
    return {
        "source_uri": insp.spec.uri,
        "source_tag": insp.spec.tag,
        "source_license": insp.spec.license,
        "audio_uri": insp.spec.audio_uri,
        "audio_source": probe.audio_source,
        "source_audio_rate": probe.audio_rate,
        "source_audio_channels": probe.audio_channels,
        "source_width": probe.width,
        "source_height": probe.height,
        "source_fps": probe.fps,
        "source_rotation": probe.rotation,
    }


def _ledger_record(insp, status, reason, detail, records, config, report) -> dict:
    return {
        "source_id": insp.source_id,
        "uri": insp.spec.uri,
        "aliases": [],
        "tag": insp.spec.tag,
        "audio_uri": insp.spec.audio_uri,
        "audio_sha256": insp.audio_sha256,
        "license": insp.spec.license,
        "size_bytes": insp.size_bytes,
        "status": status,
        "reject_reason": reason,
        "detail": detail,
        "probe": insp.probe.to_dict(),
        "usable_span_s": list(insp.probe.usable_span_s) if insp.probe.usable_span_s else None,
        "clip_keys": [r["key"] for r in records],
        "clips_ok": sum(r["status"] == "ok" for r in records),
        "clips_rejected": dict(Counter(r["reject_reason"] for r in records if r["status"] != "ok")),
        "scorers": next((r["scorers"] for r in records if r.get("scorers")), {}),
        "config_hash": report.config_hash,
        "code_version": report.code_version,
        "processed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
