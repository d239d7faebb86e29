"""Expression distance between generated and real talking-head videos (an E-FID-like score).

E-FID, as EMO (Tian et al. 2024) and Loopy report it, is the Fréchet distance (Heusel et al. 2017, as in
FID) between the expression parameters of generated and real frames, taken from a 3D face reconstruction.
No reconstruction model ships here, so the expression of a frame is read from its face-mesh landmarks
(``filters.clip_data.LandmarkModel``: mediapipe's 468 points; x, y in pixels, z on x's scale) as eight
geometric features. Each is a 3D distance (or a projection on a face axis) divided by the 3D distance
between the outer eye corners (33–263), so it ignores face size and, to first order, head rotation:

==================  ============================================================================
``mouth_open``      inner-lip gap, upper 13 to lower 14
``mouth_width``     mouth corners, 61 to 291
``jaw_drop``        nose tip 1 to chin 152
``lip_corner_lift`` mean height of the corners 61 and 291 above the inner-lip centre (13 + 14) / 2,
                    along the face's up axis (chin 152 → forehead 10); positive in a smile
``right_eye_open``  eyelids 159 to 145
``left_eye_open``   eyelids 386 to 374
``right_brow``      brow 105 to the centre of the eye corners 33 and 133
``left_brow``       brow 334 to the centre of the eye corners 263 and 362
==================  ============================================================================

(Right and left are the subject's.) The distance is the Fréchet distance between Gaussians fitted to all
frames of each set (``fada.metrics.frechet``). Frames where the face mesh finds no face are skipped and
counted. The features are ratios near 0.1–1, so distances are small numbers: compare them between runs,
not with published E-FID values.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fada.metrics.frechet import frechet_distance, gaussian_stats
from filters.clip_data import LandmarkModel

EXPRESSION_FEATURES = ("mouth_open", "mouth_width", "jaw_drop", "lip_corner_lift", "right_eye_open",
                       "left_eye_open", "right_brow", "left_brow")

# mediapipe face-mesh indices (refine_landmarks=False topology)
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
MOUTH_RIGHT, MOUTH_LEFT = 61, 291
NOSE_TIP, CHIN, FOREHEAD = 1, 152, 10
RIGHT_EYE_OUTER, RIGHT_EYE_INNER, RIGHT_UPPER_LID, RIGHT_LOWER_LID = 33, 133, 159, 145
LEFT_EYE_OUTER, LEFT_EYE_INNER, LEFT_UPPER_LID, LEFT_LOWER_LID = 263, 362, 386, 374
RIGHT_BROW, LEFT_BROW = 105, 334


def expression_features(landmarks: np.ndarray) -> np.ndarray:
    """(N, 8) features (``EXPRESSION_FEATURES``) of (N, 468, 3) landmarks; NaN rows where there is no face."""
    p = landmarks.astype(np.float64)

    def dist(a, b) -> np.ndarray:
        return np.linalg.norm(a - b, axis=-1)

    scale = dist(p[:, RIGHT_EYE_OUTER], p[:, LEFT_EYE_OUTER])
    up = p[:, FOREHEAD] - p[:, CHIN]
    up /= np.linalg.norm(up, axis=-1, keepdims=True)
    lip_centre = (p[:, UPPER_INNER_LIP] + p[:, LOWER_INNER_LIP]) / 2
    corners = (p[:, MOUTH_RIGHT] + p[:, MOUTH_LEFT]) / 2
    features = np.stack([
        dist(p[:, UPPER_INNER_LIP], p[:, LOWER_INNER_LIP]),
        dist(p[:, MOUTH_RIGHT], p[:, MOUTH_LEFT]),
        dist(p[:, NOSE_TIP], p[:, CHIN]),
        np.sum((corners - lip_centre) * up, axis=-1),
        dist(p[:, RIGHT_UPPER_LID], p[:, RIGHT_LOWER_LID]),
        dist(p[:, LEFT_UPPER_LID], p[:, LEFT_LOWER_LID]),
        dist(p[:, RIGHT_BROW], (p[:, RIGHT_EYE_OUTER] + p[:, RIGHT_EYE_INNER]) / 2),
        dist(p[:, LEFT_BROW], (p[:, LEFT_EYE_OUTER] + p[:, LEFT_EYE_INNER]) / 2),
    ], axis=1)
    return features / scale[:, None]


def video_set_features(videos: Iterable[np.ndarray], landmark_model: LandmarkModel | None = None) -> tuple[np.ndarray, int]:
    """(features of every frame with a face, stacked (M, 8); number of frames skipped for having none).

    ``videos``: (T, H, W, 3) uint8 RGB arrays; landmarks are tracked within each video.
    """
    model = LandmarkModel() if landmark_model is None else landmark_model
    found, skipped = [], 0
    for frames in videos:
        features = expression_features(model.landmarks(np.asarray(frames)))
        has_face = ~np.isnan(features).any(axis=1)
        found.append(features[has_face])
        skipped += int((~has_face).sum())
    return (np.concatenate(found) if found else np.empty((0, len(EXPRESSION_FEATURES)))), skipped


def expression_distance(generated: Iterable[np.ndarray], real: Iterable[np.ndarray],
                        landmark_model: LandmarkModel | None = None) -> dict:
    """Fréchet distance between the expression features of two sets of videos, with frame counts.

    Returns ``expression_fd``, ``generated_frames`` / ``real_frames`` (frames used) and
    ``generated_skipped`` / ``real_skipped`` (frames without a face). Each set needs more frames with a
    face than there are features, else ValueError.
    """
    model = LandmarkModel() if landmark_model is None else landmark_model
    result, stats = {}, []
    for name, videos in (("generated", generated), ("real", real)):
        features, skipped = video_set_features(videos, model)
        if len(features) <= len(EXPRESSION_FEATURES):
            raise ValueError(f"the {name} set has {len(features)} frames with a face ({skipped} without); "
                             f"need more than {len(EXPRESSION_FEATURES)}")
        result[f"{name}_frames"], result[f"{name}_skipped"] = len(features), skipped
        stats.append(gaussian_stats(features))
    return {"expression_fd": float(frechet_distance(*stats[0], *stats[1])), **result}
