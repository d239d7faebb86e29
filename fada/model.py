"""The FADA dual-UNet (DESIGN.md §3): reference net, denoising net, audio encoder, optional CFG conditioning.

Shapes: a video batch is (B, T, C, h, w) latents whose first ``num_motion_frames`` frames are motion frames
(clean latents of the previous clip's last frames, or of the reference image for a first clip) and whose
remaining F frames are denoised. Motion frames get timestep 0 and no audio; the loss ignores them.

One forward pass:
1. ``encode_reference`` runs the reference net once on the reference latent (t = 0) and returns the bank
   of its self-attention inputs (cache it per video);
2. ``encode_audio`` turns each frame's audio window into tokens;
3. ``forward`` runs the denoising net on all frames with that bank, those tokens and, for CFG-distilled
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

    def encode_reference(self, reference_latents: torch.Tensor) -> dict:
        """(B, C, h, w) clean reference latents → the bank {block index: (B, N, C)} (step 1)."""
        context = FrameContext(num_frames=1)
        batch = reference_latents.shape[0]
        timesteps = torch.zeros(batch, dtype=torch.long, device=reference_latents.device)
        self.reference_net(reference_latents, timesteps, encoder_hidden_states=self.reference_token.expand(batch, -1, -1),
                           cross_attention_kwargs={"fada": context})
        return context.bank

    def encode_audio(self, audio: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B, samples of num_frames + 2·context frames) → (B, num_frames, n, dim) (step 2)."""
        return self.audio_encoder(audio, num_frames)

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, audio_tokens: torch.Tensor, bank: dict,
                cfg_scales: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """ε prediction for (B, T, C, h, w) latents at per-sample ``timesteps`` (B,) (step 3).

        ``audio_tokens`` (B, T − M, n, dim) belong to the denoised frames; ``cfg_scales`` = (s_a, s_r) per sample
        for CFG-distilled students (ignored by the teacher).
        """
        batch, frames = latents.shape[:2]
        motion = self.config.num_motion_frames
        if audio_tokens.shape[1] != frames - motion:
            raise ValueError(f"{audio_tokens.shape[1]} frames of audio tokens for {frames - motion} denoised frames")
        frame_timesteps = timesteps[:, None].expand(batch, frames).clone()
        frame_timesteps[:, :motion] = 0
        tokens = torch.cat([audio_tokens.new_zeros(batch, motion, *audio_tokens.shape[2:]), audio_tokens], 1)
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
        out = self.denoising_net(latents.flatten(0, 1), frame_timesteps.flatten(), encoder_hidden_states=tokens.flatten(0, 1),
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
