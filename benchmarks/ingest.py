"""Ingestion and scoring throughput per core, against the decode and decode+encode floors on the same file.

Renders a synthetic 512×512 25 fps talking head, then, pinned to one CPU core:
  1. decode floor        — decode every frame to RGB (what the stage's reader does);
  2. decode+encode floor — decode, then encode each frame as H.264 with the stage's encoder settings;
  3. ingest stage        — probe, audio, decode, scene cuts, face detection/tracking, crop, encode, wav;
  4. each scorer alone on the stage's 512² clips (landmarks separately), and
  5. ingest + every scorer, as `fada ingest` runs it (each kept clip scored from the crops just encoded),
     against scoring by decoding the written clips again, and with a faster encoder preset, in
     interleaved rounds.
Prints frames per second for each, the ingest stage's ratio to the decode+encode floor (goal ≥ 0.5) and
ingest+score against real time (goal ≥ 2×, i.e. ≥ 50 frames/s per core).

    .venv/bin/python benchmarks/ingest.py [--seconds 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import av

from filters.clip_data import load_clip
from filters.extract import ChunkJob, ChunkResult, ExtractConfig, extract_chunk
from filters.face_track import FaceDetector
from filters.probe import probe_source
from filters.scoring import ClipScorer
from filters.synthetic import SpeakerSpec, render_speaker
from filters.media_writer import EncodeConfig, Mp4Writer


FAST_PRESET = "superfast"  # the speed/size trade-off users can pick with --set encode.preset=...


def decode_floor(path: str) -> int:
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        return sum(1 for frame in container.decode(stream) if frame.to_ndarray(format="rgb24") is not None)


def decode_encode_floor(path: str, out: str, encode: EncodeConfig) -> int:
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        with Mp4Writer(out, fps=25, width=stream.width, height=stream.height, config=encode) as writer:
            for frame in container.decode(stream):
                writer.write(frame.to_ndarray(format="rgb24"))
            return writer.frames_written


def ingest_stage(path: str, staging: str, detector: FaceDetector, config: ExtractConfig, score=None) -> ChunkResult:
    probe = probe_source(path)
    start, end = probe.usable_span_s
    job = ChunkJob(source_id="bench", video_path=path, start_s=start, end_s=end, chunk_index=0, staging_dir=staging, rotation=probe.rotation, source_tag="interview")
    result = extract_chunk(job, detector, config, score=score)
    assert all(r["status"] == "ok" for r in result.clips), [r["reject_reason"] for r in result.clips]
    return result


def ingest_and_score(path: str, staging: str, detector: FaceDetector, scorer: ClipScorer, config: ExtractConfig) -> int:
    """What one `fada ingest` worker does per chunk (shards.ingest.run.IngestWorker): each kept clip is scored from
    the crops just encoded."""
    result = ingest_stage(path, staging, detector, config, score=scorer.score_frames)
    assert all("iqa" in r for r in result.clips)
    return result.frames_read


def ingest_then_score_files(path: str, staging: str, detector: FaceDetector, scorer: ClipScorer, config: ExtractConfig) -> int:
    """Baseline for the above: score each clip by decoding its written files again (the previous design)."""
    result = ingest_stage(path, staging, detector, config)
    for record in result.clips:
        stem = Path(staging) / record["staged_name"]
        record.update(scorer.score_files(f"{stem}.mp4", f"{stem}.wav", record))
    return result.frames_read


def per_scorer_rates(staging: str, clips: list[dict], scorer: ClipScorer, repeats: int) -> dict[str, float]:
    """Frames per second of landmark extraction and of each scorer on the stage's 512² clips."""
    loaded = [load_clip(Path(staging) / f"{r['staged_name']}.mp4", Path(staging) / f"{r['staged_name']}.wav", r, scorer.landmark_model) for r in clips]
    n_frames = sum(c.n_frames for c in loaded)
    rates = {"face mesh landmarks": best_rate(lambda: sum(len(scorer.landmark_model.landmarks(c.frames)) for c in loaded), repeats)}
    for each in scorer.scorers:
        rates[each.name] = best_rate(lambda: [each.score(c) for c in loaded] and n_frames, repeats)
    return rates


def best_rate(fn, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        frames = fn()
        rates.append(frames / (time.perf_counter() - started))
    return max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core: every thread shares it
    config = ExtractConfig()
    with tempfile.TemporaryDirectory() as tmp:
        source = str(Path(tmp) / "speaker512.mp4")
        render_speaker(SpeakerSpec(seed=7, duration_s=args.seconds, width=512, height=512), source)
        detector = FaceDetector(model_selection=config.track.model_selection)
        scorer = ClipScorer()
        staging = str(Path(tmp) / "stage")
        decode = best_rate(lambda: decode_floor(source), args.repeats)
        floor = best_rate(lambda: decode_encode_floor(source, str(Path(tmp) / "floor.mp4"), config.encode), args.repeats)
        stage = best_rate(lambda: ingest_stage(source, staging, detector, config).frames_read, args.repeats)
        scorer_rates = per_scorer_rates(staging, ingest_stage(source, staging, detector, config).clips, scorer, args.repeats)
        # The variants run in interleaved rounds, so that this VM's slow and fast spells hit each alike.
        variants = {
            "shipped": lambda: ingest_and_score(source, staging, detector, scorer, config),
            "score_files": lambda: ingest_then_score_files(source, staging, detector, scorer, config),
            "fast_preset": lambda: ingest_and_score(source, staging, detector, scorer, replace(config, encode=replace(config.encode, preset=FAST_PRESET))),
        }
        rounds = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, run in variants.items():
                rounds[name].append(best_rate(run, 1))
        scored, baseline, scored_fast = (max(rounds[name]) for name in variants)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, pinned to 1")
    print(f"input: synthetic talking head 512x512 25 fps, {args.seconds:.0f} s; encoder libx264 {config.encode.preset} crf {config.encode.crf} x264-params '{config.encode.x264_params}'")
    print(f"decode only           {decode:8.1f} frames/s per core")
    print(f"decode + encode floor {floor:8.1f} frames/s per core")
    print(f"ingest stage          {stage:8.1f} frames/s per core")
    print(f"ratio stage / floor   {stage / floor:8.2f}  (goal >= 0.5)")
    for name, rate in scorer_rates.items():
        print(f"  scorer {name:<22}{rate:10.1f} frames/s per core (512² clips)")
    print(f"ingest + all scorers  {scored:8.1f} frames/s per core = {scored / 25:.2f}x real time at 25 fps (goal >= 2x)")
    print(f"  rounds: {' '.join(f'{r:.1f}' for r in rounds['shipped'])}")
    print(f"  baseline: scoring by decoding the written clips {baseline:8.1f} frames/s per core; shipped / baseline = {scored / baseline:.2f}")
    print(f"  same, encoder {FAST_PRESET:<9}{scored_fast:8.1f} frames/s per core = {scored_fast / 25:.2f}x real time  (--set encode.preset={FAST_PRESET})")


if __name__ == "__main__":
    main()
