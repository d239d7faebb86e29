"""Inference: portrait + audio → video, clip by clip, for the teacher and the distilled student's two modes.

| mode       | scheduler                  | steps | passes per step                         | NFE-D |
| ---------- | -------------------------- | ----- | --------------------------------------- | ----- |
| `teacher`  | DDIM (SD1.5 settings)      | 25    | 3: ε(r,a), ε(r,∅), ε(∅,∅) in one batch  | 75    |
| `balanced` | PeRFlow (DESIGN.md step 9) | 6     | 3, combined with multi-CFG (eq. 9)      | 18    |
| `fast`     | PeRFlow                    | 6     | 1, the scales fed to the CFG layers     | 6     |

Per video: the reference net runs once (with the reference, and once on the empty reference for ε(∅,∅)).
Per clip of F frames: the reference net encodes the motion frames (and, for three passes, the empty ones of
ε(∅,∅)); noise → denoised latents → decoded frames; the clip's last ``num_motion_frames`` latents become the
next clip's motion frames (a first clip has none: `fada.motion_frames.no_motion`), so any audio length
works and memory stays bounded. `NFECounter` counts denoising-net evaluations; ``nfe_per_clip`` is NFE-D.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

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


def make_scheduler(mode: str):
    """DDIM with SD1.5's inference settings for the teacher, PeRFlow (K = 4 windows) for the student."""
    if mode == "teacher":
        from diffusers import DDIMScheduler

        return DDIMScheduler(**SD15_SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    from fada.perflow_scheduler import PeRFlowScheduler

    return PeRFlowScheduler()


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
                 channels_last: bool | None = None):
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: use one of {', '.join(MODES)}")
        defaults = MODE_DEFAULTS[mode]
        self.model, self.codec, self.mode = model, codec, mode
        self.steps = num_inference_steps or defaults["num_inference_steps"]
        self.passes = defaults["passes"]
        self.s_r = defaults["guidance_reference"] if guidance_reference is None else guidance_reference
        self.s_a = defaults["guidance_audio"] if guidance_audio is None else guidance_audio
        self.clip_frames, self.output_size = clip_frames, output_size or codec.size
        self.scheduler = make_scheduler(mode)
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
        """Load a checkpoint; ``tiny_decoder`` (a local `AutoencoderTiny` directory) replaces the SD decoder."""
        from fada.checkpoint import load_inference_checkpoint
        from fada.codec import load_tiny_decoder

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, codec, meta = load_inference_checkpoint(path, device, dtype)
        if tiny_decoder:
            if codec.kind != "vae":
                raise ValueError("--tiny-decoder applies to VAE checkpoints; this one works on pixels")
            codec.use_tiny_decoder(load_tiny_decoder(tiny_decoder).to(device=device, dtype=dtype))
        check_mode(meta, mode, path)
        clip_frames = kwargs.pop("clip_frames", None) or meta.get("config", {}).get("train", {}).get("num_frames", 16)
        return cls(model, codec, mode, clip_frames=clip_frames, **kwargs)

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
    def frames(self, portrait: np.ndarray, audio_stream, *, seed: int = 0, progress: bool = False):
        """Yield (H, W, 3) uint8 frames for the whole audio, clip by clip."""
        from tqdm.auto import tqdm

        model, codec = self.model, self.codec
        image = torch.from_numpy(portrait).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(self.device)
        reference = codec.encode(image).to(self.dtype)
        bank_one, bank_cfg = self.reference_banks(reference)
        bank = bank_cfg if self.passes == 3 else bank_one
        motion = no_motion(reference, model.config.num_motion_frames)
        generator = torch.Generator(self.device).manual_seed(seed)
        total = audio_stream.n_frames
        clips = audio_stream.frames_audio(model.audio_context_frames, self.clip_frames)
        for first, audio in tqdm(clips, total=-(-total // self.clip_frames), desc=f"generate ({self.mode})",
                                 disable=not progress):
            latents = self.denoise_clip(motion, torch.from_numpy(audio), bank, generator)
            motion = latents[:, -model.config.num_motion_frames:]
            images = codec.decode(latents[0].to(codec_dtype(codec, self.dtype)), self.output_size)
            images = ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            yield from images[: max(0, min(self.clip_frames, total - first))]

    def generate(self, image_path: str | os.PathLike, audio_path: str | os.PathLike, out_path: str | os.PathLike, *,
                 seed: int = 0, progress: bool = True) -> GenerationResult:
        """Write ``out_path`` (mp4, 25 fps, the audio muxed in) and report frames, NFE and time."""
        from fada.media import AudioStream, VideoWithAudioWriter, load_portrait

        portrait = load_portrait(image_path, max(self.codec.size, self.output_size))  # the codec resizes to its input
        audio = AudioStream(audio_path)
        writer = VideoWithAudioWriter(out_path, self.output_size)
        self.nfe.reset()
        start = time.perf_counter()
        try:
            for frame in self.frames(portrait, audio, seed=seed, progress=progress):
                writer.write(frame)
            path = writer.close(audio.blocks())
        except BaseException:
            writer.abort()
            raise
        seconds = time.perf_counter() - start
        clips = -(-audio.n_frames // self.clip_frames)
        return GenerationResult(writer.frames_written, clips, self.nfe.total, self.nfe.total / clips, seconds, str(path))


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

