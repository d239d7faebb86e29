"""Encoder settings for ingest: speed of the ingest stage, bitrate and fidelity of the stored clips.

Runs the ingest stage (decode, scene cuts, face tracking, crop, encode) on a source with each x264 setting
and compares every stored clip with the crops that were fed to the encoder: bitrate in Mbit/s at 25 fps
and PSNR over all frames. Pinned to one core; settings run in interleaved rounds (best of ``--repeats``),
so this VM's slow and fast spells hit each alike.

    .venv/bin/python benchmarks/encoder.py [--video V --audio A --end-s S] [--repeats 3]

Without ``--video`` it renders a synthetic 640×480 talking head (``filters/synthetic.py``, seed 3, 10 s).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from filters.clip_data import read_clip_frames
from filters.extract import ChunkJob, ExtractConfig, extract_chunk
from filters.face_track import FaceDetector
from filters.synthetic import SpeakerSpec, render_speaker

SETTINGS = {  # label → (preset, x264 params)
    "veryfast": ("veryfast", ""),
    "veryfast me=dia": ("veryfast", "me=dia"),
    "veryfast me=dia:subme=1": ("veryfast", "me=dia:subme=1"),
    "superfast": ("superfast", ""),
}


def run_setting(job: ChunkJob, detector: FaceDetector, config: ExtractConfig) -> tuple[float, float, float]:
    """(stage frames/s, Mbit/s, PSNR dB) of one ingest of ``job`` with ``config``."""
    crops: list[np.ndarray] = []

    def keep_crops(frames, audio, rate, record):
        crops.append(frames.copy())
        return {}

    started = time.perf_counter()
    result = extract_chunk(job, detector, config, score=keep_crops)
    rate = result.frames_read / (time.perf_counter() - started)
    kept = [r for r in result.clips if r["status"] == "ok"]
    if not kept:
        raise SystemExit(f"no clip was kept from {job.video_path}: {[r['reject_reason'] for r in result.clips]}")
    n_bytes, squared_error, n_frames = 0, 0.0, 0
    for record, fed in zip(kept, crops):
        mp4 = Path(job.staging_dir) / f"{record['staged_name']}.mp4"
        n_bytes += mp4.stat().st_size
        stored = read_clip_frames(mp4)
        squared_error += float(np.sum((stored.astype(np.float32) - fed.astype(np.float32)) ** 2))
        n_frames += len(stored)
    mse = squared_error / (n_frames * fed[0].size)
    return rate, n_bytes * 8 / (n_frames / config.clip.fps) / 1e6, 10 * np.log10(255.0**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", help="source video (default: a synthetic talking head)")
    parser.add_argument("--audio", help="sidecar audio for --video, starting with the video")
    parser.add_argument("--end-s", type=float, default=9.9, help="ingest [0, end-s) of the source")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    base = ExtractConfig()
    detector = FaceDetector(model_selection=base.track.model_selection)
    with tempfile.TemporaryDirectory() as tmp:
        video = args.video
        if video is None:
            video = str(Path(tmp) / "speaker.mp4")
            render_speaker(SpeakerSpec(seed=3, duration_s=10, width=640, height=480), video)
        results: dict[str, list[tuple[float, float, float]]] = {label: [] for label in SETTINGS}
        for round_index in range(args.repeats + 1):  # round 0 warms the models up and is not counted
            for label, (preset, params) in SETTINGS.items():
                config = replace(base, encode=replace(base.encode, preset=preset, x264_params=params))
                stage = str(Path(tmp) / f"r{round_index}-{label.replace(' ', '_')}")
                job = ChunkJob(source_id="bench", video_path=video, start_s=0.0, end_s=args.end_s, chunk_index=0,
                               staging_dir=stage, audio_path=args.audio, audio_origin_s=0.0 if args.audio else None)
                outcome = run_setting(job, detector, config)
                if round_index:
                    results[label].append(outcome)
    print(f"machine: {platform.processor() or platform.machine()}, pinned to 1 core; source: {args.video or 'synthetic 640x480, 10 s'}")
    print(f"{'setting':<26}{'stage frames/s':>16}{'Mbit/s':>9}{'PSNR dB':>9}")
    for label, runs in results.items():
        best = max(r[0] for r in runs)
        print(f"{label:<26}{best:>16.1f}{runs[0][1]:>9.2f}{runs[0][2]:>9.2f}")


if __name__ == "__main__":
    main()
