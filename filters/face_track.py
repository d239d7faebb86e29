"""Face detection on a frame stride, boxes interpolated in between, smoothed over time.

``FaceDetector`` wraps mediapipe's face detector (model bundled in the mediapipe wheel; load it once per
worker). ``ShotTracker`` follows the main face through one shot with a bounded look-ahead: detections run
every ``detect_stride`` frames, boxes between two detections are linearly interpolated, and every box is
then smoothed with a centred Gaussian over ``smooth_sigma_s``. A frame is released once the frames it
depends on have arrived, so at most ``detect_stride + smoothing radius`` frames are held in memory.
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass

import numpy as np

from filters.frames import Frame
from filters.resize import shrink


@dataclass(frozen=True)
class Detection:
    box: np.ndarray  # [x0, y0, x1, y1] in frame pixels
    score: float

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


class FaceDetector:
    """mediapipe face detection; frames are shrunk to ``max_input_side`` first.

    The models letterbox their input to 128 px (short range) or 192 px (full range), so shrinking to 320 px
    beforehand loses nothing and saves the graph's own resize of a full frame.
    """

    def __init__(self, model_selection: int = 0, min_confidence: float = 0.5, max_input_side: int = 320):
        os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ logging: warnings and above only
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import mediapipe as mp

        self.max_input_side = max_input_side
        self._model = mp.solutions.face_detection.FaceDetection(
            model_selection=model_selection, min_detection_confidence=min_confidence
        )

    def detect(self, frame_rgb: np.ndarray) -> list[Detection]:
        """Faces in the frame, largest first, boxes in the frame's pixels."""
        height, width = frame_rgb.shape[:2]
        scale = min(1.0, self.max_input_side / max(height, width))
        image = frame_rgb
        if scale < 1.0:
            image = shrink(frame_rgb, round(width * scale), round(height * scale))
        result = self._model.process(np.ascontiguousarray(image))
        detections = []
        for found in result.detections or []:
            rel = found.location_data.relative_bounding_box
            box = np.array(
                [rel.xmin * width, rel.ymin * height, (rel.xmin + rel.width) * width, (rel.ymin + rel.height) * height]
            )
            detections.append(Detection(box, float(found.score[0])))
        return sorted(detections, key=lambda d: d.area, reverse=True)

    def close(self) -> None:
        self._model.close()


@dataclass(frozen=True)
class FaceTrackConfig:
    detect_stride: int = 5  # run the detector every N frames (and on each shot's first frame)
    smooth_sigma_s: float = 0.3  # Gaussian smoothing of the box trajectory, seconds
    second_face_min_rel_area: float = 0.3  # another face at least this share of the main face's area is "prominent"
    model_selection: int = 0  # mediapipe: 0 short range (close-ups, faces within ~2 m), 1 full range (wide shots)
    min_confidence: float = 0.5


@dataclass(frozen=True)
class TrackedFrame:
    frame: Frame
    face_box: np.ndarray | None  # smoothed main-face box, None when no face has been seen near this frame
    is_keyframe: bool  # the detector ran on this frame
    n_faces: int  # faces found (keyframes only, else 0)
    has_second_face: bool  # a second prominent face (keyframes only)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def choose_main_face(detections: list[Detection], previous_box: np.ndarray | None) -> Detection | None:
    """The face overlapping the previous main face most; the largest one when none overlaps."""
    if not detections:
        return None
    if previous_box is not None:
        best = max(detections, key=lambda d: box_iou(d.box, previous_box))
        if box_iou(best.box, previous_box) > 0.1:
            return best
    return detections[0]


class ShotTracker:
    """Tracks the main face through one shot; ``push`` frames in order, then ``flush`` at the shot's end."""

    def __init__(self, detector: FaceDetector, config: FaceTrackConfig, fps: float):
        self.detector = detector
        self.config = config
        sigma = max(config.smooth_sigma_s * fps, 1e-3)
        self.radius = int(math.ceil(2 * sigma))
        offsets = np.arange(-self.radius, self.radius + 1)
        self._kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
        self._pending: deque[tuple[Frame, bool, int, bool]] = deque()
        self._keyframes: list[tuple[int, np.ndarray | None]] = []  # (local index, main box or None)
        self._raw_cache: dict[int, np.ndarray | None] = {}
        self._count = 0
        self._next_release = 0
        self._last_main: np.ndarray | None = None

    def push(self, frame: Frame) -> list[TrackedFrame]:
        local = self._count
        self._count += 1
        is_key = local % self.config.detect_stride == 0
        n_faces, second = 0, False
        if is_key:
            detections = self.detector.detect(frame.rgb)
            main = choose_main_face(detections, self._last_main)
            n_faces = len(detections)
            if main is not None:
                self._last_main = main.box
                second = any(
                    d is not main and d.area >= self.config.second_face_min_rel_area * main.area for d in detections
                )
            self._keyframes.append((local, None if main is None else main.box))
        self._pending.append((frame, is_key, n_faces, second))
        ready = []
        # Frame k needs raw boxes up to k + radius, which need the next keyframe after them.
        while self._pending and self._next_release + self.radius + self.config.detect_stride < self._count:
            ready.append(self._release())
        return ready

    def flush(self) -> list[TrackedFrame]:
        return [self._release() for _ in range(len(self._pending))]

    def _release(self) -> TrackedFrame:
        frame, is_key, n_faces, second = self._pending.popleft()
        local = self._next_release
        self._next_release += 1
        box = self._smoothed_box(local)
        self._forget_before(local - self.radius)
        return TrackedFrame(frame, box, is_key, n_faces, second)

    def _smoothed_box(self, local: int) -> np.ndarray | None:
        lo, hi = max(0, local - self.radius), min(self._count - 1, local + self.radius)
        boxes, weights = [], []
        for index in range(lo, hi + 1):
            raw = self._raw_box(index)
            if raw is not None:
                boxes.append(raw)
                weights.append(self._kernel[index - local + self.radius])
        if not boxes:
            return None
        weights_arr = np.asarray(weights)[:, None]
        return (np.asarray(boxes) * weights_arr).sum(axis=0) / weights_arr.sum()

    def _raw_box(self, local: int) -> np.ndarray | None:
        """Main-face box at a frame: interpolated between the keyframes around it, held at the ends."""
        if local in self._raw_cache:
            return self._raw_cache[local]
        before = next(((i, b) for i, b in reversed(self._keyframes) if i <= local), None)
        after = next(((i, b) for i, b in self._keyframes if i >= local), None)
        if before is not None and after is not None and before[1] is not None and after[1] is not None:
            span = after[0] - before[0]
            t = 0.0 if span == 0 else (local - before[0]) / span
            raw = (1 - t) * before[1] + t * after[1]
        else:
            known = [kb for kb in (before, after) if kb is not None and kb[1] is not None]
            raw = known[0][1] if known else None
        if after is not None:  # only final once the keyframe after it exists
            self._raw_cache[local] = raw
        return raw

    def _forget_before(self, local: int) -> None:
        for index in [i for i in self._raw_cache if i < local]:
            del self._raw_cache[index]
        while len(self._keyframes) > 2 and self._keyframes[1][0] < local:
            self._keyframes.pop(0)
