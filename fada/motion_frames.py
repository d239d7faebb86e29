"""Motion frames: what a first clip sees, what ε(∅,∅) sees, and their training augmentation (DESIGN.md §3).

Motion frames are "images from the last clip" (paper §3.1): the last ``num_motion_frames`` latents of the
previous clip, encoded by the reference net beside the reference image (`FadaModel.encode_conditions`).

* **First clip: no motion frames.** A first clip has no last clip, so it has no motion frames. They are
  represented by all-zero latents through the reference net, the same input as a dropped reference: a fixed,
  trained "no motion" state. Copies of the reference are not used: they would put the identity into a
  condition that ε(∅,∅) must not see, and teach the model that the previous clip looked exactly like the
  portrait. Training shows the state with ``motion_drop_rate`` (a real window whose motion frames are
  replaced by it), so the first clip at inference runs a trained state.
* **ε(∅,∅) drops the motion frames with the reference** (both all-zero latents, `fada.guidance.cfg_bank`;
  in training, ``drop_both_rate`` zeroes both), so the unconditional prediction of multi-CFG (eq. 9) carries
  neither the identity nor the previous clip.
* **Noise augmentation (training only).** At inference the motion frames are the model's own output, with its
  errors; feeding the clean ground truth in training lets those errors accumulate clip after clip into noise.
  As Hallo/EMO-style long-video methods do, training adds Gaussian noise of a per-sample strength
  σ ~ U(0, ``motion_noise``) to the motion latents, so the model learns to take them as a hint, not as truth.
"""

from __future__ import annotations

import torch


def no_motion(reference_latents: torch.Tensor, count: int) -> torch.Tensor:
    """The first clip's motion latents (B, count, C, h, w): the zero "no motion" state (module docstring)."""
    return reference_latents.new_zeros(reference_latents.shape[0], count, *reference_latents.shape[1:])


def augment_motion(motion_latents: torch.Tensor, noise_max: float, generator: torch.Generator) -> torch.Tensor:
    """Training augmentation: motion + σ·ε with σ ~ U(0, ``noise_max``) per sample (module docstring)."""
    batch, device = motion_latents.shape[0], motion_latents.device
    sigma = noise_max * torch.rand(batch, generator=generator, device=device)
    noise = torch.randn(motion_latents.shape, generator=generator, device=device)
    return motion_latents + (sigma[:, None, None, None, None] * noise).to(motion_latents.dtype)


def training_motion(motion_latents: torch.Tensor, keep_motion: torch.Tensor, noise_max: float,
                    generator: torch.Generator) -> torch.Tensor:
    """The motion latents a training sample conditions on: augmented, then the "no motion" state where
    ``keep_motion`` (B,) is 0 (a first clip, or ε(∅,∅) when multiplied in by the caller's reference mask)."""
    augmented = augment_motion(motion_latents, noise_max, generator) if noise_max > 0 else motion_latents
    return augmented * keep_motion.to(augmented.dtype)[:, None, None, None, None]
