"""One ingest run: the steps of `shards.ingest.steps` composed over a manifest, the parallel ones on a pool.

The pool is the caller's (``open_pool(make_worker, run_job)`` → a context manager whose ``map(jobs)`` yields
outcomes with ``job``, ``ok``, ``value`` and ``error``, in any order): `flows.ingest` passes Ray actors or an
in-process pool. A run holds the data dir's writer lock throughout (`shards.lock`), checks before any work
that the catalog and lineage read and that configured scorer weights load, marks its step boundaries with
``crash_point`` (`shards.crashpoints`) for the crash tests, and writes its report to ``runs/ingest-<time>.json``.
"""

from __future__ import annotations

import functools
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from filters.extract import ChunkJob, ChunkResult
from filters.profiles import load_profile
from shards.atomic import atomic_write_json
from shards.clip_store import ClipStore
from shards.crashpoints import crash_point
from shards.ingest.config import IngestConfig, check_scoring
from shards.ingest.steps import Commit, Drops, Extract, Inspect, Inspection, Plan, Probe, Publish, Score
from shards.integrity import check_readable
from shards.ledger import SourceLedger
from shards.lineage import code_version
from shards.lock import writer_lock
from shards.sources import SourceSpec, load_manifest

PREVIEW_PROFILES = ("strict", "lenient")  # the run summary says how many new clips each would keep


class IngestWorker:
    """What one pool worker holds for its whole life (models load once) and runs: a source spec → Inspect then
    Probe; a chunk → Extract with Score."""

    def __init__(self, config: IngestConfig, cache_dir: str):
        self.inspect, self.probe = Inspect(cache_dir), Probe(config.probe)
        self.extract = Extract(config.extract, Score(config.scoring))

    def __call__(self, job: SourceSpec | ChunkJob) -> Inspection | ChunkResult:
        if isinstance(job, SourceSpec):
            return self.probe(self.inspect(job))
        return self.extract(job)


def run_job(worker: IngestWorker, job: SourceSpec | ChunkJob) -> Inspection | ChunkResult:
    """The pool's job function: ``worker(job)``."""
    return worker(job)


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
    drops: dict = field(default_factory=dict)  # step → {reason: n}: every source or clip a step dropped

    def outcome_counts(self) -> Counter:
        return Counter(row["outcome"] for row in self.sources)

    def to_dict(self) -> dict:
        return {**asdict(self), "clips_rejected": dict(self.clips_rejected), "outcomes": dict(self.outcome_counts())}


OpenPool = Callable[[Callable[[], Any], Callable[[Any, Any], Any]], Any]


def ingest(manifest: str | os.PathLike, data_dir: str | os.PathLike, config: IngestConfig, *, open_pool: OpenPool,
           progress: bool = True, wait: float = 0.0, flow_run_id: str | None = None) -> IngestReport:
    """Ingest every new source of the manifest into ``data_dir``; safe to re-run (done sources are skipped).

    ``wait``: seconds to wait for another writer of ``data_dir`` (`shards.lock.LockHeld` after that).
    ``flow_run_id``: the Prefect flow run doing it (recorded in lineage), passed in by the flow.
    """
    specs = load_manifest(manifest)
    check_scoring(config.scoring)
    with writer_lock(data_dir, wait=wait, command="ingest"):
        check_readable(data_dir)
        return _ingest(specs, Path(data_dir), config, open_pool, progress, flow_run_id)


