"""Downscaling a crop: ``filters.resize.shrink`` against OpenCV's INTER_AREA (the baseline) and INTER_LINEAR.

Prints milliseconds per resize (best of ``--repeats`` rounds of 50, one core) and each result's PSNR against
INTER_AREA, for the sizes ingest meets: face crops from 1080p/4K sources to 512², and frames shrunk for the
face detector.

    .venv/bin/python benchmarks/resize.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from filters.resize import shrink
from filters.clip_data import read_clip_frames
from filters.synthetic import SpeakerSpec, render_speaker

CASES = [((700, 700), (512, 512)), ((1000, 1000), (512, 512)), ((1500, 1500), (512, 512)), ((1080, 1920), (180, 320)), ((2160, 3840), (180, 320))]


def ms_per_call(fn, repeats: int, calls: int = 50) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - started) / calls)
    return best * 1000


def speaker_frame(width: int, height: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speaker.mp4"
        render_speaker(SpeakerSpec(seed=7, duration_s=0.2, width=width, height=height), path)
        return np.ascontiguousarray(read_clip_frames(path)[0])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(f"machine: {platform.processor() or platform.machine()}, pinned to 1 core; image: a synthetic speaker frame")
    print(f"{'from':>11} {'to':>9} {'INTER_AREA ms':>14} {'shrink ms':>10} {'speed-up':>9} {'shrink dB':>10} {'LINEAR dB':>10}")
    for (rows, cols), (out_rows, out_cols) in CASES:
        image = speaker_frame(cols, rows)
        area = cv2.resize(image, (out_cols, out_rows), interpolation=cv2.INTER_AREA)
        linear = cv2.resize(image, (out_cols, out_rows), interpolation=cv2.INTER_LINEAR)
        area_ms = ms_per_call(lambda: cv2.resize(image, (out_cols, out_rows), interpolation=cv2.INTER_AREA), args.repeats)
        shrink_ms = ms_per_call(lambda: shrink(image, out_cols, out_rows), args.repeats)
        print(f"{cols:>5}x{rows:<5} {out_cols:>4}x{out_rows:<4} {area_ms:>14.2f} {shrink_ms:>10.2f} {area_ms / shrink_ms:>8.1f}x"
              f" {psnr(shrink(image, out_cols, out_rows), area):>10.1f} {psnr(linear, area):>10.1f}")


if __name__ == "__main__":
    main()
