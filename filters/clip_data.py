"""What a quality scorer sees: one ingested clip's frames, audio, face track and face landmarks.

Landmarks (mediapipe face mesh, 468 points, in the clip's pixel coordinates) are computed once per clip by
``LandmarkModel`` and shared by every scorer that needs them (sync, movement, image quality).
Every scorer is a small class with ``name``, ``version`` and ``score(clip) -> dict[str, float]``; it never
applies thresholds (that is ``filters.profiles``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import av
import cv2
import numpy as np
import soundfile

from filters.media_contract import FPS

N_LANDMARKS = 468


@dataclass
class ClipData:
    key: str
    frames: np.ndarray  # (N, S, S, 3) uint8 RGB: the face-centred crop
    fps: float
    audio: np.ndarray  # float32 mono in [-1, 1]; N * rate / fps samples, sample 0 at frame 0
    audio_rate: int
    landmarks: np.ndarray  # (N, 468, 3) float32: x, y in crop pixels, z in mediapipe's relative units; NaN rows where no face
    record: dict  # the clip's metadata record (source_tag, face_boxes, crop_boxes, face_px, single_face_ratio, …)

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def face_found(self) -> np.ndarray:
        """(N,) bool: face mesh found a face in the frame."""
        return ~np.isnan(self.landmarks[:, 0, 0])


class Scorer(Protocol):
    name: str
    version: str

    def score(self, clip: ClipData) -> dict[str, float]: ...


class LandmarkModel:
    """mediapipe face mesh in video mode (tracks between frames); load once per worker.

    Frames are shrunk to ``input_size`` first: the mesh model sees a 192² face crop anyway, and a smaller
    image makes mediapipe's own conversion and detection cheaper. Landmarks come back in clip pixels.
    """

    def __init__(self, min_confidence: float = 0.5, input_size: int = 256, stride: int = 2):
        os.environ.setdefault("GLOG_minloglevel", "2")
        import mediapipe as mp

        self._mp = mp
        self.min_confidence = min_confidence
        self.input_size = input_size
        self.stride = stride  # the mesh runs on every `stride`-th frame (and the last); frames between are interpolated

    def landmarks(self, frames: np.ndarray) -> np.ndarray:
        """(N, 468, 3) landmarks for consecutive frames of one clip (tracking restarts per clip)."""
        mesh = self._mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1, refine_landmarks=False,
            min_detection_confidence=self.min_confidence, min_tracking_confidence=self.min_confidence,
        )
        out = np.full((len(frames), N_LANDMARKS, 3), np.nan, np.float32)
        measured = sorted({*range(0, len(frames), self.stride), len(frames) - 1} - {-1})
        try:
            for index in measured:
                frame = frames[index]
                height, width = frame.shape[:2]
                small = cv2.resize(frame, (self.input_size, self.input_size), interpolation=cv2.INTER_AREA)
                found = mesh.process(small).multi_face_landmarks
                if found:
                    points = np.array([(p.x * width, p.y * height, p.z * width) for p in found[0].landmark], np.float32)
                    out[index] = points[:N_LANDMARKS]
        finally:
            mesh.close()
        _interpolate_between(out, measured)
        return out


def _interpolate_between(points: np.ndarray, measured: list[int]) -> None:
    """Fill frames between two measured frames that both found a face, linearly; others stay NaN."""
    for left, right in zip(measured, measured[1:]):
        if right - left < 2 or np.isnan(points[left, 0, 0]) or np.isnan(points[right, 0, 0]):
            continue
        weights = (np.arange(left + 1, right) - left) / (right - left)
        points[left + 1 : right] = (1 - weights)[:, None, None] * points[left] + weights[:, None, None] * points[right]


def read_clip_frames(mp4_path: str | os.PathLike) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB. Frames are decoded straight into one array sized from the container's frame
    count (a list then ``np.stack`` copies every frame once more); a count that is missing or wrong only
    costs that copy."""
    with av.open(str(mp4_path)) as container:
        stream = container.streams.video[0]
        frames = np.empty((max(stream.frames, 0), stream.height, stream.width, 3), np.uint8)
        extra = []
        count = 0
        for frame in container.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")
            if count < len(frames):
                frames[count] = rgb
            else:
                extra.append(rgb)
            count += 1
    if extra:
        return np.concatenate([frames, np.stack(extra)])
    return frames[:count]


def load_clip(mp4_path: str | os.PathLike, wav_path: str | os.PathLike, record: dict, landmark_model: LandmarkModel) -> ClipData:
    """A clip already on disk, decoded again (re-scoring stored clips)."""
    audio, rate = soundfile.read(str(wav_path), dtype="float32", always_2d=False)
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    return clip_from_arrays(read_clip_frames(mp4_path), audio, rate, record, landmark_model)


def clip_from_arrays(frames: np.ndarray, audio: np.ndarray, audio_rate: int, record: dict, landmark_model: LandmarkModel) -> ClipData:
    """A clip from its frames (N, S, S, 3) uint8 and mono float audio; landmarks are computed here, once."""
    return ClipData(
        key=record.get("key", ""),
        frames=frames,
        fps=float(record.get("fps", FPS)),
        audio=audio,
        audio_rate=audio_rate,
        landmarks=landmark_model.landmarks(frames),
        record=record,
    )
