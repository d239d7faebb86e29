"""Square crop around a face box, kept inside the frame, resized to the output size."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from filters.media_contract import CLIP_SIZE
from filters.resize import shrink


@dataclass(frozen=True)
class CropConfig:
    size: int = CLIP_SIZE  # output side in pixels
    face_scale: float = 1.8  # crop side / face box side: the face fills 1/1.8 ≈ 0.56 of the frame
    vertical_shift: float = 0.08  # move the crop centre down by this share of its side (keeps the chin and neck)


def crop_box_for_face(face_box: np.ndarray, frame_width: int, frame_height: int, config: CropConfig) -> np.ndarray:
    """Integer square ``[x0, y0, x1, y1]`` around ``face_box`` inside the frame.

    The side is ``face_scale`` times the face box's larger side, capped at the frame's shorter side; a
    crop that would leave the frame is shifted back inside rather than padded, so no clip has borders.
    """
    x0, y0, x1, y1 = (float(v) for v in face_box)
    side = min(max(x1 - x0, y1 - y0) * config.face_scale, frame_width, frame_height)
    centre_x = (x0 + x1) / 2
    centre_y = (y0 + y1) / 2 + config.vertical_shift * side
    left = float(np.clip(centre_x - side / 2, 0, frame_width - side))
    top = float(np.clip(centre_y - side / 2, 0, frame_height - side))
    side_px = int(round(side))
    left_px = min(int(round(left)), frame_width - side_px)
    top_px = min(int(round(top)), frame_height - side_px)
    return np.array([left_px, top_px, left_px + side_px, top_px + side_px], dtype=np.int32)


def crop_and_resize(frame_rgb: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    x0, y0, x1, y1 = (int(v) for v in box)
    region = frame_rgb[y0:y1, x0:x1]
    if region.shape[0] > size:
        return shrink(region, size, size)
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_LINEAR)
