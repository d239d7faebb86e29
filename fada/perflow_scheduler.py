"""Inference scheduler of the PeRFlow student (DESIGN.md §3 "Distillation", step 9), diffusers-style.

N steps are spread over the K windows, N//K each, the first N%K windows (nearest noise) one extra; inside a
window the steps are equal in t. At each step the student's ε ("ddim_eps") is turned into the prediction of
the window's end point, and the sample moves along the straight line toward it, reaching it exactly at the
window's last step; after the last step the sample is at t = 0 (clean data).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput

from fada.noise_schedule import NoiseSchedule
from fada.perflow import PerflowWindows, window_end_from_eps

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
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: str = "scaled_linear",
        num_windows: int = 4,
        prediction_type: str = "ddim_eps",
    ):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        self.schedule = NoiseSchedule(num_train_timesteps, beta_start, beta_end, beta_schedule)
        self.windows = PerflowWindows(num_windows)
        self.init_noise_sigma = 1.0
        self.num_inference_steps = None
        self.timesteps = None  # model timestep indices, one per step
        self.step_times = None  # continuous t: step i runs from step_times[i] to step_times[i + 1]
        self.step_windows = None  # (t_s, t_e) of the window holding step i

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        return sample

    def set_timesteps(self, num_inference_steps: int, device=None) -> None:
        starts, windows = [], []
        for (t_e, t_s), n in zip(self.windows.bounds, window_step_counts(num_inference_steps, self.config.num_windows)):
            starts += [t_s + (t_e - t_s) * j / n for j in range(n)]
            windows += [(t_s, t_e)] * n
        self.num_inference_steps = num_inference_steps
        self.step_times = torch.tensor(starts + [0.0], dtype=torch.float64)
        self.step_windows = torch.tensor(windows, dtype=torch.float64)
        timesteps = self.schedule.timestep_index(self.step_times[:-1])
        if len(timesteps.unique()) != num_inference_steps:
            raise ValueError(f"{num_inference_steps} steps do not map to distinct training timesteps")
        self.timesteps = timesteps.to(device)

    def index_for_timestep(self, timestep) -> int:
        matches = (self.timesteps.cpu() == int(timestep)).nonzero()
        if len(matches) != 1:
            raise ValueError(f"timestep {int(timestep)} is not one of this schedule's {self.timesteps.tolist()}")
        return int(matches[0])

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, return_dict: bool = True):
        """Move `sample` from this step's t to the next along the line to the predicted window end."""
        i = self.index_for_timestep(timestep)
        t, t_next = self.step_times[i].item(), self.step_times[i + 1].item()
        t_s, t_e = self.step_windows[i].tolist()
        alpha_bar_s, alpha_bar_e = self.schedule.alpha_bar(self.step_windows[i])
        z_e = window_end_from_eps(model_output, sample, t, t_s, t_e, alpha_bar_s, alpha_bar_e)
        prev_sample = sample + (z_e - sample) * ((t_next - t) / (t_e - t))
        if not return_dict:
            return (prev_sample,)
        return SchedulerOutput(prev_sample=prev_sample)

    def __len__(self) -> int:
        return self.config.num_train_timesteps
