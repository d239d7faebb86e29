"""Teacher training (DESIGN.md §3, paper §3.1): ε-prediction DDPM loss on a view's windows, with condition
dropout so one network gives the three predictions of multi-CFG: ε(r,a), ε(r,∅) (audio dropped) and
ε(∅,∅) (reference and audio dropped).

Per step:
1. frames → latents with the codec; the reference frame (the reader's, outside the window); the motion
   frames noise-augmented with σ ~ U(0, ``motion_noise``) in training mode, and replaced by the "no motion"
   state with ``motion_drop_rate``, which is what a first clip sees at inference (`fada.motion_frames`);
2. t ~ U{0…999}, ε ~ N(0, I), z_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε on the denoised frames (SD1.5 schedule);
3. per sample: both conditions dropped with ``drop_both_rate`` (the reference and the motion frames, as ε(∅,∅)
   has them), else audio dropped with ``drop_audio_rate``; reference and motion frames go through the
   reference net, the F noisy frames through the denoising net;
4. L = ‖ε̂ − ε‖² over the denoised frames.

Two stages, as the paper trains its teacher ("closely aligns with the first two stages of recent methods",
§4 — EMO and Loopy): with ``image_steps`` > 0 the first ``image_steps`` steps are the **image stage**: windows of
one frame, the reference another frame of the same clip (the reader's), the "no motion" state for the motion
frames and no audio; the layers that only make sense for video — the audio encoder, the denoising net's audio
attention and its temporal attention — stay as initialised (frozen). It teaches the reference net and the
spatial reference attention to carry the portrait before motion frames, which are almost the target itself,
offer a shortcut around it (measured in docs/learning.md: without it a tiny teacher ignores its reference).
The **video stage** (the remaining steps) trains everything on ``num_frames`` windows as above. The image
stage runs in ``OUT/image_stage`` (its own checkpoints, so both stages resume), the video stage in ``OUT``.

`TeacherObjective` is steps 1–4; the loop around it (AdamW, warmup, grad clipping, EMA, exact resume,
checkpoints) is `fada.training.fit`, shared with distillation. The exported inference checkpoint
(``OUT/final``) carries the EMA weights and records the view and the shards it read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn

from fada.codec import make_codec
from fada.model import FadaModel
from fada.motion_frames import training_motion
from fada.noise_schedule import SD15_SCHEDULE
from fada.pipeline import make_scheduler
from fada.training import TrainingRunConfig, TrainResult, fit, setup_runtime


IMAGE_STAGE_DIR = "image_stage"


@dataclass
class TeacherTrainConfig(TrainingRunConfig):
    """The teacher's ``train`` section: the shared keywords (`fada.training.TrainingRunConfig`) and the image
    stage (module docstring): ``image_steps`` of the total steps, at ``image_batch_size`` single frames per step
    (default ``batch_size × num_frames``: as many frames per step as the video stage)."""

    image_steps: int = 0
    image_batch_size: int | None = None

    def check(self) -> None:
        super().check()
        if self.image_steps < 0 or (self.image_batch_size is not None and self.image_batch_size < 1):
            raise ValueError("need image_steps >= 0 and image_batch_size >= 1")

    def image_stage(self) -> "TeacherTrainConfig":
        """The settings of the image stage: one-frame windows, ``image_batch_size`` of them per step."""
        return replace(self, num_frames=1, batch_size=self.image_batch_size or self.batch_size * self.num_frames)


def video_only_parameters(model: FadaModel) -> list[nn.Parameter]:
    """What the image stage leaves as initialised: the audio encoder, the denoising net's audio attention
    (``attn2``) and its temporal attention."""
    return [p for name, p in model.named_parameters() if name.startswith("audio_encoder.") or (
        name.startswith("denoising_net.") and (".attn2." in name or ".temporal_" in name))]


def make_noise_scheduler():
    """SD1.5's training schedule (DESIGN.md §3): 1000 steps, scaled_linear β 0.00085 → 0.012."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SD15_SCHEDULE, clip_sample=False)


