"""Image quality of a generated video, measured as the data filters measure ingested clips.

The score is ``filters.image_quality.ImageQualityScorer`` (sharpness, face size, clipped exposure, noise,
blockiness of the face region, combined into ``iqa`` in [0, 1]; its docstring gives the formulas) run on the
generated frames, with the face region from face-mesh landmarks (``filters.clip_data.LandmarkModel``), as
in ingestion. So ``iqa`` of a generated video is on the scale the strict and lenient profiles threshold.
(The paper's IQA column is Q-Align (Wu et al. 2023), a multimodal LLM whose weights are not available here;
this is the project's hand-crafted score, comparable between runs, not with published numbers.)

``face_px`` is, as ingestion records it (``filters.extract``), the median side of the face detector's box
(``filters.face_track.FaceDetector``, largest face) in source pixels; a generated video is its own source,
so the detector runs on the frames the scorer samples. Frames where it finds no face are left out of the
median; with none at all ``face_px`` and ``iqa`` are NaN. Blockiness is measured on the video's own 8×8
grid only (a generated video has no source crop boxes).
"""

from __future__ import annotations

import numpy as np

from fada.metrics.sync_metric import generated_clip
from filters.clip_data import LandmarkModel
from filters.face_track import FaceDetector
from filters.image_quality import FRAME_STEP, ImageQualityScorer


class ImageQualityMetric:
    """``iqa`` and its components for generated videos. ``__init__`` keywords are the configuration;
    pass ``landmark_model`` to share one with other metrics."""

    def __init__(self, frame_step: int = FRAME_STEP, landmark_model: LandmarkModel | None = None):
        self.scorer = ImageQualityScorer(frame_step)
        self.landmark_model = LandmarkModel() if landmark_model is None else landmark_model
        self.detector = FaceDetector()

    def face_px(self, frames: np.ndarray) -> float:
        """Median side of the largest detected face box over the sampled frames (NaN if none is found)."""
        sides = []
        for index in range(0, len(frames), self.scorer.frame_step):
            detections = self.detector.detect(frames[index])
            if detections:
                x0, y0, x1, y1 = detections[0].box
                sides.append(max(x1 - x0, y1 - y0))
        return float(np.median(sides)) if sides else float("nan")

    def score(self, frames: np.ndarray) -> dict[str, float]:
        """``iqa, sharpness, reblur_ratio, face_px, exposure_clip, noise, blockiness`` of (T, H, W, 3) uint8 RGB frames."""
        clip = generated_clip(frames, np.zeros(0, np.float32), self.landmark_model)
        clip.record["face_px"] = self.face_px(clip.frames)
        return self.scorer.score(clip)
