"""Inference: portrait + audio → video, clip by clip, for the teacher and the distilled student's two modes.

| mode       | scheduler                  | steps | passes per step                         | NFE-D |
| ---------- | -------------------------- | ----- | --------------------------------------- | ----- |
| `teacher`  | DDIM (SD1.5 settings)      | 25    | 3: ε(r,a), ε(r,∅), ε(∅,∅) in one batch  | 75    |
| `balanced` | PeRFlow (DESIGN.md step 9) | 6     | 3, combined with multi-CFG (eq. 9)      | 18    |
| `fast`     | PeRFlow                    | 6     | 1, the scales fed to the CFG layers     | 6     |

Each checkpoint carries the scheduler it samples with (``scheduler/scheduler_config.json``, diffusers'
layout; `checkpoint_scheduler`), and its configuration's ``sample`` section holds the defaults of its own mode
(`sample_defaults`: the teacher mode for a teacher, fast for a student); arguments given explicitly win over
both, and ``MODE_DEFAULTS`` fills what neither gives.

Per video: the reference net runs once (with the reference, and once on the empty reference for ε(∅,∅)).
Per clip of F frames: the reference net encodes the motion frames (and, for three passes, the empty ones of
ε(∅,∅)); noise → denoised latents → decoded frames; the clip's last ``num_motion_frames`` latents become the
next clip's motion frames (a first clip has none: `fada.motion_frames.no_motion`), so any audio length
works and memory stays bounded. `NFECounter` counts denoising-net evaluations; ``nfe_per_clip`` is NFE-D.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fada.guidance import NFECounter, cfg_bank, multi_cfg, split_cfg_batch
from fada.motion_frames import no_motion
from fada.noise_schedule import SD15_SCHEDULE

MODES = ("teacher", "balanced", "fast")
MODE_DEFAULTS = {
    "teacher": {"num_inference_steps": 25, "passes": 3, "guidance_reference": 2.5, "guidance_audio": 6.5},
    "balanced": {"num_inference_steps": 6, "passes": 3, "guidance_reference": 2.5, "guidance_audio": 6.5},
    "fast": {"num_inference_steps": 6, "passes": 1, "guidance_reference": 2.0, "guidance_audio": 6.5},
}
SAMPLE_KEYS = ("num_inference_steps", "guidance_reference", "guidance_audio")  # what a `sample` section may set
OWN_MODE = {"teacher": "teacher", "student": "fast"}  # the mode a checkpoint kind's `sample` section is for


def student_modes(cfg_variant: str) -> tuple[str, ...]:
    """The modes a student runs in: fast always; balanced (three passes combined with eq. 9) only when it was
    distilled without CFG conditioning. A CFG-distilled student learnt the guided teacher with both conditions
    present and the scales in its CFG layers (DESIGN.md §3 step 8); it never saw a dropped condition, so the
    ε(r,∅) and ε(∅,∅) passes of balanced mode would run states it was never trained in."""
    return ("fast", "balanced") if cfg_variant == "none" else ("fast",)


def check_mode(meta: dict, mode: str, path) -> None:
    """ValueError (naming the checkpoint and what to do) when ``mode`` cannot run the checkpoint ``meta`` describes."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "teacher":
        return
    if meta.get("kind") != "student":
        raise ValueError(f"{path} holds a {meta.get('kind')}; modes balanced/fast need a distilled student")
    cfg_variant = meta.get("config", {}).get("model", {}).get("cfg_variant", "none")
    if mode not in student_modes(cfg_variant):
        raise ValueError(f"{path} was distilled with CFG conditioning ({cfg_variant}): it runs in fast mode, with the "
                         "guidance scales in its CFG layers; balanced mode needs a student distilled with --cfg none")


