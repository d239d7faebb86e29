"""Multi-condition classifier-free guidance (paper eq. 9) and its distilled form (DESIGN.md §3, step 8).

The three predictions come from one batched network call, stacked along the batch dim as
[(r,a), (r,∅), (∅,∅)]: r = reference image, a = audio, ∅ = dropped condition.
"""

from __future__ import annotations

import torch

from fada.noise_schedule import per_sample


def multi_cfg(eps_ra: torch.Tensor, eps_r: torch.Tensor, eps_none: torch.Tensor, s_r, s_a) -> torch.Tensor:
    """Paper eq. 9: ε = ε(∅,∅) + s_r·(ε(r,∅) − ε(∅,∅)) + s_a·(ε(r,a) − ε(r,∅)).

    Scales are floats or per-sample tensors of shape (B,).
    """
    s_r, s_a = per_sample(s_r, eps_ra), per_sample(s_a, eps_ra)
    return eps_none + s_r * (eps_r - eps_none) + s_a * (eps_ra - eps_r)


def split_cfg_batch(eps: torch.Tensor, n: int = 3) -> tuple[torch.Tensor, ...]:
    """Split a batched output (n·B, ...) into its n passes, in order [(r,a), (r,∅), (∅,∅)] for n = 3."""
    if eps.shape[0] % n:
        raise ValueError(f"batch of {eps.shape[0]} does not split into {n} CFG passes")
    return eps.chunk(n, dim=0)


def cfg_bank(conditional_bank: dict, empty_bank: dict) -> dict:
    """The reference-net bank of the three-pass batch [(r,a), (r,∅), (∅,∅)]: the conditional features twice, then
    the empty ones (reference and motion frames both dropped, `fada.motion_frames`)."""
    return {k: torch.cat([v, v, empty_bank[k]]) for k, v in conditional_bank.items()}


def cfg_embedding(tokens_ra: torch.Tensor, tokens_r: torch.Tensor, tokens_none: torch.Tensor, s_a, s_r) -> torch.Tensor:
    """Step 8: e = s_a·T_ra + (s_r − s_a)·T_r + (1 − s_r)·T_∅, mirroring eq. 9 rewritten.

    Tokens are (n, d); scales are (B,) tensors (or floats) → e of shape (B, n, d).
    """
    s_a = torch.as_tensor(s_a, dtype=tokens_ra.dtype, device=tokens_ra.device).reshape(-1, 1, 1)
    s_r = torch.as_tensor(s_r, dtype=tokens_ra.dtype, device=tokens_ra.device).reshape(-1, 1, 1)
    return s_a * tokens_ra + (s_r - s_a) * tokens_r + (1 - s_r) * tokens_none


class NFECounter:
    """Counts denoising-net evaluations (NFE-D): each call adds the number of CFG passes it batched.

    Teacher: 25 DDIM steps × 3 passes = 75; FADA-Balanced 6 × 3 = 18; FADA-Fast 6 × 1 = 6.
    """

    def __init__(self):
        self.reset()

    def add(self, passes: int = 1) -> None:
        self.calls += 1
        self.total += passes

    def reset(self) -> None:
        self.calls = 0
        self.total = 0
