"""A tiny decoder for our latents, distilled from the SD VAE on the user's own frames (`fada train-tiny-decoder`).

The SD VAE decoder takes ~230 ms for 16 frames at 512² on an H100, a third of the fast mode's time per clip; a
decoder in TAESD's layout (diffusers `AutoencoderTiny`: plain 3×3 conv blocks, no attention, no group norm) takes
~23 ms (docs/benchmarks.md). TAESD's public weights fit SD's latents in general; this module makes a matched
decoder for a user who has the SD VAE and their own footage, without downloading anything:

1. frames of a view's clips, read through `shards.reader.ClipWindowDataset` (uint8, converted on the device);
2. z = the SD VAE encoder's scaled posterior mean (what `VaeCodec.encode` gives the denoising net), no gradient;
3. the target x̂ = the SD VAE decoder's output for z (the teacher), no gradient;
4. the tiny decoder's loss L_dec = ‖D_tiny(z) − x̂‖² (mean over pixels); the tiny encoder, so that the saved
   `AutoencoderTiny` is whole, learns z itself: L_enc = ‖E_tiny(frames) − z‖²; AdamW on L_dec + L_enc;
5. before and after training, D_tiny's error against the teacher on the frames of a held-out view (by default
   ``test``, the split `fada split` writes and training views exclude), reported as MSE and PSNR.

The result is a diffusers directory (``config.json`` + ``diffusion_pytorch_model.safetensors``) that
`fada generate --tiny-decoder DIR` and `fada.codec.load_tiny_decoder` load, plus ``distill.json`` (settings,
losses, held-out errors). It is written to a temporary directory beside ``out`` and renamed when complete.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

DISTILL_FILE = "distill.json"


@dataclass
class TinyDecoderTrainConfig:
    """Keywords of `train_tiny_decoder` (saved in ``distill.json``)."""

    steps: int = 2000
    batch_size: int = 8          # frames per step
    learning_rate: float = 1e-3
    width: int = 64              # channels of every tiny block (TAESD: 64)
    frame_size: int | None = None  # default: the VAE codec's image size
    eval_frames: int = 64        # held-out frames for the before/after error
    mixed_precision: str = "no"  # no | bf16 | fp16 (autocast of the tiny networks)
    num_workers: int = 0
    seed: int = 0

    def check(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.width < 1 or self.eval_frames < 1:
            raise ValueError("need steps, batch_size, width and eval_frames >= 1")


def tiny_autoencoder_for(vae, width: int = 64):
    """An `AutoencoderTiny` matching ``vae`` (an `AutoencoderKL`): the same latent channels and the same number of
    2× resolution steps (one per VAE level after the first), TAESD's block counts at four levels."""
    from diffusers import AutoencoderTiny

    levels = len(vae.config.block_out_channels)
    decoder_blocks = (3,) * (levels - 1) + (1,)
    encoder_blocks = (1,) + (3,) * (levels - 1)
    return AutoencoderTiny(in_channels=vae.config.in_channels, out_channels=vae.config.out_channels,
                           encoder_block_out_channels=(width,) * levels, decoder_block_out_channels=(width,) * levels,
                           num_encoder_blocks=encoder_blocks, num_decoder_blocks=decoder_blocks,
                           latent_channels=vae.config.latent_channels)


def epoch_frames(data_dir: str | os.PathLike, view: str, size: int, batch_size: int, seed: int, epoch: int = 0,
                 num_workers: int = 0):
    """One epoch of (batch_size, 3, size, size) uint8 frame batches of a view: a window of ``batch_size``
    consecutive frames per clip (stage 1)."""
    from shards.reader import ClipWindowDataset

    dataset = ClipWindowDataset(data_dir, view, n_frames=batch_size, n_motion_frames=0, frame_size=size,
                                windows_per_clip=1, seed=seed, uint8_frames=True)
    dataset.set_epoch(epoch)
    for window in torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=num_workers):
        yield window["frames"]


def frame_batches(data_dir: str | os.PathLike, view: str, size: int, batch_size: int, seed: int, num_workers: int = 0):
    """Endless frame batches of a view, epoch after epoch."""
    epoch = 0
    while True:
        yielded = False
        for batch in epoch_frames(data_dir, view, size, batch_size, seed, epoch, num_workers):
            yielded = True
            yield batch
        if not yielded:
            raise ValueError(f"view {view!r} yields no window of {batch_size} frames at {size}²")
        epoch += 1


def held_out_frames(data_dir, view: str | None, size: int, count: int, seed: int) -> torch.Tensor | None:
    """Up to ``count`` uint8 frames from one epoch of the held-out view, or None when the data has no such view."""
    from shards.views import view_path

    if not view or not view_path(data_dir, view).is_file():
        return None
    frames = []
    for batch in epoch_frames(data_dir, view, size, min(count, 16), seed):
        frames.append(batch)
        if sum(len(f) for f in frames) >= count:
            break
    return torch.cat(frames)[:count] if frames else None


