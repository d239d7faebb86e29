"""The ingest route as small steps, in the order a source meets them:

1. ``Inspect`` — a source's identity: sha256 of its bytes (a remote one fetched into the cache first) and of
   its sidecar's; drops ``unreadable`` (nothing to key a record on) and ``already_ingested`` (the ledger holds
   the same bytes, under any name: the new URI becomes an alias).
2. ``Probe`` — streams, rotation, the usable span where video and audio both exist (``filters.probe``); drops
   with the probe's reasons (``filters.probe.REJECT_REASONS``: ``unreadable``, ``no_audio``, ``too_short``, …)
   or ``sidecar_unreadable``.
3. ``Plan`` — the usable span cut into chunks of ``chunk_s`` on the output frame grid (``filters.frames``).
4. ``Extract`` — a chunk → face-centred clips (``filters.extract``); drops clips as ``too_short``,
   ``no_face``, ``multi_face``, ``decode_error``.
5. ``Score`` — each kept clip's quality columns while its crops are in memory (``filters.scoring``).
6. ``Commit`` — a source whose chunks all finished gets its clips and ledger record (``done``); a failed chunk
   drops the whole source as ``task_error`` (recorded ``failed``, retried next run).
7. ``Publish`` — committed clips into shards, catalog part and lineage (``shards.publish``).

Inspect+Probe and Extract+Score run where the models are loaded (``IngestWorker``: a pool worker); the
others run in the driver (``shards.ingest.run``). Every drop is counted per step and reason in ``Drops``: the
reason names are a contract (ledger, catalog, reports).
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from filters.extract import ChunkJob, ChunkResult, ExtractConfig, extract_chunk
from filters.face_track import FaceDetector
from filters.frames import frame_count
from filters.probe import ProbeLimits, ProbeResult, probe_source
from filters.scoring import ClipScorer, ScoringConfig
from shards.clip_store import ClipStore
from shards.crashpoints import crash_point
from shards.ledger import SourceLedger, source_record
from shards.publish import ShardLimits, publish_clips
from shards.sources import SourceSpec, identify


class Drops:
    """Counted drop reasons per step: ``{step: {reason: n}}``."""

    def __init__(self):
        self.counts: dict[str, Counter] = {}

    def add(self, step: str, reason: str, n: int = 1) -> None:
        self.counts.setdefault(step, Counter())[reason] += n

    def to_dict(self) -> dict:
        return {step: dict(reasons) for step, reasons in self.counts.items()}


@dataclass(frozen=True)
class Identified:
    """What ``Inspect`` learns of a source from its bytes."""

    spec: SourceSpec
    source_id: str  # sha256 of the video's bytes
    video_path: str  # a local path (remote sources are fetched into the cache)
    size_bytes: int
    audio_path: str | None = None
    audio_sha256: str | None = None  # sha256 of the sidecar's bytes; None without a (readable) sidecar
    sidecar_error: str | None = None  # why a listed sidecar could not be read


@dataclass(frozen=True)
class Inspection:
    spec: SourceSpec
    source_id: str  # sha256 of the video's bytes
    video_path: str
    audio_path: str | None
    size_bytes: int
    probe: ProbeResult
    audio_sha256: str | None = None  # sha256 of the sidecar's bytes; None without a (readable) sidecar


class Inspect:
    """Step 1: identity by content. ``__call__`` (worker side) hashes, fetching remote files into ``cache_dir``;
    ``is_new`` (driver side) drops sources the ledger already holds or the manifest lists twice."""

    name = "inspect"

    def __init__(self, cache_dir: str | os.PathLike):
        self.cache_dir = str(cache_dir)

    def __call__(self, spec: SourceSpec) -> Identified:
        source_id, video_path = identify(spec.uri, self.cache_dir)
        try:
            audio_sha256, audio_path = identify(spec.audio_uri, self.cache_dir)
        except OSError as exc:  # a missing or unreadable sidecar rejects the source (Probe), naming the file
            return Identified(spec, source_id, video_path, os.path.getsize(video_path),
                              sidecar_error=f"sidecar {spec.audio_uri}: {type(exc).__name__}: {exc.strerror or exc}")
        return Identified(spec, source_id, video_path, os.path.getsize(video_path), audio_path, audio_sha256)

    @staticmethod
    def is_new(inspection: Inspection, ledger: SourceLedger, seen: set[str]) -> bool:
        if inspection.source_id in seen or ledger.is_final(inspection.source_id, inspection.audio_sha256,
                                                           inspection.spec.audio_uri is not None):
            ledger.add_alias(inspection.source_id, inspection.spec.uri)
            return False
        seen.add(inspection.source_id)
        return True


class Probe:
    """Step 2: what the streams allow. An unreadable sidecar turns an otherwise usable source (or one without
    audio of its own) into ``sidecar_unreadable``."""

    name = "probe"

    def __init__(self, limits: ProbeLimits):
        self.limits = limits

    def __call__(self, source: Identified) -> Inspection:
        if source.sidecar_error is not None:
            probe = probe_source(source.video_path, limits=self.limits)
            if probe.ok or probe.reject_reason == "no_audio":
                probe = dataclasses.replace(probe, reject_reason="sidecar_unreadable", detail=source.sidecar_error)
            return Inspection(source.spec, source.source_id, source.video_path, None, source.size_bytes, probe)
        probe = probe_source(source.video_path, sidecar_audio=source.audio_path, limits=self.limits)
        return Inspection(source.spec, source.source_id, source.video_path, source.audio_path, source.size_bytes,
                          probe, source.audio_sha256)


class Plan:
    """Step 3: the usable span on the output frame grid, in chunks of ``chunk_s`` seconds (one pool job each)."""

    name = "plan"

    def __init__(self, fps: float, chunk_s: float):
        self.fps, self.chunk_s = fps, chunk_s

    def __call__(self, inspection: Inspection, staging_dir: str) -> list[ChunkJob]:
        start, end = inspection.probe.usable_span_s
        n_frames = frame_count(start, end, self.fps)
        per_chunk = max(1, int(round(self.chunk_s * self.fps)))
        sidecar = inspection.probe.audio_source == "sidecar"
        return [
            ChunkJob(
                source_id=inspection.source_id,
                video_path=inspection.video_path,
                start_s=start + first / self.fps,
                end_s=start + min(first + per_chunk, n_frames) / self.fps,
                chunk_index=index,
                staging_dir=staging_dir,
                rotation=inspection.probe.rotation,
                audio_path=inspection.audio_path if sidecar else None,
                audio_origin_s=inspection.probe.video_start_s if sidecar else None,
                source_tag=inspection.spec.tag,
            )
            for index, first in enumerate(range(0, n_frames, per_chunk))
        ]

    def frames(self, job: ChunkJob) -> int:
        """Output frames of a chunk (progress)."""
        return frame_count(job.start_s, job.end_s, self.fps)


class Score:
    """Step 5: every quality scorer, loaded once; called on a kept clip's crops (`filters.extract.ClipScoreFn`)."""

    name = "score"

    def __init__(self, config: ScoringConfig):
        self.scorer = ClipScorer(config)

    def __call__(self, frames, audio, audio_rate: int, record: dict) -> dict:
        return self.scorer.score_frames(frames, audio, audio_rate, record)


