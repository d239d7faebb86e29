"""Background stability: camera shake and background motion, measured outside the person.

The crop follows a smoothed face track, so in crop pixels a static background appears to move whenever the
crop box moves or changes size. This scorer therefore maps every tracked background point back to the
source frame with the clip's per-frame crop boxes before measuring anything: a crop pixel ``p`` (pixel
centres, in a frame downscaled to ``size``) of frame ``f`` with crop box ``[x0, y0, x1, y1]`` (source
pixels, square, side ``w = x1 - x0``) sits at

    X = (x0, y0) + (p + 0.5) · w / size                                                        (1)

in the source frame. A background that is still in the source then has zero displacement whatever the crop
did. Displacements are reported in pixels per frame at the clip's scale (``S`` = the clip's side, 512), i.e.
source displacements times ``S / w``, so that numbers compare across source resolutions.

Steps (frames sampled every ``stride`` frames, downscaled to ``size``):

1. Person segmentation with mediapipe selfie segmentation (the landscape model, ``model_selection=1``: a
   third faster than the general one and it covers hair more fully, so fewer tracked points sit on the
   person); background = person probability below
   ``person_threshold``; ``bg_share`` = mean share of background pixels. The mask is eroded by ``erode_px``
   so that points on the person's outline (hair, shoulders moving with the head) are not tracked.
2. Between consecutive sampled frames a and b: corners on a's background, tracked to b and back with
   pyramidal Lucas–Kanade; a track is kept when its forward–backward error is below ``max_fb_error_px``
   and it lands on b's background. Both ends are mapped to the source frame with (1).
3. Global motion: a RANSAC similarity ``M`` (rotation, scale, translation) from a's to b's source points;
   the camera's translation is the displacement of the crop centre ``c``: ``t = M·c − c``. Per frame at
   clip scale: ``v_k = t · S / (w · stride)``.
4. ``camera_shake`` = RMS of the high-frequency part of that track,
   ``sqrt(mean_k |v_k − G_σ * v_k|²)``, where ``G_σ *`` is a Gaussian low-pass over time with
   ``σ = shake_sigma_s``: steady pans, drifts and slow zooms fall in the low-pass and are not shake. The
   high-pass gain is ``1 − exp(−2π²f²σ²)``: with σ = 0.3 s, 83 % at 1 Hz (hand-held shake is 1–10 Hz),
   16 % at 0.3 Hz.
5. ``bg_motion`` = mean over pairs of the mean over kept tracks of ``|d_n − (v_k − G_σ * v_k)|``, where
   ``d_n`` is track n's source displacement at clip scale per frame: the background's own motion once
   the crop's movement (1) and the camera shake (4) are taken out. Pans, scrolling or drifting backdrops
   and things moving behind the speaker all count; a still background scores about 0.

Both motion scores are in pixels per frame at clip scale; higher is worse (``bg_share`` is context for
reading them, not a quality by itself). They are NaN when fewer than
``MIN_VALID_PAIRS`` frame pairs had ``MIN_TRACKS`` usable background tracks (e.g. the person fills the frame).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from filters.clip_data import ClipData

MAX_CORNERS = 150
CORNER_QUALITY = 0.01
CORNER_MIN_DISTANCE_PX = 6
LK_WINDOW_PX = 11
LK_PYRAMID_LEVELS = 2
MIN_TRACKS = 12  # fewer background tracks than this: the pair is not measured
MIN_VALID_PAIRS = 2
RANSAC_THRESHOLD_PX = 1.0  # in pixels of the downscaled frame; converted to source pixels per pair


@dataclass
class _Sample:
    """One sampled frame: grey image and background mask at the working size, and its crop box."""

    gray: np.ndarray  # (size, size) uint8
    background: np.ndarray  # (size, size) uint8, 255 on (eroded) background
    bg_share: float  # share of background pixels before erosion
    box: np.ndarray  # (4,) float crop box in source pixels

    @property
    def source_per_px(self) -> float:
        """Source pixels per pixel of the downscaled crop: w / size."""
        return float(self.box[2] - self.box[0]) / self.gray.shape[0]

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """Eq. (1): downscaled-crop pixel centres (n, 2) → source-frame coordinates."""
        return self.box[:2] + (points + 0.5) * self.source_per_px


class BackgroundScorer:
    """Camera shake, background motion and background share of a clip (see the module docstring)."""

    name = "background"
    version = "2"  # 2: the landscape segmentation model (model_selection=1)

    def __init__(self, stride: int = 3, size: int = 256, person_threshold: float = 0.5, erode_px: int = 4,
                 max_fb_error_px: float = 0.5, shake_sigma_s: float = 0.3, model_selection: int = 1):
        os.environ.setdefault("GLOG_minloglevel", "2")
        import mediapipe as mp

        if stride < 1 or size < 32:
            raise ValueError("stride must be ≥ 1 and size ≥ 32")
        self.stride, self.size = stride, size
        self.person_threshold = person_threshold
        self.erode_kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode_px + 1, 2 * erode_px + 1))
        self.max_fb_error_px = max_fb_error_px
        self.shake_sigma_s = shake_sigma_s
        self._segmenter = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=model_selection)

    def score(self, clip: ClipData) -> dict[str, float]:
        samples = [self._sample(clip, index) for index in range(0, clip.n_frames, self.stride)]
        bg_share = float(np.mean([s.bg_share for s in samples])) if samples else float("nan")
        clip_side = clip.frames.shape[1]
        pairs = [self._pair_motion(a, b, clip_side) for a, b in zip(samples, samples[1:])]
        camera_shake, bg_motion = self._summarise(pairs, clip.fps)
        return {"camera_shake": camera_shake, "bg_motion": bg_motion, "bg_share": bg_share}

    def _sample(self, clip: ClipData, index: int) -> _Sample:
        small = cv2.resize(clip.frames[index], (self.size, self.size), interpolation=cv2.INTER_AREA)
        person = self._segmenter.process(np.ascontiguousarray(small)).segmentation_mask
        background = (person < self.person_threshold).astype(np.uint8) * 255
        return _Sample(
            gray=cv2.cvtColor(small, cv2.COLOR_RGB2GRAY),
            background=cv2.erode(background, self.erode_kernel),
            bg_share=float(np.count_nonzero(background)) / background.size,
            box=_crop_box(clip, index),
        )

    def _pair_motion(self, a: _Sample, b: _Sample, clip_side: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(v, d) for one pair, at clip scale per frame: the crop centre's global displacement (2,) and
        every kept track's displacement (n, 2), both in source-frame terms; None if too few tracks."""
        start, end = self._tracks(a, b)
        if len(start) < MIN_TRACKS:
            return None
        source_a, source_b = a.to_source(start), b.to_source(end)
        matrix, _ = cv2.estimateAffinePartial2D(source_a, source_b, method=cv2.RANSAC,
                                                ransacReprojThreshold=RANSAC_THRESHOLD_PX * a.source_per_px)
        if matrix is None:
            return None
        centre = (a.box[:2] + a.box[2:]) / 2
        to_clip_per_frame = clip_side / (a.box[2] - a.box[0]) / self.stride  # S / (w · stride)
        global_shift = (matrix[:, :2] @ centre + matrix[:, 2] - centre) * to_clip_per_frame
        return global_shift, (source_b - source_a) * to_clip_per_frame

    def _tracks(self, a: _Sample, b: _Sample) -> tuple[np.ndarray, np.ndarray]:
        """Background corners of a tracked to b, kept when forward–backward consistent and on b's
        background; (n, 2) float32 start and end points in downscaled-crop pixels."""
        corners = cv2.goodFeaturesToTrack(a.gray, MAX_CORNERS, CORNER_QUALITY, CORNER_MIN_DISTANCE_PX,
                                          mask=a.background)
        if corners is None:
            return np.empty((0, 2), np.float32), np.empty((0, 2), np.float32)
        params = dict(winSize=(LK_WINDOW_PX, LK_WINDOW_PX), maxLevel=LK_PYRAMID_LEVELS)
        forward, ok_f, _ = cv2.calcOpticalFlowPyrLK(a.gray, b.gray, corners, None, **params)
        back, ok_b, _ = cv2.calcOpticalFlowPyrLK(b.gray, a.gray, forward, None, **params)
        start, end = corners.reshape(-1, 2), forward.reshape(-1, 2)
        fb_error = np.linalg.norm(back.reshape(-1, 2) - start, axis=1)
        keep = (ok_f.ravel() == 1) & (ok_b.ravel() == 1) & (fb_error < self.max_fb_error_px)
        inside = ((end >= 0) & (end <= self.size - 1)).all(axis=1)
        cols, rows = np.clip(np.round(end), 0, self.size - 1).astype(int).T
        keep &= inside & (b.background[rows, cols] > 0)
        return start[keep], end[keep]

    def _summarise(self, pairs: list, fps: float) -> tuple[float, float]:
        """Steps 4–5: camera_shake and bg_motion from the per-pair (v, d); NaN with too few pairs."""
        valid = np.array([p is not None for p in pairs], bool)
        if valid.sum() < MIN_VALID_PAIRS:
            return float("nan"), float("nan")
        velocity = np.full((len(pairs), 2), np.nan)
        velocity[valid] = [p[0] for p in pairs if p is not None]
        steps = np.arange(len(pairs))
        for axis in range(2):  # bridge unmeasured pairs so the low-pass sees an even time grid
            velocity[~valid, axis] = np.interp(steps[~valid], steps[valid], velocity[valid, axis])
        sigma = self.shake_sigma_s * fps / self.stride
        shake = velocity - gaussian_filter1d(velocity, sigma, axis=0, mode="nearest")
        camera_shake = float(np.sqrt(np.mean(np.sum(shake[valid] ** 2, axis=1))))
        residual = [np.linalg.norm(p[1] - shake[k], axis=1).mean() for k, p in enumerate(pairs) if p is not None]
        return camera_shake, float(np.mean(residual))

    def close(self) -> None:
        self._segmenter.close()


def _crop_box(clip: ClipData, index: int) -> np.ndarray:
    """The frame's crop box in source pixels; a clip without crop boxes is taken as its own source."""
    boxes = clip.record.get("crop_boxes")
    box = boxes[index] if boxes is not None and index < len(boxes) else None
    if box is None:
        side = clip.frames.shape[1]
        return np.array([0.0, 0.0, side, side])
    return np.asarray(box, dtype=float)