@torch.no_grad()
def decoder_error(tiny, codec, frames: torch.Tensor, device, chunk: int = 16) -> dict:
    """MSE and PSNR (on [-1, 1], peak-to-peak 2) of the tiny decoder against the VAE decoder on ``frames`` (step 5)."""
    from shards.reader import to_unit_range

    squared, count = 0.0, 0
    for part in frames.split(chunk):
        latents = codec.encode(to_unit_range(part, device).to(codec.vae.dtype))
        target = codec.vae.decode((latents / codec.scaling_factor).to(codec.vae.dtype)).sample.float().clamp(-1, 1)
        prediction = tiny.decode(latents.to(tiny.dtype)).sample.float().clamp(-1, 1)
        squared += F.mse_loss(prediction, target, reduction="sum").item()
        count += target.numel()
    mse = squared / count
    return {"mse": mse, "psnr_db": 10 * math.log10(4.0 / max(mse, 1e-12)), "frames": len(frames)}


def distill_step(tiny, codec, frames: torch.Tensor, optimizer, precision: str) -> dict:
    """Steps 2–4 on one batch of [-1, 1] frames; returns the two losses."""
    from fada.training import autocast

    with torch.no_grad():
        latents = codec.encode(frames.to(codec.vae.dtype))
        target = codec.vae.decode((latents / codec.scaling_factor).to(codec.vae.dtype)).sample.float().clamp(-1, 1)
    with autocast(precision, frames.device):
        decoded = tiny.decode(latents.to(tiny.dtype)).sample
        encoded = tiny.encode(frames.to(tiny.dtype)).latents
    loss_dec = F.mse_loss(decoded.float(), target)
    loss_enc = F.mse_loss(encoded.float(), latents.float())
    optimizer.zero_grad(set_to_none=True)
    (loss_dec + loss_enc).backward()
    optimizer.step()
    return {"loss_decoder": loss_dec.item(), "loss_encoder": loss_enc.item()}


def train_tiny_decoder(data_dir: str | os.PathLike, view: str, vae_path: str | os.PathLike, out: str | os.PathLike,
                       config: TinyDecoderTrainConfig | None = None, *, eval_view: str | None = "test",
                       device: str | None = None, progress: bool = True, codec=None) -> dict:
    """Distil a tiny autoencoder from the VAE at ``vae_path`` (an SD1.5 directory or its ``vae/``) on ``view``'s frames
    and save it to ``out``; returns the summary written to ``distill.json``. ``codec`` (a `VaeCodec`) replaces the
    loaded VAE (tests build a small random one)."""
    from tqdm.auto import tqdm

    from fada.codec import make_codec
    from shards.reader import to_unit_range

    config = config or TinyDecoderTrainConfig()
    config.check()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if codec is None:
        codec = make_codec("vae", config.frame_size or 512, path=str(vae_path))
    codec.to(device)
    size = config.frame_size or codec.size
    torch.manual_seed(config.seed)
    tiny = tiny_autoencoder_for(codec.vae, config.width).to(device).train()
    optimizer = torch.optim.AdamW(tiny.parameters(), lr=config.learning_rate, weight_decay=0.0)
    held_out = held_out_frames(data_dir, eval_view, size, config.eval_frames, config.seed)
    before = decoder_error(tiny.eval(), codec, held_out, device) if held_out is not None else None
    tiny.train()
    batches = frame_batches(data_dir, view, size, config.batch_size, config.seed, config.num_workers)
    losses, start = [], time.perf_counter()
    for step in tqdm(range(config.steps), desc="tiny decoder", disable=not progress):
        losses.append(distill_step(tiny, codec, to_unit_range(next(batches), device), optimizer, config.mixed_precision))
    tiny.eval()
    after = decoder_error(tiny, codec, held_out, device) if held_out is not None else None
    summary = {"config": asdict(config), "vae": str(vae_path), "data": str(data_dir), "view": view,
               "eval_view": eval_view if held_out is not None else None, "seconds": time.perf_counter() - start,
               "first_loss_decoder": losses[0]["loss_decoder"], "last_loss_decoder": losses[-1]["loss_decoder"],
               "last_loss_encoder": losses[-1]["loss_encoder"], "held_out_untrained": before, "held_out": after,
               "losses": losses}
    save_tiny_decoder(tiny, out, summary)
    return summary


def save_tiny_decoder(tiny, out: str | os.PathLike, summary: dict) -> None:
    """``save_pretrained`` (safetensors + config.json) and ``distill.json`` into a temporary directory beside ``out``,
    then renamed over it, so ``out`` is either the old complete decoder or the new one."""
    from filters.strict_json import json_safe

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        tiny.save_pretrained(tmp, safe_serialization=True)
        (tmp / DISTILL_FILE).write_text(json.dumps(json_safe(summary), indent=1))
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
