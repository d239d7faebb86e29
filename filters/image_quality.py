"""Image quality of a clip's face: sharpness, size, clipped exposure, noise, blockiness, and a combined ``iqa``.

Everything is measured on the luma (BT.601, 0..255) of the *face region* of every ``frame_step``-th frame: a
square box around the face-mesh landmarks (side = the larger side of their bounding box) and, inside it, the
face itself, the convex hull of the landmarks. Where the mesh found no face, the box is the square where the
crop puts the face (``filters.crop.CropConfig``: side ``size / face_scale``, centre raised by
``vertical_shift × size``) and the face the disc inscribed in it. Per-frame values are pooled over the
sampled frames with the median (exposure: the mean).

Terms (column names are DESIGN.md §2 plus ``noise``, ``blockiness`` and ``reblur_ratio``):

* ``sharpness`` = Var(∇²R) over the face, where R is the box resampled to ``FACE_SIZE``² (area averaging
  when shrinking, bilinear when growing), so faces of any size are compared at one scale, and ∇² the 3×3
  Laplacian [[0,1,0],[1,-4,1],[0,1,0]]. Pixel noise adds to it (≈ 20·σ² for white noise of std σ in R),
  which is why ``noise`` is a separate term.
* ``reblur_ratio`` = Var(∇²(G_σ ⊛ R)) / Var(∇²R) over the face, σ = ``REBLUR_SIGMA``: how much of the
  face's fine detail survives a further Gaussian blur (the idea of Crété et al. 2007, "The blur effect"). A sharp face loses most of it (small ratio), an already blurred one little (the ratio rises toward
  1), whatever the face's contrast and texture — unlike ``sharpness``, which a very detailed face keeps
  high when blurred. Pixel noise lowers it, like ``sharpness``.
* ``face_px``: the median face box side in source pixels, from the clip's record (ingestion measured it).
* ``exposure_clip`` = share of face pixels with luma ≤ ``CLIP_DARK`` or ≥ ``CLIP_BRIGHT``.
* ``noise`` = σ̂, Immerkær's fast noise estimate (1996) restricted to flat skin: the residual r = I ⊛ K with
  K = [[1,-2,1],[-2,4,-2],[1,-2,1]] cancels flat and linear intensity and has std ‖K‖₂·σ = 6σ for white
  noise of std σ, so σ̂ = √(π/2) · mean|r| / 6 over the flattest ``FLAT_SHARE`` of the face's pixels (lowest
  gradient magnitude of the Gaussian-smoothed image), measured on R (luma units at the face scale). At that
  scale the clip's grain shows even when the source was enlarged into the crop and its codec removed the
  finest noise, which a 3×3 residual at the crop's own resolution misses. White noise of std σ added to the
  crop reads about σ / 2.9 (area averaging over the ~2.3× shrink of a typical face box).
* ``blockiness`` = max over block grids g of  Σ_d mean|Δ_d| at g's block edges / Σ_d mean|Δ_d| at positions
  ≥ ``INTERIOR_GAP_PX`` from an edge − 1 (floored at 0), where Δ_d are the horizontal and vertical neighbour
  differences over the box, averaged across it into one profile per direction. Two 8×8 grids are checked:
  the clip's own (its codec's, aligned with crop pixel 0) and the source's, mapped into the crop through the
  frame's crop box (8 source pixels = 8 · crop_size / crop side crop pixels; skipped when that is under
  ``MIN_BLOCK_PERIOD_PX``), so blocking in a source that was resized into the crop is still found. Natural
  texture gives ≈ 0; DCT coding at low quality flattens block interiors and leaves steps at block edges
  (JPEG quality 50 ≈ 0.5, quality 10 ≈ 2).

Combined score, in [0, 1], a weighted geometric mean of saturating per-term qualities q ∈ (0, 1]::

    good(x, h) = 1 − 2^(−x / h)          (0 at x = 0, ½ at x = h, → 1)   — for terms where more is better
    bad(x, h)  = 2^(−x / h)              (1 at x = 0, ½ at x = h, → 0)   — for terms where less is better

    iqa = good(sharpness, SHARPNESS_HALF)^W_SHARPNESS · good(face_px, FACE_PX_HALF)^W_FACE_PX
        · bad(exposure_clip, EXPOSURE_HALF)^W_EXPOSURE · bad(noise, NOISE_HALF)^W_NOISE
        · bad(blockiness, BLOCKINESS_HALF)^W_BLOCKINESS,        with the weights summing to 1.

It is monotone in every term (rising in sharpness and face size, falling in the others) and 0 only when the
face has no detail or no size. On the synthetic speaker (tests/test_image_quality.py) a clean clip scores
about 0.95; Gaussian blur of σ = 1, 2, 4 crop pixels gives about 0.94, 0.85, 0.60; RGB noise of σ = 8, 16, 32
about 0.90, 0.83, 0.72; JPEG quality 10 about 0.61; doubled exposure about 0.22. Rendered with the
generator's own degradations (noise before the source's and the clip's H.264): noise_std 20 about 0.85,
blur_sigma 3 about 0.65.

``LearnedIQAScorer`` is the plug-in point for a learned model (``iqa_learned``), loaded from local weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from filters.clip_data import ClipData
from filters.config_fields import from_dict
from filters.crop import CropConfig

FRAME_STEP = 5  # score every 5th frame (5 per second at 25 fps)
FACE_SIZE = 128  # side of the resampled face box for sharpness
CLIP_DARK, CLIP_BRIGHT = 5, 250  # luma at or beyond these counts as clipped
FLAT_SHARE = 0.5  # noise is estimated on this share of the face pixels, the flattest
FLAT_SMOOTHING_SIGMA = 1.0  # Gaussian σ (px at the face scale) before the gradient that ranks flatness
IMMERKAER_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
IMMERKAER_GAIN = 6.0  # ‖K‖₂: the residual of white noise of std σ has std 6σ
MEAN_ABS_TO_STD = float(np.sqrt(np.pi / 2))  # std of a zero-mean Gaussian = √(π/2) × its mean absolute value
BLOCK_PX = 8  # DCT block side of JPEG, MPEG-2/4 and H.264's 8×8 transform
MIN_BLOCK_PERIOD_PX = 6.0  # a source grid finer than this in the crop is blurred away by the resize
INTERIOR_GAP_PX = 2  # differences this close to a block edge count as neither edge nor interior
MIN_REGION_PX = 2 * BLOCK_PX  # a face box is never smaller than two blocks

# Combined score: half-points h of good()/bad() and weights (sum 1).
REBLUR_SIGMA = 1.0  # px at FACE_SIZE
SHARPNESS_HALF = 40.0  # Var(∇²) at FACE_SIZE; the clean synthetic face gives ~230, blur σ = 2 / 4 px ~70 / 17
FACE_PX_HALF = 64.0  # source pixels; a 256 px face gives 0.94
EXPOSURE_HALF = 0.05  # 5 % clipped face pixels halves the exposure quality
NOISE_HALF = 3.0  # σ̂ in luma units at the face scale; the clean synthetic face gives ~0.6
BLOCKINESS_HALF = 0.5
W_SHARPNESS, W_FACE_PX, W_EXPOSURE, W_NOISE, W_BLOCKINESS = 0.35, 0.15, 0.15, 0.2, 0.15


def good(x: float, half: float) -> float:
    """Saturating quality of a more-is-better term: 1 − 2^(−x/half)."""
    return 1.0 - 2.0 ** (-max(x, 0.0) / half)


def bad(x: float, half: float) -> float:
    """Saturating quality of a less-is-better term: 2^(−x/half)."""
    return 2.0 ** (-max(x, 0.0) / half)


def combined_iqa(sharpness: float, face_px: float, exposure_clip: float, noise: float, blockiness: float) -> float:
    """The module docstring's weighted geometric mean of the per-term qualities, in [0, 1]."""
    terms = (
        (good(sharpness, SHARPNESS_HALF), W_SHARPNESS),
        (good(face_px, FACE_PX_HALF), W_FACE_PX),
        (bad(exposure_clip, EXPOSURE_HALF), W_EXPOSURE),
        (bad(noise, NOISE_HALF), W_NOISE),
        (bad(blockiness, BLOCKINESS_HALF), W_BLOCKINESS),
    )
    return float(np.prod([quality**weight for quality, weight in terms]))


