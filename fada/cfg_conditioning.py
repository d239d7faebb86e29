"""How a CFG-distilled student is told the guidance scales (s_a, s_r) (DESIGN.md step 8; paper §3.3).

Variants, selectable for the ablation of the paper's Table 4:

* ``none`` — no CFG conditioning (the teacher, and the "no CFG distillation" row);
* ``time-embed`` — a sinusoidal embedding of (s_a, s_r) added to the UNet's time embedding through
  its ``time_cond_proj_dim`` input (projection zero-initialised);
* ``layer`` — the CFG layers (one after each audio layer) attend to a plain MLP embedding of the scales;
* ``layer-tokens`` — the CFG layers attend to e = s_a·T_ra + (s_r − s_a)·T_r + (1 − s_r)·T_∅ built from three
  learnable token sets, mirroring eq. 9 rewritten as ε = s_a·ε(r,a) + (s_r − s_a)·ε(r,∅) + (1 − s_r)·ε(∅,∅).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from fada.guidance import cfg_embedding

CFG_VARIANTS = ("none", "time-embed", "layer", "layer-tokens")
SCALE_EMBED_DIM = 64  # per scale; time-embed feeds 2 × this to the UNet's cond projection


def scale_embedding(scales: torch.Tensor, dim: int = SCALE_EMBED_DIM) -> torch.Tensor:
    """Sinusoidal embedding of a (B,) scale tensor, (B, dim); scales are O(1–10) so frequencies start at 1."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, device=scales.device, dtype=torch.float32) * (-math.log(100.0) / half))
    angles = scales.float()[:, None] * freq[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def scales_embedding(s_a: torch.Tensor, s_r: torch.Tensor) -> torch.Tensor:
    return torch.cat([scale_embedding(s_a), scale_embedding(s_r)], dim=1)


class CfgConditioner(nn.Module):
    """Makes the CFG input for a variant: ``tokens(s_a, s_r)`` for the CFG layers or ``time_cond`` for time-embed."""

    def __init__(self, variant: str, dim: int, num_tokens: int = 4):
        super().__init__()
        if variant not in CFG_VARIANTS:
            raise ValueError(f"cfg variant {variant!r}: use one of {', '.join(CFG_VARIANTS)}")
        self.variant, self.dim, self.num_tokens = variant, dim, num_tokens
        if variant == "layer":
            self.mlp = nn.Sequential(nn.Linear(2 * SCALE_EMBED_DIM, dim), nn.SiLU(), nn.Linear(dim, num_tokens * dim))
        if variant == "layer-tokens":
            self.tokens_ra = nn.Parameter(torch.randn(num_tokens, dim) * 0.02)
            self.tokens_r = nn.Parameter(torch.randn(num_tokens, dim) * 0.02)
            self.tokens_none = nn.Parameter(torch.randn(num_tokens, dim) * 0.02)

    @property
    def uses_cfg_layers(self) -> bool:
        return self.variant in ("layer", "layer-tokens")

    def tokens(self, s_a: torch.Tensor, s_r: torch.Tensor) -> torch.Tensor | None:
        """(B, n, dim) input of the CFG layers, or None for variants without them."""
        if self.variant == "layer":
            return self.mlp(scales_embedding(s_a, s_r).to(self.mlp[0].weight.dtype)).view(-1, self.num_tokens, self.dim)
        if self.variant == "layer-tokens":
            return cfg_embedding(self.tokens_ra, self.tokens_r, self.tokens_none, s_a, s_r)
        return None

    def time_cond(self, s_a: torch.Tensor, s_r: torch.Tensor) -> torch.Tensor | None:
        return scales_embedding(s_a, s_r) if self.variant == "time-embed" else None
