"""How the ablation scores a model: videos of held-out generator speakers from the same portrait, audio and noise.

Eval clips (`held_out_clips`): generator speakers of seeds ``HELD_OUT_SEED0`` + i (never in a training view),
rendered at the model's frame size; the window is ``frames`` frames from frame ``WINDOW_START``; the portrait is
frame 0, outside the window, as at inference; the audio is the window's plus the audio encoder's context on both
sides. Every model generates each clip clip-by-clip through `FadaPipeline.latent_clips` with one generator seed.

Per model (`Evaluator.__call__`):

* ``distance`` — latent MSE to the teacher's latents from the same noise, portrait and audio (0 for the teacher);
* ``oracle_sync`` — `fada.metrics.oracle_sync.OracleSync` peak lagged correlation of the read mouth with the
  audio envelope, mean over the videos it could score (``oracle_shuffled``: the same videos with shuffled audio);
* ``fd`` — Fréchet distance (`fada.metrics.frechet`) between Gaussians fitted to ``fd_side``²×3-d features
  (area-downsampled thumbnails, pixels in 0..1, `frame_features`) of all generated frames and of all real
  frames of the same windows;
* ``nfe`` — denoising-net evaluations per clip, counted by the pipeline (`NFECounter`);
* ``gen_s_per_s`` — generation (sampling + decoding) seconds per second of video.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from filters.media_contract import FPS, SAMPLES_PER_FRAME

HELD_OUT_SEED0, ORACLE_SEED0 = 9000, 5000  # generator seeds of the eval speakers and the oracle's training speakers
WINDOW_START = 10  # first frame of an eval window; frame 0 is the portrait


@dataclass
class EvalClip:
    portrait: torch.Tensor  # (3, H, W) in [-1, 1]: frame 0 of the speaker, outside the window
    audio: torch.Tensor     # the window's samples plus ``context_frames`` frames of audio on both sides
    frames: np.ndarray      # the real window (T, H, W, 3) uint8
    mouth_open: np.ndarray  # the renderer's mouth opening over the window (T,)


def held_out_clips(folder: str | Path, *, count: int, frames: int, size: int, context_frames: int) -> list[EvalClip]:
    """``count`` eval clips of ``frames`` frames at ``size``² (module docstring)."""
    from fada.metrics.oracle_sync import render_speakers

    end = WINDOW_START + frames
    duration_s = (end + context_frames + 1) / FPS
    clips = []
    for speaker in render_speakers(range(HELD_OUT_SEED0, HELD_OUT_SEED0 + count), duration_s, folder, size=size):
        lo, hi = (WINDOW_START - context_frames) * SAMPLES_PER_FRAME, (end + context_frames) * SAMPLES_PER_FRAME
        audio = np.pad(speaker.audio, (0, max(0, hi - len(speaker.audio))))[lo:hi]
        portrait = torch.from_numpy(speaker.frames[0]).permute(2, 0, 1).float().div(127.5).sub(1)
        clips.append(EvalClip(portrait, torch.from_numpy(audio.astype(np.float32)), speaker.frames[WINDOW_START:end],
                              speaker.mouth_open[WINDOW_START:end]))
    return clips


def oracle_regressor(path: Path, *, speakers: int, seconds: float, steps: int):
    """The mouth regressor of `fada.metrics.oracle_sync`, trained once on rendered speakers (seeds
    ``ORACLE_SEED0`` + i) and kept at ``path`` (safetensors); a later run loads it."""
    from fada.metrics.oracle_sync import load_regressor, render_speakers, save_regressor, train_mouth_regressor

    if path.is_file():
        return load_regressor(path)
    rendered = render_speakers(range(ORACLE_SEED0, ORACLE_SEED0 + speakers), seconds, path.parent / "oracle_speakers")
    regressor = train_mouth_regressor(rendered, steps=steps, seed=0)
    save_regressor(regressor, path)
    return regressor


def frame_features(frames: np.ndarray, side: int) -> np.ndarray:
    """(T, side·side·3) area-downsampled thumbnails of (T, H, W, 3) uint8 frames, pixels in 0..1."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(255)
    return torch.nn.functional.interpolate(x, size=(side, side), mode="area").flatten(1).numpy()


