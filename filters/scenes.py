"""Online shot-boundary detection on a stream of frames.

A content detector in the manner of PySceneDetect's ContentDetector/AdaptiveDetector: each frame is
shrunk to ``size``×``size``, converted to HSV, and scored by the mean absolute difference from the
previous frame (0–255). A cut is declared when the score is both above ``threshold`` and
``adaptive_ratio`` times the mean score of the preceding ``window`` frames — so steady motion (camera
shake, a scrolling background) raises the baseline instead of triggering cuts — and at least
``min_shot_frames`` have passed since the last cut.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np


class SceneCutDetector:
    def __init__(
        self,
        threshold: float = 20.0,
        adaptive_ratio: float = 3.0,
        window: int = 8,
        min_shot_frames: int = 10,
        size: int = 64,
    ):
        self.threshold = threshold
        self.adaptive_ratio = adaptive_ratio
        self.window = window
        self.min_shot_frames = min_shot_frames
        self.size = size
        self.reset()

    def reset(self) -> None:
        self._previous: np.ndarray | None = None
        self._recent_scores: deque[float] = deque(maxlen=self.window)
        self._frames_since_cut = 0

    def push(self, frame_rgb: np.ndarray) -> bool:
        """Feed the next frame; True when this frame starts a new shot."""
        step = max(1, min(frame_rgb.shape[:2]) // (2 * self.size))  # subsample first: area-averaging a full frame is costly
        small = cv2.resize(frame_rgb[::step, ::step], (self.size, self.size), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV).astype(np.int16)
        previous, self._previous = self._previous, hsv
        self._frames_since_cut += 1
        if previous is None:
            return False
        score = float(np.abs(hsv - previous).mean())
        baseline = float(np.mean(self._recent_scores)) if self._recent_scores else 0.0
        self._recent_scores.append(score)
        is_cut = (
            score >= self.threshold
            and score >= self.adaptive_ratio * baseline
            and self._frames_since_cut >= self.min_shot_frames
        )
        if is_cut:
            self._frames_since_cut = 0
            self._recent_scores.clear()
        return is_cut
