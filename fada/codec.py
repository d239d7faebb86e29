"""Image codecs between frames in [-1, 1] and the latents the denoising net works on.

* `VaeCodec` — Stable Diffusion's `AutoencoderKL` (latents = scaling_factor · posterior mean, 8× smaller);
  loaded from a local SD1.5 directory's ``vae/`` or randomly initialised from a config (tests, benchmarks).
  A tiny decoder (`AutoencoderTiny`, TAESD's layout, which decodes SD's scaled latents) may replace the SD
  decoder at inference: 10× faster for 16 frames 512² on an H100 (docs/benchmarks.md), what lets the fast
  mode run in real time.
  `fada train-tiny-decoder` (`fada.tiny_decoder`) distils one for a user's own VAE and frames.
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

    def __init__(self, vae, size: int = 512, decode_chunk: int = 8, tiny_decoder=None):
        self.vae = vae.eval().requires_grad_(False)
        self.size = size
        self.decode_chunk = decode_chunk
        self.scaling_factor = vae.config.scaling_factor
        self.latent_channels = vae.config.latent_channels
        self.tiny_decoder = None
        if tiny_decoder is not None:
            self.use_tiny_decoder(tiny_decoder)

    def use_tiny_decoder(self, tiny_decoder) -> None:
        """Decode with ``tiny_decoder`` (an `AutoencoderTiny`) from now on; it must read this VAE's latents."""
        if tiny_decoder.config.latent_channels != self.latent_channels:
            raise ValueError(f"the tiny decoder reads {tiny_decoder.config.latent_channels}-channel latents; this "
                             f"model's VAE makes {self.latent_channels}")
        self.tiny_decoder = tiny_decoder.eval().requires_grad_(False)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != self.size:
            images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False)
        images = images.to(self.vae.dtype)
        means = [self.vae.encode(chunk).latent_dist.mean for chunk in images.split(self.decode_chunk)]
        return torch.cat(means) * self.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, image_size: int | None = None) -> torch.Tensor:
        if self.tiny_decoder is not None:  # TAESD decodes the scaled latents directly
            images = self.tiny_decoder.decode(latents.to(self.tiny_decoder.dtype)).sample
        else:
            latents = (latents / self.scaling_factor).to(self.vae.dtype)
            images = torch.cat([self.vae.decode(chunk).sample for chunk in latents.split(self.decode_chunk)])
        images = images.float().clamp(-1, 1)
        if image_size and image_size != images.shape[-1]:
            images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
        return images

    def to(self, *args, **kwargs) -> "VaeCodec":
        self.vae.to(*args, **kwargs)
        if self.tiny_decoder is not None:
            self.tiny_decoder.to(*args, **kwargs)
        return self

    def save(self, directory: str | os.PathLike) -> None:
        self.vae.save_pretrained(Path(directory) / "vae", safe_serialization=True)
        if self.tiny_decoder is not None:
            self.tiny_decoder.save_pretrained(Path(directory) / "tiny_decoder", safe_serialization=True)
        (Path(directory) / CODEC_FILE).write_text(json.dumps({"kind": self.kind, "size": self.size}))


def load_tiny_decoder(path: str | os.PathLike):
    """An `AutoencoderTiny` (e.g. a local copy of TAESD) from a diffusers directory."""
    from diffusers import AutoencoderTiny

    if not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"no AutoencoderTiny in {path} (expected config.json and safetensors weights)")
    return AutoencoderTiny.from_pretrained(path, use_safetensors=True)


def make_codec(kind: str = "pixel", size: int = 32, path: str | None = None, vae: dict | None = None,
               tiny_decoder: str | None = None):
    """A codec from configuration keywords: ``pixel`` at ``size``², or ``vae`` from ``path`` (an SD1.5 directory
    or a ``vae/`` directory) or randomly initialised from the ``vae`` config dict; ``tiny_decoder`` is a local
    `AutoencoderTiny` directory to decode with."""
    if kind == "pixel":
        return PixelCodec(size)
    if kind != "vae":
        raise ValueError(f"codec kind {kind!r}: use 'pixel' or 'vae'")
    from diffusers import AutoencoderKL

    if path:
        vae_dir = Path(path) / "vae" if (Path(path) / "vae").is_dir() else Path(path)
        if not (vae_dir / "config.json").is_file():
            raise FileNotFoundError(f"no AutoencoderKL in {path} (expected {vae_dir}/config.json)")
        autoencoder = AutoencoderKL.from_pretrained(vae_dir, use_safetensors=True)
    elif vae is None:
        raise ValueError("codec kind 'vae' needs 'path' (an SD1.5 directory) or a 'vae' config")
    else:
        autoencoder = AutoencoderKL(**vae)
    return VaeCodec(autoencoder, size, tiny_decoder=load_tiny_decoder(tiny_decoder) if tiny_decoder else None)


def load_codec(directory: str | os.PathLike):
    """The codec saved by ``codec.save(directory)``."""
    meta = json.loads((Path(directory) / CODEC_FILE).read_text())
    if meta["kind"] == "pixel":
        return PixelCodec(meta["size"])
    tiny = Path(directory) / "tiny_decoder"
    return make_codec("vae", meta["size"], path=str(directory), tiny_decoder=str(tiny) if tiny.is_dir() else None)
