"""Fast anti-aliased downscaling.

OpenCV's ``INTER_AREA`` (a box filter, the quality choice for shrinking) has a fast path only for exact
2× reductions; at other ratios it is slow (about 6 ms for a 1000² → 512² face crop on the dev VM).
``shrink`` therefore halves with ``INTER_AREA`` while the image is at least twice the target (the last odd
row or column is dropped), then finishes the remaining < 2× step bilinearly, where every source pixel
still contributes. ``benchmarks/resize.py``: 2–9× faster than one ``INTER_AREA`` resize, and within
45–50 dB PSNR of it (plain bilinear falls to 36 dB on large reductions, where it aliases).
"""

from __future__ import annotations

import cv2
import numpy as np


def shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` (H, W[, C]) resized to (height, width), which must not be larger than it on either side."""
    rows, cols = image.shape[:2]
    if width > cols or height > rows:
        raise ValueError(f"shrink: target {width}x{height} is larger than the image {cols}x{rows}")
    while cols >= 2 * width and rows >= 2 * height:
        image = cv2.resize(image[: rows - rows % 2, : cols - cols % 2], (cols // 2, rows // 2), interpolation=cv2.INTER_AREA)
        rows, cols = image.shape[:2]
    if (cols, rows) == (width, height):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