@dataclass(frozen=True)
class FaceRegion:
    """A frame's face: the square ``box`` ``(x0, y0, x1, y1)`` inside the frame and, over that square, the
    ``mask`` of the face itself (the convex hull of the landmarks, or the disc inscribed in the square)."""

    box: tuple[int, int, int, int]
    mask: np.ndarray  # (side, side) bool


def face_regions(clip: ClipData, frame_indices: np.ndarray) -> list[FaceRegion]:
    """The face region (module docstring) of each listed frame."""
    height, width = clip.frames.shape[1:3]
    crop = CropConfig()
    regions = []
    for index in frame_indices:
        points = clip.landmarks[index, :, :2]
        found = not np.isnan(points[0, 0])
        if found:
            (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
            side = max(x1 - x0, y1 - y0)
            centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        else:
            side = width / crop.face_scale
            centre = (width / 2, height / 2 - crop.vertical_shift * height)
        side = int(round(min(max(side, MIN_REGION_PX), width, height)))
        left = int(np.clip(round(centre[0] - side / 2), 0, width - side))
        top = int(np.clip(round(centre[1] - side / 2), 0, height - side))
        mask = np.zeros((side, side), np.uint8)
        if found:
            hull = cv2.convexHull(np.round(points - (left, top)).astype(np.int32))
            cv2.fillConvexPoly(mask, hull, 1)
        else:
            cv2.circle(mask, (side // 2, side // 2), side // 2, 1, thickness=-1)
        regions.append(FaceRegion((left, top, left + side, top + side), mask.astype(bool)))
    return regions


def face_scale(luma: np.ndarray, mask: np.ndarray, size: int = FACE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``luma`` (float32) and ``mask`` resampled to ``size``², the scale at which faces are compared."""
    interpolation = cv2.INTER_AREA if luma.shape[0] > size else cv2.INTER_LINEAR
    resampled = cv2.resize(luma, (size, size), interpolation=interpolation).astype(np.float32)
    inside = cv2.resize(mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)
    return resampled, inside


def laplacian_variance(luma: np.ndarray, mask: np.ndarray) -> float:
    """Var(∇²) of ``luma`` over ``mask``."""
    return float(cv2.Laplacian(luma.astype(np.float32), cv2.CV_32F, ksize=1)[mask].var())


def reblur_ratio(luma: np.ndarray, mask: np.ndarray, sigma: float = REBLUR_SIGMA) -> float:
    """Var(∇²) of ``luma`` blurred by ``sigma`` over Var(∇²) of ``luma``, on ``mask`` (module docstring)."""
    image = luma.astype(np.float32)
    detail = laplacian_variance(image, mask)
    if detail <= 0.0:
        return 1.0  # a flat face: nothing a blur could remove
    return laplacian_variance(cv2.GaussianBlur(image, (0, 0), sigma), mask) / detail


def noise_sigma(luma: np.ndarray, mask: np.ndarray) -> float:
    """Immerkær's noise std (module docstring) over the flattest part of ``mask``, in ``luma``'s units."""
    image = luma.astype(np.float32)
    residual = np.abs(cv2.filter2D(image, -1, IMMERKAER_KERNEL))[1:-1, 1:-1]
    smooth = cv2.GaussianBlur(image, (0, 0), FLAT_SMOOTHING_SIGMA)
    gradient = np.hypot(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))[1:-1, 1:-1]
    inside = mask[1:-1, 1:-1]
    flat = inside & (gradient <= np.quantile(gradient[inside], FLAT_SHARE))
    return float(MEAN_ABS_TO_STD * residual[flat].mean() / IMMERKAER_GAIN)


@dataclass(frozen=True)
class BlockGrid:
    """Block edges along one axis: boundaries at ``origin + k · period`` in pixel-edge coordinates."""

    period: float
    origin: float = 0.0

    def edge_columns(self, start: int, length: int) -> np.ndarray:
        """Indices j of the differences x[j+1] − x[j], over pixels ``start … start+length-1``, that cross an edge."""
        first = np.ceil((start + 1 - self.origin) / self.period)
        boundaries = self.origin + self.period * np.arange(first, first + length / self.period + 1)
        columns = np.round(boundaries).astype(int) - 1 - start
        return np.unique(columns[(columns >= 0) & (columns < length - 1)])


def blockiness(luma: np.ndarray, left: int, top: int, grids: list[tuple[BlockGrid, BlockGrid]]) -> float:
    """Block-edge vs. interior difference ratio − 1 (module docstring), the worst over ``(x, y)`` grid pairs.

    ``luma`` is the face region, whose top-left pixel is ``(left, top)`` in the frame the grids refer to.
    """
    image = luma.astype(np.float32)
    across_columns = np.abs(np.diff(image, axis=1)).mean(axis=0)
    across_rows = np.abs(np.diff(image, axis=0)).mean(axis=1)
    worst = 0.0
    for grid_x, grid_y in grids:
        edge_sum = interior_sum = 0.0
        for profile, grid, start in ((across_columns, grid_x, left), (across_rows, grid_y, top)):
            edges = grid.edge_columns(start, len(profile) + 1)
            if len(edges) == 0:
                continue
            distance = np.min(np.abs(np.arange(len(profile))[:, None] - edges[None, :]), axis=1)
            interior = distance >= INTERIOR_GAP_PX
            if not interior.any():
                continue
            edge_sum += profile[edges].mean()
            interior_sum += profile[interior].mean()
        if interior_sum > 0:
            worst = max(worst, edge_sum / interior_sum - 1.0)
    return worst


def block_grids(clip: ClipData, index: int) -> list[tuple[BlockGrid, BlockGrid]]:
    """The clip's own 8×8 grid and, when the record has crop boxes, the source's mapped into the crop."""
    grids = [(BlockGrid(BLOCK_PX), BlockGrid(BLOCK_PX))]
    crop_boxes = clip.record.get("crop_boxes")
    if crop_boxes is not None and index < len(crop_boxes):
        x0, y0, x1, y1 = (float(v) for v in crop_boxes[index])
        height, width = clip.frames.shape[1:3]
        scale_x, scale_y = width / (x1 - x0), height / (y1 - y0)
        if min(scale_x, scale_y) * BLOCK_PX >= MIN_BLOCK_PERIOD_PX:
            # source boundary X = 8k sits at crop edge coordinate (X − x0) · scale
            grids.append((BlockGrid(BLOCK_PX * scale_x, -x0 * scale_x), BlockGrid(BLOCK_PX * scale_y, -y0 * scale_y)))
    return grids


class ImageQualityScorer:
    """Hand-crafted face image quality; columns ``iqa, sharpness, reblur_ratio, face_px, exposure_clip, noise,
    blockiness``. Version 2 added ``reblur_ratio``.

    ``face_px`` (and so ``iqa``) is NaN when the clip's record lacks ``face_px``.
    """

    name = "iqa"
    version = "2"

    def __init__(self, frame_step: int = FRAME_STEP):
        if frame_step < 1:
            raise ValueError("frame_step must be at least 1")
        self.frame_step = frame_step

    def score(self, clip: ClipData) -> dict[str, float]:
        indices = np.arange(0, clip.n_frames, self.frame_step)
        sharpness, reblurred, clipped, noise, blocks = [], [], [], [], []
        for index, region in zip(indices, face_regions(clip, indices)):
            x0, y0, x1, y1 = region.box
            luma = cv2.cvtColor(clip.frames[index, y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
            clipped.append(np.mean((luma[region.mask] <= CLIP_DARK) | (luma[region.mask] >= CLIP_BRIGHT)))
            face, face_mask = face_scale(luma, region.mask)
            sharpness.append(laplacian_variance(face, face_mask))
            reblurred.append(reblur_ratio(face, face_mask))
            noise.append(noise_sigma(face, face_mask))
            blocks.append(blockiness(luma, x0, y0, block_grids(clip, index)))
        scores = {
            "sharpness": float(np.median(sharpness)),
            "face_px": float(clip.record.get("face_px", np.nan)),
            "exposure_clip": float(np.mean(clipped)),
            "noise": float(np.median(noise)),
            "blockiness": float(np.median(blocks)),
        }
        return {"iqa": combined_iqa(**scores), "reblur_ratio": float(np.median(reblurred)), **scores}


# --- Learned IQA plug-in ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LearnedIQAConfig:
    """Architecture and input convention of a learned IQA net; saved as JSON beside its weights.

    Input: (B, 3, input_size, input_size) float RGB in [0, 1] (the square face region resized), normalised
    per channel with ``mean``/``std``. Output: (B, 1) quality in [0, 1]. The net is ``torch.nn.Sequential``:
    for each width c in ``channels`` a 3×3 convolution with stride 2 and a ReLU, then global average
    pooling, a linear layer to one value, and a sigmoid.
    """

    input_size: int = 224
    channels: tuple[int, ...] = (16, 32, 64, 128)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @classmethod
    def from_json(cls, path: str | Path) -> LearnedIQAConfig:
        return from_dict(cls, json.loads(Path(path).read_text()), section=f"learned IQA config {path}")


def build_learned_iqa_net(config: LearnedIQAConfig):
    """A randomly initialised ``torch.nn.Sequential`` with ``config``'s architecture."""
    from torch import nn

    layers, previous = [], 3
    for width in config.channels:
        layers += [nn.Conv2d(previous, width, 3, stride=2, padding=1), nn.ReLU()]
        previous = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(previous, 1), nn.Sigmoid()]
    return nn.Sequential(*layers)


def learned_iqa_config_path(weights_path: str | Path) -> Path:
    """Where the config of ``weights_path`` lives: same folder and stem, ``.json``."""
    return Path(weights_path).with_suffix(".json")


def save_learned_iqa(net, config: LearnedIQAConfig, weights_path: str | Path) -> None:
    """Write ``net``'s weights (safetensors for a ``.safetensors`` path, else ``torch.save``) and its config."""
    import torch

    weights_path = Path(weights_path)
    state = {key: value.detach().contiguous() for key, value in net.state_dict().items()}
    if weights_path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(weights_path))
    else:
        torch.save(state, weights_path)
    learned_iqa_config_path(weights_path).write_text(json.dumps(asdict(config), indent=2))


def load_learned_iqa(weights_path: str | Path):
    """(net in eval mode, config) from local weights and the config JSON beside them."""
    import torch

    weights_path, config_path = Path(weights_path), learned_iqa_config_path(weights_path)
    for path in (weights_path, config_path):
        if not path.is_file():
            raise FileNotFoundError(f"learned IQA model file not found: {path} (weights and <stem>.json config go side by side)")
    config = LearnedIQAConfig.from_json(config_path)
    if weights_path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights_path))
    else:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    net = build_learned_iqa_net(config)
    net.load_state_dict(state)
    return net.eval(), config