def _ingest(specs: list[SourceSpec], data_dir: Path, config: IngestConfig, open_pool: OpenPool, progress: bool,
            flow_run_id: str | None) -> IngestReport:
    started = time.monotonic()
    report = IngestReport(str(data_dir), datetime.now(timezone.utc).isoformat(timespec="seconds"), config.digest(), code_version())
    drops, store, plan = Drops(), ClipStore(data_dir), Plan(config.extract.clip.fps, config.chunk_s)
    commit = Commit(data_dir, drops, config_hash=report.config_hash, code_version=report.code_version)
    with open_pool(functools.partial(IngestWorker, config, str(data_dir / "cache")), run_job) as pool:
        inspections = _inspect_all(pool, specs, drops, report, progress)
        to_process = _select_new(inspections, SourceLedger(data_dir), commit, drops, report)
        jobs = [job for insp in to_process for job in plan(insp, str(store.reset_staging(insp.source_id)))]
        results = _extract_all(pool, jobs, plan, report, progress)
    crash_point("staged")
    profiles = [load_profile(name) for name in PREVIEW_PROFILES]
    for insp in to_process:
        row, records = commit(insp, results.get(insp.source_id, []))
        _tally(records, profiles, report)
        report.sources.append(row)
    store.remove_empty_staging()
    crash_point("all_committed")
    report.shards = Publish(data_dir, dataset_version=config.dataset_version, limits=config.shards,
                            code_version=report.code_version, config_hash=report.config_hash, flow_run_id=flow_run_id)()
    crash_point("published")
    report.drops = drops.to_dict()
    report.seconds = round(time.monotonic() - started, 2)
    atomic_write_json(data_dir / "runs" / f"ingest-{report.started_at.replace(':', '')}.json", report.to_dict())
    return report


def _inspect_all(pool, specs: list[SourceSpec], drops: Drops, report: IngestReport, progress: bool) -> list[Inspection]:
    inspections = []
    for outcome in tqdm(pool.map(specs), total=len(specs), desc="probe", unit="source", disable=not progress):
        if outcome.ok:
            inspections.append(outcome.value)
        else:  # not even readable enough to hash: nothing to key a ledger record on
            drops.add(Inspect.name, "unreadable")
            report.sources.append({"uri": outcome.job.uri, "source_id": None, "outcome": "failed", "reason": "unreadable",
                                   "detail": outcome.error.splitlines()[0]})
    order = {spec.uri: i for i, spec in enumerate(specs)}
    return sorted(inspections, key=lambda insp: order[insp.spec.uri])


def _select_new(inspections: list[Inspection], ledger: SourceLedger, commit: Commit, drops: Drops,
                report: IngestReport) -> list[Inspection]:
    """Drop sources already ingested (by content) or listed twice; record probe rejections."""
    selected, seen = [], set()
    for insp in inspections:
        if not Inspect.is_new(insp, ledger, seen):
            drops.add(Inspect.name, "already_ingested")
            report.sources.append({"uri": insp.spec.uri, "source_id": insp.source_id, "outcome": "skipped", "reason": "already_ingested"})
        elif not insp.probe.ok:
            report.sources.append(commit.reject(insp))
        else:
            selected.append(insp)
    return selected


def _extract_all(pool, jobs: list[ChunkJob], plan: Plan, report: IngestReport, progress: bool) -> dict[str, list]:
    """Run every chunk; returns per source the list of ChunkResult or error strings."""
    results: dict[str, list] = {job.source_id: [] for job in jobs}
    with tqdm(total=sum(map(plan.frames, jobs)), desc="ingest", unit="frame", disable=not progress) as bar:
        for outcome in pool.map(jobs):
            results[outcome.job.source_id].append(outcome.value if outcome.ok else outcome.error)
            bar.update(plan.frames(outcome.job))
            if outcome.ok:
                report.frames_read += outcome.value.frames_read
    return results


def _tally(records: list[dict], profiles: list, report: IngestReport) -> None:
    """Kept and rejected clips, and what each shipped profile would keep of the kept ones: a preview only;
    views (re-filters) make the real choice."""
    for record in records:
        if record["status"] != "ok":
            report.clips_rejected[record["reject_reason"]] += 1
            continue
        hours = record["n_frames"] / record["fps"] / 3600
        report.clips_ok += 1
        report.hours_ok += hours
        for profile in profiles:
            tally = report.profiles.setdefault(profile.name, {"kept": 0, "hours": 0.0, "failed": {}})
            decision = profile.decide(record)
            if decision.keep:
                tally["kept"] += 1
                tally["hours"] += hours
            for dimension in decision.failed_dimensions:
                tally["failed"][dimension] = tally["failed"].get(dimension, 0) + 1
