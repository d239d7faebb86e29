"""PeRFlow building blocks: time windows, the teacher's DDIM solver and the straight-line targets.

DESIGN.md §3 "Distillation", steps 1–6 and 9, following PeRFlow's public implementation ("ddim_eps"
parameterisation). Time t ∈ [0, 1], t = 1 is pure noise; every function takes one t (and window) per sample
and broadcasts over any number of trailing dims.

Within a window (t_e, t_s] the teacher's ODE is replaced by the straight line from z_s to z_e. The student
keeps predicting an ε, defined so that the DDIM-like map z_e = λ·z_s + η·ε reaches the window end:

    λ = √(ᾱ_e/ᾱ_s),   η = √(1−ᾱ_e) − √(ᾱ_e·(1−ᾱ_s)/ᾱ_s)          (step 5)

With z_s and z_e both on the DDPM marginal with the same noise ε, that ε is exactly the target (step 6).
"""

from __future__ import annotations

from typing import Callable

import torch

from fada.noise_schedule import NoiseSchedule, per_sample

# Window lookup slack: a t within this of a window start (t_s) belongs to that window, not the one above.
_WINDOW_SLACK = 1e-6


class PerflowWindows:
    """Step 1: K equal windows (t_e, t_s], from the noise side: (0.75, 1], (0.5, 0.75], … for K = 4."""

    def __init__(self, num_windows: int = 4):
        self.num_windows = num_windows
        self.bounds = [(1 - (i + 1) / num_windows, 1 - i / num_windows) for i in range(num_windows)]

    def window_index(self, t: torch.Tensor) -> torch.LongTensor:
        """Index of the window holding each t (0 = nearest noise); t = 1 is in window 0."""
        k = self.num_windows
        index = torch.floor((1 - t.to(torch.float64)) * k + _WINDOW_SLACK).long()
        return index.clamp(0, k - 1)

    def locate(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Step 2: per-sample window (t_s, t_e) with t ∈ (t_e, t_s], in t's dtype."""
        index = self.window_index(t).to(t.dtype)
        t_s = 1 - index / self.num_windows
        t_e = 1 - (index + 1) / self.num_windows
        return t_s, t_e


def sample_t(batch: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Step 2: training times uniform in (0, 1] (never exactly 0, which is clean data)."""
    return 1 - torch.rand(batch, generator=generator, device=device)


def _sub_step_time(t_s: torch.Tensor, t_e: torch.Tensor, k: int, num_steps: int) -> torch.Tensor:
    # the last sub-step ends exactly on t_e, so t_e = 0 gets the final ᾱ
    return t_e if k == num_steps else t_s + (t_e - t_s) * (k / num_steps)


@torch.no_grad()
def ddim_solve(
    eps_fn: Callable[[torch.Tensor, torch.LongTensor], torch.Tensor],
    z_s: torch.Tensor,
    t_s: torch.Tensor,
    t_e: torch.Tensor,
    num_steps: int,
    schedule: NoiseSchedule,
) -> torch.Tensor:
    """Step 3: deterministic DDIM (η = 0) from t_s to t_e in `num_steps` equal sub-steps of t.

    Sub-step k runs from t_k = t_s + (t_e − t_s)·k/n to t_{k+1}; the network sees index ⌊1000·t_k⌋ − 1 and
    the update uses ᾱ(t_k) → ᾱ(t_{k+1}), with the schedule's final ᾱ at t = 0. This is PeRFlow's public
    solver (``PFODESolver``) where 1000/(K·n) is a whole number (K·n = 4, 8, 20, 40 …). Where it is not — the
    reference's K = 4, n = 8 has steps of 31.25 — the public solver takes ᾱ of "index − 1000//(K·n)" as the
    next ᾱ although its next network call is at ⌊1000·t_{k+1}⌋ − 1, which may be one index lower; here the
    next ᾱ is always the one of the next call's time (a difference of one training step in ᾱ, under 0.3 %).
    `eps_fn(z, timestep_index)` returns the (guided) teacher ε.
    """
    t_s, t_e = t_s.to(torch.float64), t_e.to(torch.float64)
    z = z_s
    for k in range(num_steps):
        t_now, t_next = _sub_step_time(t_s, t_e, k, num_steps), _sub_step_time(t_s, t_e, k + 1, num_steps)
        eps = eps_fn(z, schedule.timestep_index(t_now))
        alpha_now = per_sample(schedule.alpha_bar(t_now), z)
        alpha_next = per_sample(schedule.alpha_bar(t_next), z)
        x0 = (z - (1 - alpha_now).sqrt() * eps) / alpha_now.sqrt()
        z = alpha_next.sqrt() * x0 + (1 - alpha_next).sqrt() * eps
    return z


def line_point(z_s: torch.Tensor, z_e: torch.Tensor, t, t_s, t_e) -> torch.Tensor:
    """Step 4: z_t = z_s + (z_e − z_s)·(t − t_s)/(t_e − t_s)."""
    frac = per_sample((t - t_s) / (t_e - t_s), z_s)
    return z_s + (z_e - z_s) * frac


def _lambda_eta(alpha_bar_s, alpha_bar_e, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    alpha_bar_s = per_sample(torch.as_tensor(alpha_bar_s, dtype=like.dtype, device=like.device), like)
    alpha_bar_e = per_sample(torch.as_tensor(alpha_bar_e, dtype=like.dtype, device=like.device), like)
    lam = (alpha_bar_e / alpha_bar_s).sqrt()
    eta = (1 - alpha_bar_e).sqrt() - (alpha_bar_e * (1 - alpha_bar_s) / alpha_bar_s).sqrt()
    return lam, eta


def eps_target(z_s: torch.Tensor, z_e: torch.Tensor, alpha_bar_s, alpha_bar_e) -> torch.Tensor:
    """Step 5: ε* = (z_e − λ·z_s)/η, the "ddim_eps" target that carries z_s to z_e."""
    lam, eta = _lambda_eta(alpha_bar_s, alpha_bar_e, z_s)
    return (z_e - lam * z_s) / eta


def gt_window_end(x0: torch.Tensor, eps: torch.Tensor, alpha_bar_e) -> torch.Tensor:
    """Step 6: the real window end z_e^gt = √ᾱ_e·x0 + √(1−ᾱ_e)·ε, with the ε that made z_s."""
    alpha_bar_e = per_sample(torch.as_tensor(alpha_bar_e, dtype=x0.dtype, device=x0.device), x0)
    return alpha_bar_e.sqrt() * x0 + (1 - alpha_bar_e).sqrt() * eps


def window_end_from_eps(eps: torch.Tensor, z_t: torch.Tensor, t, t_s, t_e, alpha_bar_s, alpha_bar_e) -> torch.Tensor:
    """Step 9: the window end implied by an ε prediction at z_t on the window's line.

    With τ = (t − t_s)/(t_e − t_s), z_t = (1−τ)·z_s + τ·z_e and z_e = λ·z_s + η·ε; eliminating z_s gives
    z_e = (λ·z_t + (1−τ)·η·ε) / ((1−τ) + λ·τ). At τ = 0 (window start) this is λ·z_t + η·ε.
    """
    lam, eta = _lambda_eta(alpha_bar_s, alpha_bar_e, z_t)
    tau = per_sample((t - t_s) / (t_e - t_s), z_t)
    return (lam * z_t + (1 - tau) * eta * eps) / ((1 - tau) + lam * tau)
