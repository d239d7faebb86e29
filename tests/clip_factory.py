"""Real ingested clips of synthetic speakers for scorer tests: render → probe → extract.

``make_clip(spec, folder)`` runs the actual ingestion stage in-process (no Ray) on a generator video and
returns the first kept clip as ``ClipData`` with face-mesh landmarks, plus the generator's truth. The clip
is what ingest hands its scorers: the crops as they were encoded, and the clip's audio.

``make_wild(clip)`` adds a violent head shake the generator has no knob for: every frame is rotated about the
crop centre by up to ±20° and shifted by up to ±30 px along smooth random paths at 0.5–3 Hz, and the
landmarks get the same affine transform, so frames and landmarks stay consistent.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from filters.clip_data import ClipData, LandmarkModel, clip_from_arrays
from filters.extract import ChunkJob, ExtractConfig, extract_chunk
from filters.face_track import FaceDetector
from filters.probe import probe_source
from filters.synthetic import SpeakerSpec, SpeakerTruth, render_speaker


@functools.lru_cache(maxsize=1)
def _models() -> tuple[FaceDetector, LandmarkModel]:
    return FaceDetector(), LandmarkModel()


def make_clip(spec: SpeakerSpec, folder: str | Path, config: ExtractConfig = ExtractConfig()) -> tuple[ClipData, SpeakerTruth]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "source.mp4"
    truth = render_speaker(spec, source)
    probe = probe_source(str(source))
    assert probe.ok, probe.detail
    start, end = probe.usable_span_s
    detector, landmark_model = _models()
    job = ChunkJob("f" * 64, str(source), start, end, 0, str(folder / "stage"), rotation=probe.rotation)
    handed: list[tuple[np.ndarray, np.ndarray, int]] = []

    def keep(frames, audio, rate, record):
        handed.append((frames.copy(), audio, rate))  # ingest reuses the frame buffer for the next clip
        return {}

    result = extract_chunk(job, detector, config, score=keep)
    kept = [clip for clip in result.clips if clip["status"] == "ok"]
    assert kept, [clip["reject_reason"] for clip in result.clips]
    record = {**kept[0], "key": "f" * 16 + "_00000", "source_tag": "interview"}
    frames, audio, rate = handed[0]
    return clip_from_arrays(frames, audio, rate, record, landmark_model), truth


WILD_ROLL_DEG, WILD_SHIFT_PX, WILD_HZ = 20.0, 30.0, (0.5, 3.0)


def smooth_path(rng: np.random.Generator, n: int, fps: float) -> np.ndarray:
    """(n, 3) smooth random paths with peak |value| 1: three sinusoids each, frequencies in WILD_HZ."""
    t = np.arange(n)[:, None, None] / fps
    freqs, phases = rng.uniform(*WILD_HZ, (1, 3, 3)), rng.uniform(0, 2 * np.pi, (1, 3, 3))
    path = np.sin(2 * np.pi * freqs * t + phases).sum(axis=1)
    return path / np.abs(path).max(axis=0)


def make_wild(clip, seed: int = 0):
    """The clip with a violent head shake applied to frames and landmarks alike (module docstring)."""
    path = smooth_path(np.random.default_rng(seed), clip.n_frames, clip.fps)
    centre = (clip.frames.shape[2] / 2, clip.frames.shape[1] / 2)
    frames, landmarks = np.empty_like(clip.frames), clip.landmarks.copy()
    for f in range(clip.n_frames):
        matrix = cv2.getRotationMatrix2D(centre, WILD_ROLL_DEG * path[f, 0], 1.0)
        matrix[:, 2] += WILD_SHIFT_PX * path[f, 1:]
        frames[f] = cv2.warpAffine(clip.frames[f], matrix, clip.frames.shape[2:0:-1], borderMode=cv2.BORDER_REFLECT)
        landmarks[f, :, :2] = landmarks[f, :, :2] @ matrix[:, :2].T + matrix[:, 2]
    return replace(clip, frames=frames, landmarks=landmarks)
