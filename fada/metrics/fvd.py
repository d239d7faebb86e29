"""Fréchet Video Distance between real and generated videos, on R3D-18 features.

The Fréchet distance of Unterthiner et al., "Towards Accurate Generative Models of Video: A New Metric &
Challenges" (2018), between Gaussian fits of per-video features. The reference FVD uses I3D logits; this one
uses the pooled features of torchvision's Kinetics-400 R3D-18 (``fada.metrics.video_features``), so its numbers
are comparable only with FVDs computed by this module (same network, clip length and preprocessing).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from fada.metrics.fid import fid_from_features


def compute_fvd(real_videos: Sequence[np.ndarray], fake_videos: Sequence[np.ndarray],
                weights_path: str | os.PathLike, device: str = "cpu") -> float:
    """FVD between two lists of videos, each (T, H, W, 3) uint8 RGB, cut into 16-frame clips (see
    ``fada.metrics.video_features.video_features``); at least 2 videos per side.

    ``weights_path`` is torchvision's ``r3d_18-b3b3357e.pth``; ``MissingWeightsError`` when it is absent.
    """
    from fada.metrics.video_features import load_r3d18, video_features

    for name, videos in (("real", real_videos), ("fake", fake_videos)):
        if len(videos) < 2:
            raise ValueError(f"FVD needs at least 2 {name} videos, got {len(videos)}")
    net = load_r3d18(weights_path, device=device)
    return fid_from_features(video_features(net, real_videos), video_features(net, fake_videos))