class Extract:
    """Step 4: one chunk → its clips, kept or dropped with a reason, each kept one scored by ``score``."""

    name = "extract"

    def __init__(self, config: ExtractConfig, score: Score):
        track = config.track
        self.config, self.score = config, score
        self.detector = FaceDetector(model_selection=track.model_selection, min_confidence=track.min_confidence)

    def __call__(self, job: ChunkJob) -> ChunkResult:
        return extract_chunk(job, self.detector, self.config, score=self.score)


class Commit:
    """Step 6: a source's finished chunks → its clips in the clip store and its ledger record. Returns the
    source's report row; the clip records' drop reasons are counted under ``extract``."""

    name = "commit"

    def __init__(self, data_dir: str | os.PathLike, drops: Drops, *, config_hash: str, code_version: str):
        self.store, self.ledger, self.drops = ClipStore(data_dir), SourceLedger(data_dir), drops
        self.config_hash, self.code_version = config_hash, code_version

    def record(self, inspection: Inspection, status: str, reason: str | None, detail: str, clips: list[dict]) -> dict:
        probe = inspection.probe
        return source_record(
            source_id=inspection.source_id, uri=inspection.spec.uri, tag=inspection.spec.tag,
            audio_uri=inspection.spec.audio_uri, audio_sha256=inspection.audio_sha256, license=inspection.spec.license,
            size_bytes=inspection.size_bytes, status=status, reject_reason=reason, detail=detail, probe=probe.to_dict(),
            usable_span_s=probe.usable_span_s, clips=clips, config_hash=self.config_hash, code_version=self.code_version,
        )

    def reject(self, inspection: Inspection) -> dict:
        """A source the probe dropped: recorded as ``rejected`` (final unless a new sidecar can change it)."""
        probe = inspection.probe
        self.drops.add(Probe.name, probe.reject_reason)
        self.ledger.write(self.record(inspection, "rejected", probe.reject_reason, probe.detail, []))
        return {"uri": inspection.spec.uri, "source_id": inspection.source_id, "outcome": "rejected",
                "reason": probe.reject_reason, "detail": probe.detail}

    def __call__(self, inspection: Inspection, chunk_results: list[ChunkResult | str]) -> tuple[dict, list[dict]]:
        """(report row, clip records); the records are empty when a chunk failed."""
        row = {"uri": inspection.spec.uri, "source_id": inspection.source_id}
        errors = [r for r in chunk_results if isinstance(r, str)]
        if errors:
            self.store.discard_staging(inspection.source_id)
            detail = errors[0].splitlines()[0]
            self.drops.add(self.name, "task_error")
            self.ledger.write(self.record(inspection, "failed", "task_error", detail, []))
            return {**row, "outcome": "failed", "reason": "task_error", "detail": detail}, []
        clips = [clip for result in chunk_results for clip in result.clips]
        records = self.store.commit_source(inspection.source_id, source_fields(inspection), clips)
        crash_point("committed")
        for record in records:
            if record["status"] != "ok":
                self.drops.add(Extract.name, record["reject_reason"])
        self.ledger.write(self.record(inspection, "done", None, "", records))
        crash_point("ledger_written")
        return {**row, "outcome": "ingested", "reason": None, "clips": sum(r["status"] == "ok" for r in records)}, records


class Publish:
    """Step 7: every committed clip not yet in a shard → shards, a catalog part, a lineage sidecar per shard."""

    name = "publish"

    def __init__(self, data_dir: str | os.PathLike, *, dataset_version: str, limits: ShardLimits, code_version: str,
                 config_hash: str, flow_run_id: str | None = None):
        self.data_dir = Path(data_dir)
        self.options = {"dataset_version": dataset_version, "limits": limits, "code_version": code_version,
                        "config_hash": config_hash, "flow_run_id": flow_run_id}

    def __call__(self) -> list[str]:
        return [info.name for info in publish_clips(self.data_dir, **self.options)]


def source_fields(inspection: Inspection) -> dict:
    """The source's columns every clip record carries (catalog provenance)."""
    probe = inspection.probe
    return {
        "source_uri": inspection.spec.uri,
        "source_tag": inspection.spec.tag,
        "source_license": inspection.spec.license,
        "audio_uri": inspection.spec.audio_uri,
        "audio_source": probe.audio_source,
        "source_audio_rate": probe.audio_rate,
        "source_audio_channels": probe.audio_channels,
        "source_width": probe.width,
        "source_height": probe.height,
        "source_fps": probe.fps,
        "source_rotation": probe.rotation,
    }