class LearnedIQAScorer:
    """A learned IQA model on the face region of every ``frame_step``-th frame; column ``iqa_learned`` (mean).

    ``version`` carries the first 12 hex digits of the weights' sha256, so lineage tells models apart.
    """

    name = "iqa_learned"

    def __init__(self, weights_path: str | Path, frame_step: int = FRAME_STEP):
        self.net, self.config = load_learned_iqa(weights_path)
        self.frame_step = frame_step
        digest = hashlib.sha256(Path(weights_path).read_bytes()).hexdigest()
        self.version = f"1+{digest[:12]}"

    def batch(self, clip: ClipData):
        """The net's input for ``clip``: (B, 3, S, S) normalised face regions of the sampled frames."""
        import torch

        size = self.config.input_size
        indices = np.arange(0, clip.n_frames, self.frame_step)
        crops = []
        for index, region in zip(indices, face_regions(clip, indices)):
            x0, y0, x1, y1 = region.box
            crops.append(cv2.resize(clip.frames[index, y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA))
        pixels = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(self.config.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.config.std).view(1, 3, 1, 1)
        return (pixels - mean) / std

    def score(self, clip: ClipData) -> dict[str, float]:
        import torch

        with torch.inference_mode():
            return {"iqa_learned": float(self.net(self.batch(clip)).mean())}
