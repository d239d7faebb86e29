"""Inference scheduler of the PeRFlow student (DESIGN.md §3 "Distillation", step 9), diffusers-style.

Interchangeable with PeRFlow's public ``PeRFlowScheduler`` (its "ddim_eps" parameterisation): the same
configuration keys, the same integer timesteps and the same ``step`` results for the same model outputs
(`tests/test_perflow_scheduler.py` checks this against the public formulas).

* **Timesteps.** N steps are spread over the K windows, N//K each, the first N%K windows (nearest noise) one
  extra; inside a window the step times are equally spaced from its start, t = t_s + (t_e − t_s)·j/n, and
  the timestep is ⌊1000·t⌋ — 1000 at pure noise, as the student saw N·t during distillation
  (`NoiseSchedule.model_timestep`). N = 6 gives [1000, 875, 750, 625, 500, 250].
* **Step.** At t = timestep/1000 the ε prediction is turned into the window's end point,
  z_e = (λ·z_t + (1−τ)·η·ε) / ((1−τ) + λ·τ) with τ = (t − t_s)/(t_e − t_s) (`fada.perflow.window_end_from_eps`;
  the public code writes the same as λ_t·z_t + η_t·ε), and the sample moves along the line toward it to the
  next timestep's t (0 after the last step).
* **ᾱ.** ᾱ_s = ᾱ[1000·t_s − 1]; ᾱ_e likewise, and for the last window (t_e = 0) the final ᾱ: ᾱ[0] with
  ``set_alpha_to_one=False`` (the public default and behaviour), 1 with ``True``.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput

from fada.noise_schedule import SD15_SCHEDULE, NoiseSchedule
from fada.perflow import window_end_from_eps

PREDICTION_TYPES = ("ddim_eps",)


def window_step_counts(num_inference_steps: int, num_windows: int) -> list[int]:
    """Steps per window, noise side first: N//K each, one extra for the first N%K (N=6, K=4 → [2, 2, 1, 1])."""
    if num_inference_steps < num_windows:
        raise ValueError(f"need at least one step per window: {num_inference_steps} steps < {num_windows} windows")
    base, extra = divmod(num_inference_steps, num_windows)
    return [base + (i < extra) for i in range(num_windows)]


class PeRFlowScheduler(SchedulerMixin, ConfigMixin):
    """Piecewise-linear sampler for a student trained with `fada.perflow` targets."""

    config_name = "scheduler_config.json"
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = SD15_SCHEDULE["num_train_timesteps"],
        beta_start: float = SD15_SCHEDULE["beta_start"],
        beta_end: float = SD15_SCHEDULE["beta_end"],
        beta_schedule: str = SD15_SCHEDULE["beta_schedule"],
        set_alpha_to_one: bool = False,
        prediction_type: str = "ddim_eps",
        t_noise: float = 1.0,
        t_clean: float = 0.0,
        num_time_windows: int = 4,
    ):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        if (t_noise, t_clean) != (1.0, 0.0):
            raise ValueError(f"only t_noise=1, t_clean=0 (the whole trajectory) is supported, got {t_noise}, {t_clean}")
        self.schedule = NoiseSchedule(num_train_timesteps, beta_start, beta_end, beta_schedule, set_alpha_to_one)
        k = num_time_windows
        self.window_starts = [1 - i / k for i in range(k)]  # [1.0, 0.75, 0.5, 0.25]
        self.window_ends = self.window_starts[1:] + [0.0]  # [0.75, 0.5, 0.25, 0.0]
        self.init_noise_sigma = 1.0
        self.num_inference_steps = None
        self.timesteps = None

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        return sample

    def set_timesteps(self, num_inference_steps: int, device=None) -> None:
        times = []
        counts = window_step_counts(num_inference_steps, self.config.num_time_windows)
        for t_s, t_e, n in zip(self.window_starts, self.window_ends, counts):
            times.append(np.linspace(t_s, t_e, num=n, endpoint=False))
        timesteps = torch.from_numpy((np.concatenate(times) * self.config.num_train_timesteps).astype(np.int64))
        if len(timesteps.unique()) != num_inference_steps:
            raise ValueError(f"{num_inference_steps} steps do not map to distinct training timesteps")
        self.num_inference_steps = num_inference_steps
        self.timesteps = timesteps.to(device)

    def window(self, t: float) -> tuple[float, float]:
        """(t_s, t_e) of the window holding t ∈ (t_e, t_s]; a t within a tenth of a training step of a window
        end belongs to the window below (the public rule)."""
        slack = 0.1 / self.config.num_train_timesteps
        index = 0
        while t - slack <= self.window_ends[index]:
            index += 1
        return self.window_starts[index], self.window_ends[index]

    def window_alphas(self, t_s: float, t_e: float) -> tuple[float, float]:
        """ᾱ at the window's start and end (the final ᾱ when t_e = 0)."""
        table, n = self.schedule.alphas_cumprod, self.config.num_train_timesteps
        alpha_s = float(table[round(t_s * n) - 1])
        alpha_e = self.schedule.final_alpha_cumprod if t_e == 0 else float(table[round(t_e * n) - 1])
        return alpha_s, alpha_e

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, return_dict: bool = True):
        """Move `sample` from this timestep's t toward the predicted window end, to the next timestep's t."""
        matches = (self.timesteps.cpu() == int(timestep)).nonzero()
        if len(matches) != 1:
            raise ValueError(f"timestep {int(timestep)} is not one of this schedule's {self.timesteps.tolist()}")
        i, n = int(matches[0]), self.config.num_train_timesteps
        t = int(timestep) / n
        t_next = int(self.timesteps[i + 1]) / n if i + 1 < len(self.timesteps) else 0.0
        t_s, t_e = self.window(t)
        alpha_s, alpha_e = self.window_alphas(t_s, t_e)
        z_e = window_end_from_eps(model_output, sample, t, t_s, t_e, alpha_s, alpha_e)
        prev_sample = sample + (z_e - sample) * ((t_next - t) / (t_e - t))
        if not return_dict:
            return (prev_sample,)
        return SchedulerOutput(prev_sample=prev_sample)

    def __len__(self) -> int:
        return self.config.num_train_timesteps
