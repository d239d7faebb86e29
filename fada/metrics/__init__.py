"""Evaluation metrics for generated video, and the local loading of their pretrained feature networks.

FID (``fada.metrics.fid``) and FVD (``fada.metrics.fvd``) are Fréchet distances (``fada.metrics.frechet``)
between Gaussians fitted to features of a pretrained network: the FID Inception-v3 (``fada.metrics.inception``)
per frame, a Kinetics R3D-18 (``fada.metrics.video_features``) per video. Weights cannot be downloaded at run
time; networks load from a local file with ``load_local_weights``, which raises ``MissingWeightsError`` naming
the file to provide and where to get it when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path


class MissingWeightsError(FileNotFoundError):
    """A feature network's local weight file is absent; the message names the file and where to get it."""


class WeightsMismatchError(RuntimeError):
    """A weight file's state dict does not have exactly the keys and shapes of the network it is loaded into."""


def load_local_weights(net, weights_path: str | os.PathLike, *, file_name: str, url: str, device: str = "cpu"):
    """``net`` in eval mode on ``device`` with the state dict at ``weights_path`` (``torch.save`` file, read with
    ``weights_only=True``, or ``.safetensors``), keys matched strictly.

    ``file_name`` and ``url`` name the published file the caller expects, for the error when it is absent.
    """
    import torch

    path = Path(weights_path)
    if not path.is_file():
        raise MissingWeightsError(
            f"{type(net).__name__} weights not found at {path}: provide {file_name} (download it from {url}) "
            f"and pass its local path; weights are never downloaded at run time"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as error:  # same keys, other shapes
        raise WeightsMismatchError(f"{path} does not fit {type(net).__name__} (expected {file_name}): {error}") from error
    if result.missing_keys or result.unexpected_keys:
        raise WeightsMismatchError(
            f"{path} is not a {type(net).__name__} state dict (expected {file_name}): "
            f"{len(result.missing_keys)} missing keys {result.missing_keys[:8]}, "
            f"{len(result.unexpected_keys)} unexpected keys {result.unexpected_keys[:8]}"
        )
    return net.to(device).eval()
