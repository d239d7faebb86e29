"""Does the denoising net use the audio for the mouth? A one-step probe on generated speakers.

Sampling a whole video (`fada.pipeline`) tests everything at once: a model that has learnt the audio → mouth
mapping but cannot yet draw a clean face from pure noise scores as badly as one that ignores the audio. This
probe isolates the first: it asks the denoiser for the clean frames at a noise level where the mouth is drowned
in noise, and reads the mouth of its answer.

Per held-out speaker (`fada.metrics.oracle_sync.RenderedSpeaker`: frames, audio and the renderer's true mouth
opening), for each window of F frames after the first (the portrait, frame 0, is the reference: outside every
window, as at inference) and each probe timestep t:

1. z_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε with fixed noise (SD1.5 schedule, `fada.noise_schedule`), the motion frames in the
   "no motion" state of a first clip (`fada.motion_frames.no_motion`), so the mouth can only come from the audio;
2. x̂0 = (z_t − √(1−ᾱ_t)·ε̂) / √ᾱ_t, once with the window's own audio and once with the audio of another window of
   the same speaker (the same noise, reference and frames: only the audio differs);
3. the oracle's mouth reader (`MouthRegressor`) reads each x̂0 frame; r = Pearson correlation of the read opening
   with the true opening over all windows' frames.

``r_own`` far above ``r_swapped`` means the net draws the mouth the audio asks for; a net that ignores the audio
scores the same with both (and at high t, where z_t hides the mouth, both near 0). At the probe's t = 600 and
800, ᾱ_t ≈ 0.16 and 0.04: the noise's standard deviation is 2.3× and 5× the signal's, so a few-pixel mouth is
hard or impossible to read from z_t itself.
"""

from __future__ import annotations

import numpy as np
import torch

from fada.metrics.oracle_sync import SAMPLES_PER_FRAME, MouthRegressor, RenderedSpeaker, pearson, predict_opening
from fada.motion_frames import no_motion
from fada.noise_schedule import SD15_SCHEDULE

PROBE_TIMESTEPS = (600, 800)


def alphas_cumprod() -> torch.Tensor:
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SD15_SCHEDULE).alphas_cumprod


def window_audio(audio: np.ndarray, first: int, frames: int, context: int) -> torch.Tensor:
    """Samples of frames first − context .. first + frames + context (zeros outside the recording)."""
    start, stop = (first - context) * SAMPLES_PER_FRAME, (first + frames + context) * SAMPLES_PER_FRAME
    out = np.zeros(stop - start, np.float32)
    lo, hi = max(start, 0), min(stop, len(audio))
    if hi > lo:
        out[lo - start:hi - start] = audio[lo:hi]
    return torch.from_numpy(out)


def to_latents(codec, frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 → (T, C, h, w) codec latents of frames in [-1, 1]."""
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    return codec.encode(images)


def to_frames(codec, latents: torch.Tensor) -> np.ndarray:
    images = codec.decode(latents.float()).clamp(-1, 1)
    return ((images + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def audio_probe(model, codec, speakers: list[RenderedSpeaker], regressor: MouthRegressor, *, num_frames: int,
                timesteps=PROBE_TIMESTEPS, seed: int = 0) -> dict:
    """``{t: {"r_own", "r_swapped", "gap"}}`` plus ``"mean_gap"`` (over timesteps) for ``model`` (module docstring).
    Needs speakers of at least 3 windows of ``num_frames`` after the portrait."""
    model.eval()
    device, dtype = model.device, model.dtype
    context, motion_count = model.audio_context_frames, model.config.num_motion_frames
    alphas = alphas_cumprod()
    generator = torch.Generator().manual_seed(seed)
    read = {t: {"own": [], "swapped": []} for t in timesteps}
    truth = []
    for speaker in speakers:
        starts = list(range(1, len(speaker.frames) - num_frames + 1, num_frames))
        if len(starts) < 2:
            raise ValueError(f"speaker {speaker.seed}: {len(speaker.frames)} frames hold fewer than 2 windows of "
                             f"{num_frames} after the portrait")
        reference = to_latents(codec, speaker.frames[:1]).to(device, dtype)
        bank = model.encode_conditions(reference, no_motion(reference, motion_count))
        for index, first in enumerate(starts):
            clean = to_latents(codec, speaker.frames[first:first + num_frames]).to(device, dtype)[None]
            other = starts[(index + len(starts) // 2) % len(starts)]  # the farthest window, cyclically
            audio = torch.stack([window_audio(speaker.audio, first, num_frames, context),
                                 window_audio(speaker.audio, other, num_frames, context)]).to(device, dtype)
            tokens = model.encode_audio(audio, num_frames)
            truth.append(speaker.mouth_open[first:first + num_frames])
            for t in timesteps:
                a = alphas[t].to(device, dtype)
                noise = torch.randn(clean.shape, generator=generator).to(device, dtype)
                noisy = (a.sqrt() * clean + (1 - a).sqrt() * noise).repeat(2, 1, 1, 1, 1)
                eps = model(noisy, torch.full((2,), t, device=device), tokens,
                            {k: v.repeat(2, 1, 1) for k, v in bank.items()})
                x0 = (noisy - (1 - a).sqrt() * eps) / a.sqrt()
                for name, prediction in zip(("own", "swapped"), x0):
                    read[t][name].append(predict_opening(regressor, to_frames(codec, prediction)))
    truth = np.concatenate(truth)
    result = {}
    for t in timesteps:
        own, swapped = pearson(np.concatenate(read[t]["own"]), truth), pearson(np.concatenate(read[t]["swapped"]), truth)
        result[t] = {"r_own": own, "r_swapped": swapped, "gap": own - swapped}
    result["mean_gap"] = float(np.mean([result[t]["gap"] for t in timesteps]))
    return result
