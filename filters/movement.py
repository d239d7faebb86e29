"""Degree of movement: head pose range and speed, and landmark motion energy, from face-mesh landmarks.

Too static (a frozen head, a still photo with a moving mouth) and too wild (shaking, turning away) are both
bad training data, so these scores are read with a lower and an upper threshold; the scorer sets neither.

Points used. Only the upper face moves rigidly with the head: the mouth, jaw and chin move with speech. The
rigid set is chosen once per clip from its median landmark shape: the points above the nose tip (landmark
1) along the face's own "down" direction, which is the inter-ocular axis (landmark 33 → 263) turned by
+90° in image coordinates. That keeps forehead, brows, eyes, temples and the nose bridge.

Head pose (a geometric estimate, no camera model): a scaled-orthographic fit of the clip's own 3-D face.
mediapipe's landmarks are 3-D (x, y in pixels, z in the same units, growing away from the camera), but its
z is a regression that tilts with the jaw: on a frozen synthetic head, opening the mouth moved the
forehead's z by 5 px and the chin's by 8 px, which a 3-D alignment reads as ~3.5° of pitch. So z is used
only once, for the clip's reference shape ``Q`` (K×3, the median of the centred, size-normalised rigid
points), and each frame is fitted from its observed x, y alone: ``P_f ≈ Q A_fᵀ`` (K×2, centred) by least
squares, ``A_f = s·[r₁; r₂]`` the first two rows of a rotation times a scale. The nearest such rows are
``U Vᵀ`` from ``A_f = U Σ Vᵀ``, and ``R_f = [r₁; r₂; r₁ × r₂]``. This halves the speech-induced pitch
(2.1° on the same clip). The crop is a scale and shift of the source frame, so rotations measured in crop
pixels are the source's. With image axes (x right, y down, z away) and ``R = R_z(roll) R_y(yaw) R_x(pitch)``:

    yaw = asin(−R₂₀),  pitch = atan2(R₂₁, R₂₂),  roll = atan2(R₁₀, R₀₀)

Angles are relative to the clip's median pose (a head held turned scores 0); roll > 0 is clockwise on screen.

Landmarks jitter by about a pixel from frame to frame, as much as a gently swaying head moves, so every
track is smoothed over time with a Gaussian before it is used: angles and point positions with
``smooth_sigma_s`` (0.04 s = one frame at 25 fps: passes 75 % of a 3 Hz head shake, removes
frame-to-frame jitter), and the angles that ``head_speed_deg_s`` differentiates with ``speed_sigma_s``
(0.12 s: a derivative amplifies jitter; on a frozen synthetic head 0.04 s left 8 °/s of it, 0.12 s leaves
1 °/s, while a 0.3 Hz sway of ±3° keeps its 4 °/s). Frames without a face are bridged by linear
interpolation for the smoothing and then left out.

* ``pose_range_deg`` = max over yaw, pitch, roll of (95th − 5th percentile) over the frames with a face.
* ``head_speed_deg_s`` = median over consecutive face frames f, f+1 of ``|θ_{f+1} − θ_f| · fps``, with
  ``θ = (yaw, pitch, roll)`` in degrees.
* ``head_motion`` = mean over consecutive face frames of the mean displacement of the rigid points in the
  source frame, ``mean_k |X_{f+1,k} − X_{f,k}|``, divided by the clip's median inter-ocular distance
  (landmarks 33, 263) in source pixels: inter-ocular distances per frame. The crop follows the face, so
  crop coordinates hide most head translation; each point is mapped back with its frame's crop box
  ``[x0, y0, x1, y1]`` (source pixels, side ``w``) as ``X = (x0, y0) + x · w / S`` (``S`` the clip's side,
  landmark x, y in mediapipe's pixel-edge convention), which adds the crop's movement back.

All scores are NaN when fewer than ``MIN_FACE_FRAMES`` frames have landmarks.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from filters.clip_data import ClipData

NOSE_TIP, EYE_OUTER_RIGHT, EYE_OUTER_LEFT = 1, 33, 263  # mediapipe face-mesh indices (subject's right/left)
MIN_FACE_FRAMES = 3
PERCENTILES = (5.0, 95.0)
SCORES = ("pose_range_deg", "head_speed_deg_s", "head_motion")


class MovementScorer:
    """Head pose range and speed, and landmark motion energy of a clip (see the module docstring)."""

    name = "movement"
    version = "1"

    def __init__(self, smooth_sigma_s: float = 0.04, speed_sigma_s: float = 0.12):
        self.smooth_sigma_s = smooth_sigma_s
        self.speed_sigma_s = speed_sigma_s

    def score(self, clip: ClipData) -> dict[str, float]:
        found = clip.face_found
        if found.sum() < MIN_FACE_FRAMES:
            return dict.fromkeys(SCORES, float("nan"))
        sigma = self.smooth_sigma_s * clip.fps
        rigid = rigid_points(np.nanmedian(clip.landmarks[found], axis=0))
        raw_angles = np.full((clip.n_frames, 3), np.nan)
        raw_angles[found] = head_angles(clip.landmarks[found][:, rigid])
        low, high = np.percentile(smoothed(raw_angles, found, sigma)[found], PERCENTILES, axis=0)
        pose_range = float(np.max(high - low))
        both = found[1:] & found[:-1]  # consecutive frame pairs with a face in each
        if not both.any():
            return {"pose_range_deg": pose_range, "head_speed_deg_s": float("nan"), "head_motion": float("nan")}
        slow_angles = smoothed(raw_angles, found, self.speed_sigma_s * clip.fps)
        speed = np.linalg.norm(np.diff(slow_angles, axis=0)[both], axis=1) * clip.fps
        return {
            "pose_range_deg": pose_range,
            "head_speed_deg_s": float(np.median(speed)),
            "head_motion": head_motion(clip, rigid, sigma, both),
        }


def rigid_points(shape: np.ndarray) -> np.ndarray:
    """Indices of the landmarks above the nose tip along the face's down axis, in one (468, 3) shape."""
    eye_axis = shape[EYE_OUTER_LEFT, :2] - shape[EYE_OUTER_RIGHT, :2]
    down = np.array([-eye_axis[1], eye_axis[0]]) / np.linalg.norm(eye_axis)
    return np.flatnonzero((shape[:, :2] - shape[NOSE_TIP, :2]) @ down < 0)