def drop_masks(batch: int, config: TeacherTrainConfig, generator: torch.Generator, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep_reference, keep_audio) float masks (B,) for step 3."""
    u = torch.rand(batch, generator=generator, device=device)
    keep_reference = (u >= config.drop_both_rate).float()
    keep_audio = (u >= config.drop_both_rate + config.drop_audio_rate).float()
    return keep_reference, keep_audio


class TeacherObjective(nn.Module):
    """Per-sample ε-prediction loss of a batch (steps 2–4); the module DDP wraps."""

    def __init__(self, model: FadaModel, config: TeacherTrainConfig, image_stage: bool = False):
        super().__init__()
        self.model, self.config, self.image_stage = model, config, image_stage
        self.noise_scheduler = make_noise_scheduler()

    def forward(self, latents: torch.Tensor, reference: torch.Tensor, audio: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
        model, motion = self.model, self.model.config.num_motion_frames
        batch, device = latents.shape[0], latents.device
        clean = latents[:, motion:]
        keep_motion = (torch.rand(batch, generator=generator, device=device) >= self.config.motion_drop_rate).float()
        if self.image_stage:  # no motion frames, no audio
            keep_motion = torch.zeros_like(keep_motion)
        motion_noise = self.config.motion_noise if self.training else 0.0
        motion_latents = training_motion(latents[:, :motion], keep_motion, motion_noise, generator)
        noise = torch.randn(clean.shape, generator=generator, device=device, dtype=clean.dtype)
        timesteps = torch.randint(0, SD15_SCHEDULE["num_train_timesteps"], (batch,), generator=generator, device=device)
        noisy = self.noise_scheduler.add_noise(clean.flatten(1), noise.flatten(1), timesteps).view_as(clean)
        keep_reference, keep_audio = drop_masks(batch, self.config, generator, device)
        if self.image_stage:
            keep_audio = torch.zeros_like(keep_audio)
        bank = model.encode_conditions(reference * keep_reference[:, None, None, None],
                                       motion_latents * keep_reference[:, None, None, None, None])
        tokens = model.encode_audio(audio, clean.shape[1]) * keep_audio[:, None, None, None]
        prediction = model(noisy, timesteps, tokens, bank)
        return (prediction.float() - noise.float()).pow(2).flatten(1).mean(1)

    def summarize(self, per_sample: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
        """(loss, scalars, histograms) of a step for `fada.training.fit`: L is the batch mean."""
        loss = per_sample.mean()
        return loss, {"loss": loss.item()}, {}


def view_lineage(data_dir: str | os.PathLike, view_name: str) -> dict:
    """What a run read: the immutable view (an alias such as ``strict`` is recorded beside the view it
    pointed at when the run started), its shards and clip count."""
    from shards.reader import load_view

    view = load_view(data_dir, view_name)
    alias = {} if view.get("name", view_name) == view_name else {"view_alias": view_name}
    return {"data_dir": str(Path(data_dir).resolve()), "view": view.get("name", view_name), **alias, "shards": sorted(view["shards"]),
            "clips": sum(len(keys) for keys in view["shards"].values()),
            "profile": view.get("profile", {}).get("name") if isinstance(view.get("profile"), dict) else view.get("profile")}


def build_model(config: dict) -> tuple[FadaModel, object]:
    """A fresh model and codec from a configuration (SD1.5 weights when ``sd15_dir`` is set)."""
    model = FadaModel(**config["model"])
    codec_config = dict(config["codec"])
    if config.get("sd15_dir"):
        model.load_unet_weights(Path(config["sd15_dir"]) / "unet")
        codec_config["path"] = config["sd15_dir"]
    return model, make_codec(**codec_config)


def train_teacher(data_dir: str | os.PathLike, view: str, config: dict, steps: int, out_dir: str | os.PathLike, *,
                  device: str | None = None, progress: bool = True) -> TrainResult:
    """Train (or resume, when ``out_dir`` holds training states) a teacher for ``steps`` total steps: the image
    stage's ``train.image_steps`` of them first, then the video stage (module docstring)."""
    train = TeacherTrainConfig.from_dict(config.get("train", {}))
    if train.image_steps >= steps:
        raise ValueError(f"image_steps ({train.image_steps}) must be fewer than the {steps} steps in all")
    lineage = view_lineage(data_dir, view)  # an alias is resolved once: the whole run reads one immutable view
    runtime = setup_runtime(device)
    torch.manual_seed(train.seed)
    model, codec = build_model(config)
    model.to(runtime.device).train()
    codec.to(runtime.device)
    meta = {"kind": "teacher", **lineage, "config": config}
    common = dict(model=model, codec=codec, data_dir=data_dir, view=lineage["view"], runtime=runtime,
                  scheduler=make_scheduler("teacher"), progress=progress)
    if train.image_steps:
        frozen = video_only_parameters(model)
        for parameter in frozen:
            parameter.requires_grad_(False)
        fit(TeacherObjective(model, train.image_stage(), image_stage=True), config=train.image_stage(),
            steps=train.image_steps, out_dir=Path(out_dir) / IMAGE_STAGE_DIR, meta={**meta, "stage": "image"},
            desc="train-teacher (image stage)", **common)
        for parameter in frozen:
            parameter.requires_grad_(True)
        meta["image_stage"] = {"steps": train.image_steps, "dir": IMAGE_STAGE_DIR}
    return fit(TeacherObjective(model, train), config=train, steps=steps - train.image_steps, out_dir=out_dir,
               meta=meta, desc="train-teacher", **common)
