"""Image codecs between frames in [-1, 1] and the latents the denoising net works on.

* `VaeCodec` — Stable Diffusion's `AutoencoderKL` (latents = scaling_factor · posterior mean, 8× smaller);
  loaded from a local SD1.5 directory's ``vae/`` or randomly initialised from a config (tests, benchmarks).
* `PixelCodec` — tiny models' "latents" are the frames themselves, area-downsampled to ``size``²; decoding
  upsamples back. It keeps the demo and the CPU tests honest: what the model learns is visible in its output.

Both save to and load from a directory (``save``/`load_codec`) beside the model weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

CODEC_FILE = "codec.json"


class PixelCodec:
    """Frames ↔ downsampled frames; ``latent_channels`` = 3, ``downscale`` = image size / ``size``."""

    kind = "pixel"
    latent_channels = 3

    def __init__(self, size: int = 32):
        self.size = size

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] → (N, 3, size, size)."""
        if images.shape[-1] == self.size and images.shape[-2] == self.size:
            return images
        return F.interpolate(images, size=(self.size, self.size), mode="area")

    def decode(self, latents: torch.Tensor, image_size: int | None = None) -> torch.Tensor:
        images = latents.clamp(-1, 1)
        if image_size and image_size != self.size:
            images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
        return images

    def to(self, *args, **kwargs) -> "PixelCodec":
        return self

    def save(self, directory: str | os.PathLike) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / CODEC_FILE).write_text(json.dumps({"kind": self.kind, "size": self.size}))


class VaeCodec:
    """SD's `AutoencoderKL`: ``encode`` returns scaled posterior means, ``decode`` images in [-1, 1]."""

    kind = "vae"

    def __init__(self, vae, size: int = 512, decode_chunk: int = 8):
        self.vae = vae.eval().requires_grad_(False)
        self.size = size
        self.decode_chunk = decode_chunk
        self.scaling_factor = vae.config.scaling_factor
        self.latent_channels = vae.config.latent_channels

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != self.size:
            images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False)
        images = images.to(self.vae.dtype)
        means = [self.vae.encode(chunk).latent_dist.mean for chunk in images.split(self.decode_chunk)]
        return torch.cat(means) * self.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, image_size: int | None = None) -> torch.Tensor:
        latents = (latents / self.scaling_factor).to(self.vae.dtype)
        images = torch.cat([self.vae.decode(chunk).sample for chunk in latents.split(self.decode_chunk)])
        images = images.float().clamp(-1, 1)
        if image_size and image_size != images.shape[-1]:
            images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
        return images

    def to(self, *args, **kwargs) -> "VaeCodec":
        self.vae.to(*args, **kwargs)
        return self

    def save(self, directory: str | os.PathLike) -> None:
        self.vae.save_pretrained(Path(directory) / "vae", safe_serialization=True)
        (Path(directory) / CODEC_FILE).write_text(json.dumps({"kind": self.kind, "size": self.size}))


def make_codec(kind: str = "pixel", size: int = 32, path: str | None = None, vae: dict | None = None):
    """A codec from configuration keywords: ``pixel`` at ``size``², or ``vae`` from ``path`` (an SD1.5 directory
    or a ``vae/`` directory) or randomly initialised from the ``vae`` config dict."""
    if kind == "pixel":
        return PixelCodec(size)
    if kind != "vae":
        raise ValueError(f"codec kind {kind!r}: use 'pixel' or 'vae'")
    from diffusers import AutoencoderKL

    if path:
        vae_dir = Path(path) / "vae" if (Path(path) / "vae").is_dir() else Path(path)
        if not (vae_dir / "config.json").is_file():
            raise FileNotFoundError(f"no AutoencoderKL in {path} (expected {vae_dir}/config.json)")
        return VaeCodec(AutoencoderKL.from_pretrained(vae_dir, use_safetensors=True), size)
    if vae is None:
        raise ValueError("codec kind 'vae' needs 'path' (an SD1.5 directory) or a 'vae' config")
    return VaeCodec(AutoencoderKL(**vae), size)


def load_codec(directory: str | os.PathLike):
    """The codec saved by ``codec.save(directory)``."""
    meta = json.loads((Path(directory) / CODEC_FILE).read_text())
    if meta["kind"] == "pixel":
        return PixelCodec(meta["size"])
    return make_codec("vae", meta["size"], path=str(directory))