def head_angles(points: np.ndarray) -> np.ndarray:
    """(N, 3) yaw, pitch, roll in degrees of (N, K, 3) point sets relative to their median shape, by a
    scaled-orthographic fit of each frame's x, y to the median 3-D shape (module docstring)."""
    centred = points - points.mean(axis=1, keepdims=True)
    centred /= np.linalg.norm(centred[..., :2], axis=(1, 2), keepdims=True)
    reference = np.median(centred, axis=0)
    projection = np.swapaxes(np.einsum("dk,nke->nde", np.linalg.pinv(reference), centred[..., :2]), 1, 2)
    u, _, vt = np.linalg.svd(projection, full_matrices=False)
    rows = u @ vt
    rotation = np.concatenate([rows, np.cross(rows[:, 0], rows[:, 1])[:, None]], axis=1)
    yaw = np.arcsin(np.clip(-rotation[:, 2, 0], -1.0, 1.0))
    pitch = np.arctan2(rotation[:, 2, 1], rotation[:, 2, 2])
    roll = np.arctan2(rotation[:, 1, 0], rotation[:, 0, 0])
    return np.degrees(np.stack([yaw, pitch, roll], axis=1))


def head_motion(clip: ClipData, rigid: np.ndarray, sigma: float, both: np.ndarray) -> float:
    """Mean displacement per frame of the rigid points in the source frame, in inter-ocular distances,
    over the frame pairs marked in ``both``; tracks smoothed with a Gaussian of ``sigma`` frames."""
    source = landmarks_in_source(clip)
    interocular = np.nanmedian(np.linalg.norm(source[:, EYE_OUTER_LEFT] - source[:, EYE_OUTER_RIGHT], axis=1))
    track = smoothed(source[:, rigid], clip.face_found, sigma)
    step = np.linalg.norm(np.diff(track, axis=0)[both], axis=2).mean(axis=1)
    return float(step.mean() / interocular)


def smoothed(track: np.ndarray, found: np.ndarray, sigma: float) -> np.ndarray:
    """A (N, ...) per-frame track smoothed over time with a Gaussian of ``sigma`` frames; frames where
    ``found`` is False are first filled by linear interpolation between their neighbours."""
    frames = np.arange(len(track))
    flat = track.reshape(len(track), -1)
    filled = np.stack([np.interp(frames, frames[found], column[found]) for column in flat.T], axis=1)
    return gaussian_filter1d(filled, sigma, axis=0, mode="nearest").reshape(track.shape)


def landmarks_in_source(clip: ClipData) -> np.ndarray:
    """(N, 468, 2) landmark x, y in source pixels: ``X = (x0, y0) + x · w / S`` with each frame's crop box;
    a clip without crop boxes is taken as its own source."""
    side = clip.frames.shape[1]
    boxes = clip.record.get("crop_boxes")
    if boxes is None:
        boxes = [None] * clip.n_frames
    table = np.array([[0.0, 0.0, side, side] if box is None else box for box in boxes], dtype=float)
    scale = (table[:, 2] - table[:, 0]) / side
    return clip.landmarks[..., :2] * scale[:, None, None] + table[:, None, :2]
