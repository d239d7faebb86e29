"""The teacher's DDPM noise schedule on continuous time (DESIGN.md §3 "Noise schedule", distillation step 2).

Time t ∈ [0, 1] runs from clean data (t = 0) to pure noise (t = 1). A continuous t maps to the discrete
training index ⌊N·t⌋ − 1 (N = 1000 training steps), as in PeRFlow's public implementation, so t = 1 is
index 999 and t = 0.75 is index 749. At t = 0 itself ᾱ is the "final" ᾱ of diffusers' DDIM: ᾱ of the first
training step (``set_alpha_to_one=False``, SD1.5's scheduler setting, which PeRFlow's teacher solver and
scheduler both use) or exactly 1 (``set_alpha_to_one=True``).

The ᾱ table is computed exactly as diffusers' `DDPMScheduler` does (float32 betas, float32 cumulative
product), then stored as float64, so the teacher sees the very values it was trained with.
"""

from __future__ import annotations

import torch

BETA_SCHEDULES = ("linear", "scaled_linear")

# SD1.5's β schedule (DESIGN.md §3 "Noise schedule"), as keyword arguments of diffusers' schedulers: the one
# definition the teacher's DDPM training, its DDIM sampler, `NoiseSchedule` and `PeRFlowScheduler` all use.
SD15_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}

# A continuous t computed in float32 can fall a hair below a multiple of 1/N (0.7 is 0.69999999 in float32);
# this slack, in units of training steps, keeps such t on the intended index.
_INDEX_SLACK = 1e-3


def per_sample(value, like: torch.Tensor):
    """Broadcast a per-sample value of shape (B,) over the trailing dims of `like` (B, ...); floats pass through."""
    if not torch.is_tensor(value):
        return value
    value = value.to(device=like.device, dtype=like.dtype)
    return value.reshape(value.shape[:1] + (1,) * (like.dim() - 1))


class NoiseSchedule:
    """ᾱ of a DDPM β schedule, looked up by continuous time; SD1.5's schedule by default."""

    def __init__(
        self,
        num_train_timesteps: int = SD15_SCHEDULE["num_train_timesteps"],
        beta_start: float = SD15_SCHEDULE["beta_start"],
        beta_end: float = SD15_SCHEDULE["beta_end"],
        beta_schedule: str = SD15_SCHEDULE["beta_schedule"],
        set_alpha_to_one: bool = False,
    ):
        if beta_schedule == "linear":
            betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
        elif beta_schedule == "scaled_linear":
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2
        else:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {beta_schedule!r}")
        self.num_train_timesteps = num_train_timesteps
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0).to(torch.float64)
        self.final_alpha_cumprod = 1.0 if set_alpha_to_one else float(self.alphas_cumprod[0])

    def timestep_index(self, t: torch.Tensor) -> torch.LongTensor:
        """Continuous t → training index ⌊N·t⌋ − 1, clamped to [0, N − 1]."""
        index = torch.floor(t.to(torch.float64) * self.num_train_timesteps + _INDEX_SLACK).long() - 1
        return index.clamp(0, self.num_train_timesteps - 1)

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """ᾱ at continuous t (float32, shape of t); the final ᾱ at t = 0."""
        table = self.alphas_cumprod.to(device=t.device, dtype=torch.float32)
        final = torch.tensor(self.final_alpha_cumprod, dtype=torch.float32, device=t.device)
        return torch.where(t == 0, final, table[self.timestep_index(t)])

    def model_timestep(self, t: torch.Tensor) -> torch.Tensor:
        """The timestep a PeRFlow student sees at continuous t: N·t as a float (1000 at pure noise), as PeRFlow's
        training feeds its UNet and its scheduler's integer timesteps ⌊N·t⌋ reproduce at inference."""
        return t.to(torch.float32) * self.num_train_timesteps

    def add_noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Forward process z_t = √ᾱ·x0 + √(1−ᾱ)·ε with one t per sample (t of shape (B,))."""
        alpha_bar = per_sample(self.alpha_bar(t), x0)
        return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
