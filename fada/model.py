"""The FADA dual-UNet (DESIGN.md §3): reference net, denoising net, audio encoder, optional CFG conditioning.

Conditions as the paper's Fig. 1 has them: "the reference image and motion frames (i.e., images from the last
clip) undergo processing by a fixed VAE and reference net. The output from each reference layer is then input
to the corresponding layer in the denoising net for spatial attention." So a video batch is (B, F, C, h, w)
latents of the F frames being denoised only; the reference latent (B, C, h, w) and the ``num_motion_frames``
motion latents (B, M, C, h, w) enter through the bank of reference-net features that every denoising-net
block appends to its spatial keys/values (`fada.blocks`). The first clip's motion frames and the dropped
conditions of ε(∅,∅) are defined in `fada.motion_frames`.

One forward pass:
1. ``encode_reference`` runs the reference net once on the reference latent (t = 0) and returns the bank of
   its self-attention inputs (cache it per video); ``encode_motion`` does the same for the motion frames
   (once per clip) and ``join_banks`` appends them; ``encode_conditions`` does both in one reference-net call;
2. ``encode_audio`` turns each frame's audio window into tokens;
3. ``forward`` runs the denoising net on the F frames with that bank, those tokens and, for CFG-distilled
   students, the guidance scales (s_a, s_r).

Save and load with diffusers' ``save_pretrained``/``from_pretrained`` (safetensors + config.json).
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
from diffusers import ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config

from fada.audio_encoder import make_audio_encoder
from fada.blocks import FrameContext, install_denoising_blocks, install_reference_blocks
from fada.cfg_conditioning import SCALE_EMBED_DIM, CfgConditioner


class FadaModel(ModelMixin, ConfigMixin):
    """Reference net + denoising net + audio encoder; ``__init__`` keywords are the saved config."""

    @register_to_config
    def __init__(self, unet: dict, audio: dict, num_motion_frames: int = 2, cfg_variant: str = "none",
                 cfg_num_tokens: int = 4):
        super().__init__()
        dim = unet["cross_attention_dim"]
        self.reference_net = UNet2DConditionModel(**unet)
        denoising_config = dict(unet)
        if cfg_variant == "time-embed":
            denoising_config["time_cond_proj_dim"] = 2 * SCALE_EMBED_DIM
        self.denoising_net = UNet2DConditionModel(**denoising_config)
        if cfg_variant == "time-embed":
            nn.init.zeros_(self.denoising_net.time_embedding.cond_proj.weight)  # starts as the teacher
        self.cfg = CfgConditioner(cfg_variant, dim, cfg_num_tokens) if cfg_variant != "none" else None
        install_reference_blocks(self.reference_net)
        self.num_blocks = install_denoising_blocks(self.denoising_net,
                                                   cfg_layer=self.cfg is not None and self.cfg.uses_cfg_layers)
        self.audio_encoder = make_audio_encoder(dim, **audio)
        self.reference_token = nn.Parameter(torch.zeros(1, 1, dim))

    @property
    def latent_channels(self) -> int:
        return self.config.unet["in_channels"]

    @property
    def audio_context_frames(self) -> int:
        return self.audio_encoder.context_frames

    def encode_images(self, images: torch.Tensor) -> dict:
        """(B, K, C, h, w) clean latents → the bank {block index: (B, K·N, C)}: each image through the reference
        net at t = 0 on its own, the K images' features side by side."""
        batch, count = images.shape[:2]
        context = FrameContext(num_frames=1)
        flat = images.flatten(0, 1)
        timesteps = torch.zeros(flat.shape[0], dtype=torch.long, device=images.device)
        self.reference_net(flat, timesteps, encoder_hidden_states=self.reference_token.expand(flat.shape[0], -1, -1),
                           cross_attention_kwargs={"fada": context})
        return {k: v.reshape(batch, count * v.shape[1], v.shape[2]) for k, v in context.bank.items()}

    def encode_reference(self, reference_latents: torch.Tensor) -> dict:
        """(B, C, h, w) clean reference latents → the bank {block index: (B, N, C)} (step 1)."""
        return self.encode_images(reference_latents[:, None])

    def encode_motion(self, motion_latents: torch.Tensor) -> dict:
        """(B, M, C, h, w) motion latents → the bank {block index: (B, M·N, C)}; {} when M = 0 (step 1)."""
        return self.encode_images(motion_latents) if motion_latents.shape[1] else {}

    def encode_conditions(self, reference_latents: torch.Tensor, motion_latents: torch.Tensor) -> dict:
        """``join_banks(encode_reference(r), encode_motion(m))`` in one reference-net call (training)."""
        return self.encode_images(torch.cat([reference_latents[:, None], motion_latents], 1))

    @staticmethod
    def join_banks(reference_bank: dict, motion_bank: dict) -> dict:
        """The reference's features followed by the motion frames' ones, per block (keys/values of step 3)."""
        return {k: torch.cat([v, motion_bank[k]], 1) if k in motion_bank else v for k, v in reference_bank.items()}

    def encode_audio(self, audio: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B, samples of num_frames + 2·context frames) → (B, num_frames, n, dim) (step 2)."""
        return self.audio_encoder(audio, num_frames)

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, audio_tokens: torch.Tensor, bank: dict,
                cfg_scales: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """ε prediction for (B, F, C, h, w) noisy latents at per-sample ``timesteps`` (B,) (step 3).

        ``bank`` holds the reference-net features of the reference and the motion frames (``encode_conditions``
        or ``join_banks``); ``audio_tokens`` (B, F, n, dim) belong to the F frames; ``cfg_scales`` = (s_a, s_r)
        per sample for CFG-distilled students (ignored by the teacher).
        """
        batch, frames = latents.shape[:2]
        if audio_tokens.shape[1] != frames:
            raise ValueError(f"{audio_tokens.shape[1]} frames of audio tokens for {frames} denoised frames")
        frame_timesteps = timesteps[:, None].expand(batch, frames)
        context = FrameContext(num_frames=frames, bank=bank)
        time_cond = None
        if self.cfg is not None and cfg_scales is not None:
            s_a, s_r = cfg_scales
            cfg_tokens = self.cfg.tokens(s_a, s_r)
            if cfg_tokens is not None:
                context.cfg_tokens = cfg_tokens.repeat_interleave(frames, dim=0)
            time_cond = self.cfg.time_cond(s_a, s_r)
            if time_cond is not None:
                time_cond = time_cond.repeat_interleave(frames, dim=0).to(latents.dtype)
        out = self.denoising_net(latents.flatten(0, 1), frame_timesteps.flatten(), encoder_hidden_states=audio_tokens.flatten(0, 1),
                                 timestep_cond=time_cond, cross_attention_kwargs={"fada": context}).sample
        return out.view(latents.shape)

    def enable_gradient_checkpointing(self) -> None:
        self.reference_net.enable_gradient_checkpointing()
        self.denoising_net.enable_gradient_checkpointing()

    def load_unet_weights(self, unet_dir: str | os.PathLike) -> None:
        """Initialise both nets from an image UNet (e.g. SD1.5's ``unet/``); only FADA's new layers stay as built."""
        image_unet = UNet2DConditionModel.from_pretrained(unet_dir, use_safetensors=True)
        state = image_unet.state_dict()
        for net in (self.reference_net, self.denoising_net):
            missing, unexpected = net.load_state_dict(state, strict=False)
            new_layers = ("temporal_", "cfg_", "time_embedding.cond_proj")
            if unexpected or any(not any(tag in key for tag in new_layers) for key in missing):
                raise ValueError(f"{unet_dir} does not match this model's UNet: missing {missing[:5]}, "
                                 f"unexpected {unexpected[:5]}")


def student_from_teacher(teacher: FadaModel, cfg_variant: str, cfg_num_tokens: int = 4) -> FadaModel:
    """A student with the teacher's weights plus its (zero-initialised) CFG conditioning (DESIGN.md step 8)."""
    config = dict(teacher.config)
    config = {k: config[k] for k in ("unet", "audio", "num_motion_frames")}
    student = FadaModel(**config, cfg_variant=cfg_variant, cfg_num_tokens=cfg_num_tokens)
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or any(not (k.startswith("cfg.") or ".cfg_" in k or "cond_proj" in k) for k in missing):
        raise ValueError(f"teacher does not match the student: missing {missing[:5]}, unexpected {unexpected[:5]}")
    student = student.to(teacher.device)
    return student if teacher.dtype == student.dtype else student.to(dtype=teacher.dtype)
