"""Transformer blocks of the dual-UNet (DESIGN.md §3), installed in place of diffusers' `BasicTransformerBlock`s.

Frames are folded into the batch, (B·F, N, C), as the 2-D UNets expect. A `FrameContext` travels with
``cross_attention_kwargs["fada"]`` through every block of one forward pass:

* the **reference net**'s blocks (`ReferenceRecordingBlock`) record the input of their self-attention in
  ``context.bank`` (one entry per block, in order);
* the **denoising net**'s blocks (`FadaTransformerBlock`) run, in order:
  1. spatial self-attention whose keys/values also include the same block's reference-net features of the
     reference image and the motion frames (paper §3.1: "the output from each reference layer is then input
     to the corresponding layer in the denoising net for spatial attention");
  2. audio cross-attention (the UNet's cross-attention, fed per-frame audio tokens);
  3. the CFG layer (DESIGN.md step 8): cross-attention to the CFG embedding e, output zero-initialised,
     present only in students built with ``cfg_variant`` ``layer``/``layer-tokens``;
  4. the feed-forward;
  5. temporal self-attention across the frames of each spatial position (sinusoidal frame positions),
     output zero-initialised so a net initialised from an image UNet starts as that image UNet.

Blocks keep the original block's submodules under their original names, so SD1.5 weights load unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention


@dataclass
class FrameContext:
    """Per-forward state shared by the blocks: frames per video, the reference bank, CFG tokens."""

    num_frames: int = 1
    bank: dict = field(default_factory=dict)  # block index → (B, K·N, C) features of reference + motion frames
    cfg_tokens: torch.Tensor | None = None  # (B·F, n, C) CFG embedding e, or None


def sinusoidal_positions(length: int, dim: int, device, dtype) -> torch.Tensor:
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10_000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table.to(dtype)


def zero_module(module: nn.Module) -> nn.Module:
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


class ReferenceRecordingBlock(nn.Module):
    """A reference-net block: the original block, recording its self-attention input in the bank."""

    def __init__(self, block: BasicTransformerBlock, index: int):
        super().__init__()
        self.index = index
        self.norm1, self.attn1, self.norm2, self.attn2 = block.norm1, block.attn1, block.norm2, block.attn2
        self.norm3, self.ff = block.norm3, block.ff

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                timestep=None, cross_attention_kwargs=None, class_labels=None, added_cond_kwargs=None):
        context: FrameContext = cross_attention_kwargs["fada"]
        normed = self.norm1(hidden_states)
        context.bank[self.index] = normed
        hidden_states = hidden_states + self.attn1(normed)
        hidden_states = hidden_states + self.attn2(self.norm2(hidden_states), encoder_hidden_states=encoder_hidden_states)
        return hidden_states + self.ff(self.norm3(hidden_states))


class FadaTransformerBlock(nn.Module):
    """A denoising-net block: reference + self attention, audio attention, optional CFG layer, FF, temporal."""

    def __init__(self, block: BasicTransformerBlock, index: int, cfg_layer: bool = False):
        super().__init__()
        self.index = index
        self.norm1, self.attn1, self.norm2, self.attn2 = block.norm1, block.attn1, block.norm2, block.attn2
        self.norm3, self.ff = block.norm3, block.ff
        dim, heads = block.attn1.to_q.in_features, block.attn1.heads
        self.temporal_norm = nn.LayerNorm(dim)
        self.temporal_attn = Attention(dim, heads=heads, dim_head=dim // heads)
        zero_module(self.temporal_attn.to_out)
        if cfg_layer:
            cross_dim = block.attn2.to_k.in_features
            self.cfg_norm = nn.LayerNorm(dim)
            self.cfg_attn = Attention(dim, cross_attention_dim=cross_dim, heads=heads, dim_head=dim // heads)
            zero_module(self.cfg_attn.to_out)  # DESIGN.md step 8: the student starts as the teacher
        else:
            self.cfg_attn = None

    def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                timestep=None, cross_attention_kwargs=None, class_labels=None, added_cond_kwargs=None):
        context: FrameContext = cross_attention_kwargs["fada"]
        frames = context.num_frames
        # 1. Spatial self-attention over the frame's own tokens and this block's reference + motion features.
        normed = self.norm1(hidden_states)
        reference = context.bank[self.index].repeat_interleave(frames, dim=0)
        hidden_states = hidden_states + self.attn1(normed, encoder_hidden_states=torch.cat([normed, reference], 1))
        # 2. Audio cross-attention (tokens of each frame's audio window).
        hidden_states = hidden_states + self.attn2(self.norm2(hidden_states), encoder_hidden_states=encoder_hidden_states)
        # 3. CFG layer: cross-attention to e (DESIGN.md step 8).
        if self.cfg_attn is not None and context.cfg_tokens is not None:
            hidden_states = hidden_states + self.cfg_attn(self.cfg_norm(hidden_states),
                                                          encoder_hidden_states=context.cfg_tokens)
        # 4. Feed-forward.
        hidden_states = hidden_states + self.ff(self.norm3(hidden_states))
        # 5. Temporal self-attention: (B·F, N, C) → (B·N, F, C).
        batch_frames, tokens, channels = hidden_states.shape
        batch = batch_frames // frames
        temporal = hidden_states.view(batch, frames, tokens, channels).transpose(1, 2).reshape(batch * tokens, frames, channels)
        normed = self.temporal_norm(temporal) + sinusoidal_positions(frames, channels, temporal.device, temporal.dtype)
        temporal = temporal + self.temporal_attn(normed)
        return temporal.view(batch, tokens, frames, channels).transpose(1, 2).reshape(batch_frames, tokens, channels)


def transformer_block_slots(unet: nn.Module) -> list[tuple[nn.ModuleList, int]]:
    """(owner list, position) of every `BasicTransformerBlock` of a UNet, in forward order."""
    slots = []
    for module in unet.modules():
        blocks = getattr(module, "transformer_blocks", None)
        if isinstance(blocks, nn.ModuleList):
            slots.extend((blocks, i) for i, block in enumerate(blocks) if isinstance(block, BasicTransformerBlock))
    return slots


def install_reference_blocks(unet: nn.Module) -> int:
    slots = transformer_block_slots(unet)
    for index, (owner, i) in enumerate(slots):
        owner[i] = ReferenceRecordingBlock(owner[i], index)
    return len(slots)


def install_denoising_blocks(unet: nn.Module, cfg_layer: bool = False) -> int:
    slots = transformer_block_slots(unet)
    for index, (owner, i) in enumerate(slots):
        owner[i] = FadaTransformerBlock(owner[i], index, cfg_layer=cfg_layer)
    return len(slots)