def make_scheduler(mode: str, num_time_windows: int = 4):
    """DDIM with SD1.5's inference settings for the teacher, PeRFlow with ``num_time_windows`` windows (the
    student's ``num_windows``) for the student's modes."""
    if mode == "teacher":
        from diffusers import DDIMScheduler

        return DDIMScheduler(**SD15_SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    from fada.perflow_scheduler import PeRFlowScheduler

    return PeRFlowScheduler(num_time_windows=num_time_windows)


def checkpoint_scheduler(directory: str | os.PathLike, mode: str, meta: dict):
    """The scheduler ``mode`` samples the checkpoint in ``directory`` with: the one saved in its ``scheduler/``
    when that is the class the mode uses (DDIM for teacher, PeRFlow for balanced/fast), as a diffusers pipeline
    loads its own. Otherwise the mode's default (`make_scheduler`): for checkpoints written before schedulers
    were saved, a student's PeRFlow gets the ``num_windows`` it was distilled with (its ``config.train``; 4 when
    not recorded); a student sampled in teacher mode gets SD1.5's DDIM."""
    from fada.checkpoint import SCHEDULER_DIR

    default = make_scheduler(mode, meta.get("config", {}).get("train", {}).get("num_windows", 4))
    config_path = Path(directory) / SCHEDULER_DIR / type(default).config_name
    if config_path.is_file() and json.loads(config_path.read_text()).get("_class_name") == type(default).__name__:
        return type(default).from_pretrained(config_path.parent)
    return default


def sample_defaults(meta: dict, mode: str) -> dict:
    """Sampling defaults of ``mode`` for the checkpoint ``meta`` describes: its configuration's ``sample`` section
    when ``mode`` is the checkpoint's own (`OWN_MODE`), else none (``MODE_DEFAULTS`` apply). ValueError for a
    key the section may not set."""
    if OWN_MODE.get(meta.get("kind")) != mode:
        return {}
    section = dict(meta.get("config", {}).get("sample") or {})
    unknown = sorted(set(section) - set(SAMPLE_KEYS))
    if unknown:
        raise ValueError(f"sample section: unknown keys {unknown}; allowed: {list(SAMPLE_KEYS)}")
    return section


@dataclass
class GenerationResult:
    frames: int
    clips: int
    nfe_total: int
    nfe_per_clip: float
    seconds: float
    path: str | None = None
    timings: dict = field(default_factory=dict)

    @property
    def seconds_per_video_second(self) -> float:
        return self.seconds / max(self.frames / 25, 1e-9)


class FadaPipeline:
    """Multi-CFG sampling of a `FadaModel`; ``mode`` picks scheduler, steps and passes (table above)."""

    def __init__(self, model, codec, mode: str = "teacher", *, num_inference_steps: int | None = None,
                 guidance_reference: float | None = None, guidance_audio: float | None = None,
                 clip_frames: int = 16, output_size: int | None = None, compile: bool = False,
                 channels_last: bool | None = None, scheduler=None, sample: dict | None = None):
        """``scheduler``: default `make_scheduler(mode)`; ``sample``: defaults over ``MODE_DEFAULTS[mode]`` (keys
        `SAMPLE_KEYS`), under the explicit arguments."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: use one of {', '.join(MODES)}")
        defaults = {**MODE_DEFAULTS[mode], **(sample or {})}
        self.model, self.codec, self.mode = model, codec, mode
        self.steps = num_inference_steps or defaults["num_inference_steps"]
        self.passes = defaults["passes"]
        self.s_r = defaults["guidance_reference"] if guidance_reference is None else guidance_reference
        self.s_a = defaults["guidance_audio"] if guidance_audio is None else guidance_audio
        self.clip_frames, self.output_size = clip_frames, output_size or codec.size
        self.scheduler = scheduler if scheduler is not None else make_scheduler(mode)
        self.nfe = NFECounter()
        if self.device.type == "cpu":
            use_available_cores()
        if channels_last if channels_last is not None else self.device.type == "cpu":
            for net in (model.reference_net, model.denoising_net):  # oneDNN's convolutions run without reorders
                net.to(memory_format=torch.channels_last)
        if compile and not isinstance(model.denoising_net, torch._dynamo.eval_frame.OptimizedModule):
            # ~30 % less per NFE on an H100 after ~75 s of compilation (docs/benchmarks.md)
            model.denoising_net = torch.compile(model.denoising_net)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, mode: str = "teacher", device: str | None = None,
                        dtype: torch.dtype = torch.float32, tiny_decoder: str | None = None, **kwargs) -> "FadaPipeline":
        """Load a checkpoint with its scheduler (`checkpoint_scheduler`) and sampling defaults (`sample_defaults`);
        ``tiny_decoder`` (a local `AutoencoderTiny` directory) replaces the SD decoder."""
        from fada.checkpoint import load_inference_checkpoint, resolve_checkpoint
        from fada.codec import load_tiny_decoder

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        directory = resolve_checkpoint(path)
        model, codec, meta = load_inference_checkpoint(directory, device, dtype)
        if tiny_decoder:
            if codec.kind != "vae":
                raise ValueError("--tiny-decoder applies to VAE checkpoints; this one works on pixels")
            codec.use_tiny_decoder(load_tiny_decoder(tiny_decoder).to(device=device, dtype=dtype))
        check_mode(meta, mode, path)
        clip_frames = kwargs.pop("clip_frames", None) or meta.get("config", {}).get("train", {}).get("num_frames", 16)
        return cls(model, codec, mode, clip_frames=clip_frames, scheduler=checkpoint_scheduler(directory, mode, meta),
                   sample=sample_defaults(meta, mode), **kwargs)

    @torch.no_grad()
    def reference_banks(self, reference: torch.Tensor) -> tuple[dict, dict]:
        """(bank for 1 pass, bank for the 3-pass batch [r, r, ∅]) — the reference net's only runs."""
        bank = self.model.encode_reference(reference)
        if self.passes == 1:
            return bank, bank
        empty = self.model.encode_reference(torch.zeros_like(reference))
        return bank, cfg_bank(bank, empty)

    @torch.no_grad()
    def clip_bank(self, reference_bank: dict, motion: torch.Tensor) -> dict:
        """A clip's bank: ``reference_bank`` (from `reference_banks`) joined with the motion frames' features;
        in the three-pass batch ε(∅,∅) gets the empty motion frames with the empty reference."""
        model = self.model
        if self.passes == 1:
            return model.join_banks(reference_bank, model.encode_motion(motion))
        motion_bank = model.encode_motion(torch.cat([motion, torch.zeros_like(motion)]))  # [m, ∅]
        conditional, empty = {k: v[:1] for k, v in motion_bank.items()}, {k: v[1:] for k, v in motion_bank.items()}
        return model.join_banks(reference_bank, cfg_bank(conditional, empty))

    @torch.no_grad()
    def denoise_clip(self, motion: torch.Tensor, audio: torch.Tensor, bank: dict, generator: torch.Generator) -> torch.Tensor:
        """Latents (1, F, C, h, w) of one clip given motion latents (1, M, C, h, w), its audio (with context) and
        the video's reference bank (`reference_banks`)."""
        model, frames = self.model, self.clip_frames
        bank = self.clip_bank(bank, motion)
        tokens = model.encode_audio(audio[None].to(self.device, self.dtype), frames)
        shape = (1, frames, *motion.shape[2:])
        latents = torch.randn(shape, generator=generator, device=self.device, dtype=self.dtype)
        self.scheduler.set_timesteps(self.steps, device=self.device)
        latents = latents * self.scheduler.init_noise_sigma
        if self.passes == 3:
            tokens = torch.cat([tokens, torch.zeros_like(tokens), torch.zeros_like(tokens)])
        scales = (torch.full((1,), self.s_a, device=self.device), torch.full((1,), self.s_r, device=self.device))
        for timestep in self.scheduler.timesteps:
            step_input = self.scheduler.scale_model_input(latents, timestep)
            t = timestep.reshape(1).to(self.device)
            if self.passes == 3:  # three CFG passes in one batch, combined with eq. 9
                eps = model(step_input.repeat(3, 1, 1, 1, 1), t.repeat(3), tokens, bank)
                eps = multi_cfg(*split_cfg_batch(eps), s_r=self.s_r, s_a=self.s_a)
            else:  # fast: one pass, the scales go to the CFG layers (DESIGN.md step 8)
                eps = model(step_input, t, tokens, bank, cfg_scales=scales)
            self.nfe.add(self.passes)
            latents = self.scheduler.step(eps, timestep, latents).prev_sample
        return latents

    @torch.no_grad()
    def latent_clips(self, image: torch.Tensor, clips, *, seed: int = 0):
        """The sampling loop: per clip, (first frame, latents (1, F, C, h, w)) of the video of the portrait
        ``image`` ((1, 3, H, W) in [-1, 1] at the codec's input size) over ``clips``, pairs (first frame, audio
        of the clip ± the audio encoder's context) as `AudioStream.frames_audio` gives them. The reference net
        runs once; each clip continues from the previous clip's last latents as motion frames (the first from
        the reference); one generator seeded with ``seed`` draws every clip's noise."""
        model = self.model
        reference = self.codec.encode(image.to(self.device)).to(self.dtype)
        bank_one, bank_cfg = self.reference_banks(reference)
        bank = bank_cfg if self.passes == 3 else bank_one
        motion = no_motion(reference, model.config.num_motion_frames)
        generator = torch.Generator(self.device).manual_seed(seed)
        for first, audio in clips:
            latents = self.denoise_clip(motion, torch.as_tensor(audio), bank, generator)
            motion = latents[:, -model.config.num_motion_frames:]
            yield first, latents

    @torch.no_grad()
    def decode_frames(self, latents: torch.Tensor, size: int | None = None) -> np.ndarray:
        """(T, size, size, 3) uint8 frames of latents (T, C, h, w); ``size`` defaults to ``output_size``."""
        images = self.codec.decode(latents.to(codec_dtype(self.codec, self.dtype)), size or self.output_size)
        return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    @torch.no_grad()
    def frames(self, portrait: np.ndarray, audio_stream, *, seed: int = 0, progress: bool = False):
        """Yield (H, W, 3) uint8 frames for the whole audio, clip by clip (`latent_clips`)."""
        from tqdm.auto import tqdm

        image = torch.from_numpy(portrait).permute(2, 0, 1)[None].float().div(127.5).sub(1)
        total = audio_stream.n_frames
        clips = audio_stream.frames_audio(self.model.audio_context_frames, self.clip_frames)
        for first, latents in tqdm(self.latent_clips(image, clips, seed=seed), total=-(-total // self.clip_frames),
                                   desc=f"generate ({self.mode})", disable=not progress):
            yield from self.decode_frames(latents[0])[: max(0, min(self.clip_frames, total - first))]

    def write_video(self, portrait: np.ndarray, audio_stream, out_path: str | os.PathLike, *, seed: int = 0,
                    progress: bool = False, keep_frames: list | None = None) -> GenerationResult:
        """Write the video of ``portrait`` ((H, W, 3) uint8) speaking ``audio_stream`` (an `AudioStream`) to
        ``out_path`` (mp4, 25 fps, the audio muxed in), nothing half-written on failure; ``keep_frames`` (a list)
        also receives the frames. ``seconds`` is the whole call; ``timings["frames"]`` the frame generation alone
        (not the encoding)."""
        from fada.media import VideoWithAudioWriter

        writer = VideoWithAudioWriter(out_path, self.output_size)
        self.nfe.reset()
        start, generating = time.perf_counter(), 0.0
        try:
            frames = self.frames(portrait, audio_stream, seed=seed, progress=progress)
            while True:
                tick = time.perf_counter()
                frame = next(frames, None)
                generating += time.perf_counter() - tick
                if frame is None:
                    break
                writer.write(frame)
                if keep_frames is not None:
                    keep_frames.append(frame)
            path = writer.close(audio_stream.blocks())
        except BaseException:
            writer.abort()
            raise
        seconds = time.perf_counter() - start
        clips = -(-audio_stream.n_frames // self.clip_frames)
        return GenerationResult(writer.frames_written, clips, self.nfe.total, self.nfe.total / clips, seconds, str(path),
                                timings={"frames": generating})

    def generate(self, image_path: str | os.PathLike, audio_path: str | os.PathLike, out_path: str | os.PathLike, *,
                 seed: int = 0, progress: bool = True) -> GenerationResult:
        """Write ``out_path`` (mp4, 25 fps, the audio muxed in) and report frames, NFE and time."""
        from fada.media import AudioStream, load_portrait

        portrait = load_portrait(image_path, max(self.codec.size, self.output_size))  # the codec resizes to its input
        return self.write_video(portrait, AudioStream(audio_path), out_path, seed=seed, progress=progress)


def use_available_cores() -> int:
    """Give torch every core this process may run on, unless OMP_NUM_THREADS says otherwise (Ray sets it to the
    task's CPUs in its workers); returns the thread count."""
    if "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if torch.get_num_threads() != cores:
            torch.set_num_threads(cores)
    return torch.get_num_threads()


def codec_dtype(codec, default: torch.dtype) -> torch.dtype:
    return codec.vae.dtype if codec.kind == "vae" else default

