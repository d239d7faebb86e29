"""Fréchet Inception Distance (Heusel et al., NeurIPS 2017) between real and generated frames.

Per-frame pool3 features of the FID Inception-v3 (``fada.metrics.inception``, pytorch-fid's ported TensorFlow
weights and preprocessing) and the Fréchet distance between their Gaussian fits (``fada.metrics.frechet``), as
pytorch-fid computes it. FID is biased by the sample count and noisy for few samples: compare FIDs computed
from the same number of frames.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from fada.metrics.frechet import frechet_distance, gaussian_stats


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """Fréchet distance between the Gaussian fits of two feature sets (N, D), each with N ≥ 2.

    With fewer samples than dimensions, both sets are first expressed in an orthonormal basis of the span of
    their centred samples and of the difference of their means (``joint_span``). The distance is unchanged
    (both covariances and the mean difference live in that span) while ``sqrtm`` runs on a k×k instead of a
    D×D matrix, k ≤ N_real + N_fake + 1 (a 2048×2048 ``sqrtm`` takes about a minute on two CPU cores), and
    without the numerical noise of the square root of a singular D×D matrix.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    for name, features in (("real", real), ("fake", fake)):
        if len(features) < 2:
            raise ValueError(f"a Fréchet distance needs at least 2 {name} samples, got {len(features)}")
    real, fake = joint_span(real, fake)
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


def joint_span(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``real`` and ``fake`` (N, D) in coordinates of an orthonormal basis of the span of their centred rows
    and of their mean difference, when that basis has fewer than D vectors; otherwise unchanged."""
    mean_real, mean_fake = real.mean(axis=0), fake.mean(axis=0)
    spanning = np.concatenate([real - mean_real, fake - mean_fake, (mean_real - mean_fake)[None]])
    if len(spanning) >= real.shape[1]:
        return real, fake
    basis, _ = np.linalg.qr(spanning.T)  # (D, k), orthonormal columns
    return real @ basis, fake @ basis


def as_frames(frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """(N, H, W, 3) frames from an array of frames or from a list of videos (T, H, W, 3), concatenated."""
    if isinstance(frames, np.ndarray):
        return frames
    videos = [np.asarray(video) for video in frames]
    return np.concatenate(videos) if videos else np.zeros((0, 0, 0, 3), np.uint8)


def compute_fid(real_frames, fake_frames, weights_path: str | os.PathLike, device: str = "cpu") -> float:
    """FID between ``real_frames`` and ``fake_frames``: each (N, H, W, 3) uint8 RGB, or a list of videos
    (T, H, W, 3) whose frames are pooled. Needs at least 2 frames per side.

    ``weights_path`` is pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``; ``MissingWeightsError`` when
    it is absent.
    """
    from fada.metrics.inception import inception_features, load_fid_inception

    real_frames, fake_frames = as_frames(real_frames), as_frames(fake_frames)
    for name, frames in (("real", real_frames), ("fake", fake_frames)):
        if len(frames) < 2:
            raise ValueError(f"FID needs at least 2 {name} frames, got {len(frames)}")
    net = load_fid_inception(weights_path, device=device)
    return fid_from_features(inception_features(net, real_frames), inception_features(net, fake_frames))
