"""Video features for FVD: a Kinetics-400 R3D-18, 512-d pooled features per video.

The network is the 18-layer 3D ResNet (R3D-18) of Tran et al., "A Closer Look at Spatiotemporal Convolutions
for Action Recognition" (CVPR 2018), written in plain torch with the module and parameter names of torchvision's
``r3d_18`` (``torchvision/models/video/resnet.py``), so torchvision's Kinetics-400 weights
``r3d_18-b3b3357e.pth`` load unchanged (strict keys) from a local path.

FVD as defined by Unterthiner et al., "Towards Accurate Generative Models of Video: A New Metric & Challenges"
(2018), uses the logits of an I3D network trained on Kinetics-400. This is the 3D-ResNet variant: the same
Fréchet distance on the pooled features of another Kinetics-400 video network. Its numbers are comparable only
with numbers computed with the same feature network, clip length and preprocessing — not with published
I3D-based FVD.

Preprocessing follows torchvision's Kinetics video classification transform: frames resized (bilinear, no
antialiasing) to 128×171, centre-cropped to 112×112, scaled to [0, 1] and normalised with the Kinetics mean
and std. Each video is cut into consecutive ``clip_len``-frame clips; a video's feature is the mean over its
clips.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fada.metrics import load_local_weights

WEIGHTS_FILE = "r3d_18-b3b3357e.pth"
WEIGHTS_URL = f"https://download.pytorch.org/models/{WEIGHTS_FILE}"
RESIZE = (128, 171)
CROP = 112
MEAN = (0.43216, 0.394666, 0.37645)
STD = (0.22803, 0.22145, 0.216989)
CLIP_LEN = 16
FEATURE_DIM = 512
NUM_CLASSES = 400  # Kinetics-400


def _conv3x3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Residual block of two 3×3×3 convolutions (torchvision ``BasicBlock`` with ``Conv3DSimple``)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Sequential(_conv3x3x3(in_planes, planes, stride), nn.BatchNorm3d(planes), nn.ReLU())
        self.conv2 = nn.Sequential(_conv3x3x3(planes, planes), nn.BatchNorm3d(planes))
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_planes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm3d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(self.conv2(self.conv1(x)) + residual)


class R3D18(nn.Module):
    """R3D-18; ``forward`` maps preprocessed clips (B, 3, T, H, W) to pooled features (B, 512). ``fc`` is the
    Kinetics-400 classifier, kept so torchvision's state dict loads with strict keys; features are taken
    before it."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, 64, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(),
        )
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, stride=2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, stride=2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, stride=2), BasicBlock(512, 512))
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return x.mean(dim=(2, 3, 4))


def load_r3d18(weights_path: str | os.PathLike, device: str = "cpu") -> R3D18:
    """R3D-18 in eval mode with torchvision's ``r3d_18-b3b3357e.pth`` (or a ``.safetensors`` conversion of it)
    from ``weights_path``.

    Raises ``MissingWeightsError`` when the file is absent, ``WeightsMismatchError`` on other keys.
    """
    return load_local_weights(R3D18(), weights_path, file_name=WEIGHTS_FILE, url=WEIGHTS_URL, device=device)


def preprocess(frames_uint8: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """(T, H, W, 3) uint8 RGB → (3, T, 112, 112) normalised float, as torchvision's Kinetics eval transform.

    Like that transform, the resize works on the uint8 frames (result rounded back to 0–255) before scaling.
    """
    x = torch.from_numpy(np.ascontiguousarray(frames_uint8)).to(device).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=RESIZE, mode="bilinear", align_corners=False, antialias=False).round().clamp(0, 255)
    top, left = int(round((RESIZE[0] - CROP) / 2)), int(round((RESIZE[1] - CROP) / 2))
    x = x[:, :, top:top + CROP, left:left + CROP] / 255.0
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    return ((x - mean) / std).permute(1, 0, 2, 3)


def split_clips(video: np.ndarray, clip_len: int = CLIP_LEN) -> list[np.ndarray]:
    """Consecutive ``clip_len``-frame clips of ``video`` (T, H, W, 3); a tail shorter than ``clip_len`` is
    dropped, and a video shorter than ``clip_len`` is padded by repeating its last frame."""
    if len(video) < clip_len:
        video = np.concatenate([video, np.repeat(video[-1:], clip_len - len(video), axis=0)])
    return [video[start:start + clip_len] for start in range(0, len(video) - clip_len + 1, clip_len)]


@torch.no_grad()
def video_features(net: R3D18, clips: Sequence[np.ndarray], clip_len: int = CLIP_LEN, batch_size: int = 8) -> np.ndarray:
    """Features (N, 512) float64 of N videos, each (T, H, W, 3) uint8 RGB: the mean of the R3D-18 features of
    its consecutive ``clip_len``-frame clips (see ``split_clips``), run ``batch_size`` clips at a time."""
    device = next(net.parameters()).device
    features = []
    for video in clips:
        video = np.asarray(video)
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3 or len(video) == 0:
            raise ValueError(f"a video must be (T, H, W, 3) uint8 RGB with T ≥ 1, got {video.dtype} {video.shape}")
        video_clips = split_clips(video, clip_len)
        total = sum(net(torch.stack([preprocess(clip, device) for clip in video_clips[i:i + batch_size]])).sum(dim=0)
                    for i in range(0, len(video_clips), batch_size))
        features.append((total / len(video_clips)).cpu().double().numpy())
    return np.stack(features) if features else np.zeros((0, FEATURE_DIM))