@torch.no_grad()
def generate_latents(pipe, clip: EvalClip, seed: int) -> tuple[torch.Tensor, float]:
    """(latents (T, C, h, w), NFE-D per clip) of one eval video: `FadaPipeline.latent_clips` over the window's
    clips, each with its audio and the audio around it as context."""
    frames, context = pipe.clip_frames, pipe.model.audio_context_frames
    n_clips = len(clip.frames) // frames
    clips = [(c * frames, clip.audio[c * frames * SAMPLES_PER_FRAME:((c + 1) * frames + 2 * context) * SAMPLES_PER_FRAME])
             for c in range(n_clips)]
    pipe.nfe.reset()
    latents = [clip_latents[0] for _, clip_latents in pipe.latent_clips(clip.portrait[None], clips, seed=seed)]
    return torch.cat(latents).float().cpu(), pipe.nfe.total / n_clips


class Evaluator:
    """Scores pipelines on fixed eval clips (module docstring); ``reference`` holds the teacher's latents (set by
    scoring the teacher first, or loaded from an earlier run)."""

    def __init__(self, clips: list[EvalClip], oracle, *, context_frames: int, seed: int = 0, fd_side: int = 4):
        self.clips, self.oracle, self.context, self.seed, self.fd_side = clips, oracle, context_frames, seed, fd_side
        self.reference: list[torch.Tensor] | None = None
        self.real_features = np.concatenate([frame_features(c.frames, fd_side) for c in clips])

    def audio(self, clip: EvalClip) -> np.ndarray:
        """The window's own audio (the context cut off), sample 0 at its first frame."""
        start = self.context * SAMPLES_PER_FRAME
        return clip.audio[start:start + len(clip.frames) * SAMPLES_PER_FRAME].numpy()

    def score_frames(self, videos: list[np.ndarray]) -> dict:
        """Oracle sync and FD of generated (or real) videos, one per eval clip."""
        from fada.metrics.frechet import frechet_distance, gaussian_stats

        oracle = [self.oracle.score_or_reason(v, self.audio(c)) for v, c in zip(videos, self.clips)]
        scored = [o for o in oracle if "oracle_sync" in o]
        reasons = sorted({o["oracle_error"] for o in oracle if "oracle_error" in o})
        try:
            generated = np.concatenate([frame_features(v, self.fd_side) for v in videos])
            fd = frechet_distance(*gaussian_stats(generated), *gaussian_stats(self.real_features))
        except ValueError as error:  # too few frames for a covariance, or sqrtm failed: recorded, not fatal
            fd, reasons = math.nan, reasons + [f"FD: {error}"]
        return {"oracle_sync": float(np.mean([o["oracle_sync"] for o in scored])) if scored else math.nan,
                "oracle_shuffled": float(np.mean([o["oracle_shuffled"] for o in scored])) if scored else math.nan,
                "oracle_scored": f"{len(scored)}/{len(oracle)}", "fd": fd, "reasons": reasons}

    def real(self) -> dict:
        """The rendered windows themselves (the ceiling of sync, FD 0 by construction)."""
        return self.score_frames([c.frames for c in self.clips])

    def __call__(self, pipe) -> dict:
        latents, nfe, videos, seconds = [], [], [], 0.0
        for clip in self.clips:
            tick = time.perf_counter()
            clip_latents, clip_nfe = generate_latents(pipe, clip, self.seed)
            videos.append(pipe.decode_frames(clip_latents.to(pipe.device, pipe.dtype), pipe.codec.size))
            seconds += time.perf_counter() - tick
            latents.append(clip_latents)
            nfe.append(clip_nfe)
        if self.reference is None:  # the teacher is being scored: its latents are every later model's reference
            self.reference = latents
        distance = [float((x - ref).pow(2).mean()) for x, ref in zip(latents, self.reference)]
        video_seconds = sum(len(v) for v in videos) / FPS
        return {"distance": float(np.mean(distance)), "nfe": float(np.mean(nfe)),
                "gen_s_per_s": seconds / video_seconds, **self.score_frames(videos)}
