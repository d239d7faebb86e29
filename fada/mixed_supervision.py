"""Mixed supervision: weighting the ground-truth branch against the distillation loss (DESIGN.md §3, step 7).

L = L_distill + w·L_gt per sample, with w a function of r = L_gt / L_distill computed without gradient.
The exact shape of the paper's eq. 8 is our reconstruction from its text; every constant is configurable,
and `combine` returns r and w so the trainer can log them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MODES = ("none", "fixed", "adaptive-unlimited", "adaptive")


@dataclass
class MixedSupervision:
    """Per-sample weight of L_gt. Defaults are the paper's constants (λ_gt, α, r_peak, r_dead)."""

    mode: str = "adaptive"
    lambda_gt: float = 0.25
    alpha: float = 0.2
    r_peak: float = 30.0
    r_dead: float = 100.0
    eps: float = 1e-8  # guards r = L_gt / L_distill against L_distill = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "adaptive" and not 0 < self.r_peak < self.r_dead:
            raise ValueError(f"need 0 < r_peak < r_dead, got r_peak={self.r_peak}, r_dead={self.r_dead}")

    def weight(self, r: torch.Tensor) -> torch.Tensor:
        """w(r) for the configured mode."""
        if self.mode == "none":  # plain PeRFlow
            return torch.zeros_like(r)
        if self.mode == "fixed":
            return torch.full_like(r, self.lambda_gt)
        rising = self.lambda_gt * r.clamp_min(0) ** self.alpha
        if self.mode == "adaptive-unlimited":
            return rising
        # adaptive: λ_gt·r^α up to r_peak, then linear from λ_gt·r_peak^α down to 0 at r_dead, 0 beyond
        falling = self.lambda_gt * self.r_peak**self.alpha * (self.r_dead - r) / (self.r_dead - self.r_peak)
        return torch.where(r <= self.r_peak, rising, falling.clamp_min(0))

    def combine(self, l_distill: torch.Tensor, l_gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample losses (B,) → (mean of L_distill + w·L_gt, r, w); r and w carry no gradient."""
        with torch.no_grad():
            r = l_gt / l_distill.clamp_min(self.eps)
            w = self.weight(r)
        return (l_distill + w * l_gt).mean(), r, w
