"""GPU check and benchmark of the model (issues #6, #7 and #17): SD1.5-sized dual-UNet, random weights, bf16.

Sections (``--sections``, default all), on one card, in one run:
* ``train`` — one teacher training step (ε loss, AdamW, autocast bf16 over fp32 weights) at 16 frames 512²
  (+2 motion frames): time and peak memory, with and without gradient checkpointing;
* ``distill`` — one distillation step (`benchmarks/train_sections.py`): solver steps per window 8 and 2, CFG
  distilled (``layer-tokens``: 3 teacher passes per solver step) and not (``none``: 1): time, peak memory, and
  the largest batch that fits (``--memory-cap-gib 80`` emulates an 80 GB card on a larger one);
* ``generation`` — end-to-end frames/s (reference net once, audio encoder, denoising, decode, frames to the CPU
  as uint8) for teacher (25 × 3 = 75 NFE-D), balanced (6 × 3 = 18) and fast (6 × 1 = 6), once per decoder in
  ``--decoders`` (``sd_vae``, ``tiny``: AutoencoderTiny, random weights) with the same decoder and the same
  optimisations (``--compile``, ``--channels-last``) for every mode, so the speedups compare like with like;
* ``parts`` — what bounds fast: ms per NFE, reference net, SD VAE and tiny decoder for 16 frames;
* ``loader`` — `ClipWindowDataset` windows/s with ``--loader-workers`` DataLoader workers (float32, and uint8
  frames for conversion on the GPU) against the windows/s the teacher and distillation steps consume.

``--tiny`` runs the same code with the tiny configuration on CPU (small sizes; what the tests run).
Prints one JSON object (partial ones as sections finish); results are recorded in docs/benchmarks.md with the card.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.train_sections import distill_step_benchmark, largest_batch, loader_benchmark  # noqa: E402
from fada.config import load_config  # noqa: E402
from fada.model import FadaModel, student_from_teacher  # noqa: E402
from filters.media_contract import SAMPLES_PER_FRAME  # noqa: E402

SECTIONS = ("train", "distill", "generation", "parts", "loader")

WAV2VEC2_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


class SilenceStream:
    """In-memory audio of ``n_frames`` frames (low noise) in the interface `FadaPipeline.frames` reads."""

    def __init__(self, n_frames: int):
        self.n_frames = n_frames

    def frames_audio(self, context, clip):
        rng = np.random.default_rng(0)
        for first in range(0, self.n_frames, clip):
            yield first, (rng.standard_normal((clip + 2 * context) * SAMPLES_PER_FRAME) * 0.05).astype(np.float32)


def build(tiny: bool, device, dtype):
    from fada.codec import make_codec

    config = load_config("tiny" if tiny else "sd15")
    if not tiny:
        from transformers import Wav2Vec2Config

        config["model"]["audio"] = {"kind": "wav2vec2", "num_tokens": 32, "hidden_dim": 512, "context_frames": 2,
                                    "wav2vec2_config": Wav2Vec2Config(**WAV2VEC2_BASE).to_dict()}
    torch.manual_seed(0)
    model = FadaModel(**config["model"])
    return config, model, make_codec(**config["codec"])


def training_step_benchmark(config, model, codec, device, frames: int, checkpointing: bool) -> dict:
    from fada.train_teacher import TeacherObjective, TeacherTrainConfig
    from fada.training import autocast

    model.train().to(device=device, dtype=torch.float32)
    if checkpointing:
        model.enable_gradient_checkpointing()
    else:
        model.reference_net.disable_gradient_checkpointing()
        model.denoising_net.disable_gradient_checkpointing()
    objective = TeacherObjective(model, TeacherTrainConfig(num_frames=frames))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    side = codec.size // 8 if codec.kind == "vae" else codec.size
    motion = model.config.num_motion_frames
    latents = torch.randn(1, motion + frames, model.latent_channels, side, side, device=device)
    audio = torch.randn(1, (frames + 4) * SAMPLES_PER_FRAME, device=device) * 0.1
    generator = torch.Generator(device).manual_seed(0)
    precision = "bf16" if device.type == "cuda" else "no"

    def step():
        with autocast(precision, device):
            loss = objective(latents, latents[:, motion], audio, generator).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = timed(step, device, repeats=3)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    model.reference_net.disable_gradient_checkpointing()
    model.denoising_net.disable_gradient_checkpointing()
    return {"seconds": statistics.median(times), "peak_gib": round(peak, 2), "gradient_checkpointing": checkpointing}


def use_decoder(codec, decoder: str, device, dtype) -> None:
    """Decode with the SD VAE (``sd_vae``) or an `AutoencoderTiny` of TAESD's size, random weights (``tiny``)."""
    if codec.kind != "vae":
        return
    from diffusers import AutoencoderTiny

    codec.tiny_decoder = None
    if decoder == "tiny":
        codec.use_tiny_decoder(AutoencoderTiny().to(device, dtype))


def generation_benchmark(model, student, codec, device, dtype, clip_frames: int, clips: int, size: int,
                         channels_last: bool | None) -> dict:
    """frames/s of the three modes with the codec's current decoder; speedups against the teacher in this run."""
    from fada.pipeline import FadaPipeline

    portrait = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    results = {}
    for mode, net in (("teacher", model), ("balanced", student), ("fast", student)):
        pipeline = FadaPipeline(net, codec, mode, clip_frames=clip_frames, output_size=size, channels_last=channels_last)
        frames_total = clip_frames * clips

        def run():
            pipeline.nfe.reset()
            count = sum(1 for _ in pipeline.frames(portrait, SilenceStream(frames_total), seed=0))
            assert count == frames_total

        start = time.perf_counter()
        run()  # warm-up (compilation, when compiled)
        first = time.perf_counter() - start
        seconds = statistics.median(timed(run, device, repeats=2 if mode == "teacher" else 3, warmup=0))
        results[mode] = {"frames_per_s": round(frames_total / seconds, 2), "seconds_per_clip": round(seconds / clips, 4),
                         "nfe_per_clip": pipeline.nfe.total / clips, "first_run_seconds": round(first, 1)}
    results["speedup_fast_vs_teacher"] = round(results["fast"]["frames_per_s"] / results["teacher"]["frames_per_s"], 2)
    results["speedup_balanced_vs_teacher"] = round(results["balanced"]["frames_per_s"] / results["teacher"]["frames_per_s"], 2)
    results["nfe_ratio_fast"] = 75 / 6
    results["nfe_ratio_balanced"] = round(75 / 18, 2)
    return results


def parts_benchmark(student, codec, device, dtype, clip_frames: int) -> dict:
    motion = student.config.num_motion_frames
    side = codec.size // 8 if codec.kind == "vae" else codec.size
    latents = torch.randn(1, motion + clip_frames, student.latent_channels, side, side, device=device, dtype=dtype)
    with torch.no_grad():
        bank = student.encode_conditions(latents[:, 0], latents[:, :motion])
        tokens = student.encode_audio(torch.randn(1, (clip_frames + 4) * SAMPLES_PER_FRAME, device=device, dtype=dtype), clip_frames)
        scales = (torch.full((1,), 6.5, device=device), torch.full((1,), 2.0, device=device))
        t = torch.tensor([500], device=device)
        nfe = lambda: student(latents[:, motion:], t, tokens, bank, cfg_scales=scales)  # noqa: E731
        out = {"ms_per_nfe_1pass": round(1000 * statistics.median(timed(nfe, device, 5)), 1)}
        out["ms_reference_net"] = round(1000 * statistics.median(timed(lambda: student.encode_reference(latents[:, 0]), device, 5)), 1)
        decode = lambda: codec.decode(latents[0, motion:])  # noqa: E731
        out["ms_sd_vae_decode_16"] = round(1000 * statistics.median(timed(decode, device, 3)), 1)
        if device.type == "cuda":
            from diffusers import AutoencoderTiny

            tiny = AutoencoderTiny().to(device, dtype).eval()
            out["ms_tiny_decoder_16"] = round(1000 * statistics.median(
                timed(lambda: tiny.decode(latents[0, motion:]).sample, device, 5)), 1)
    vae_ms = out["ms_sd_vae_decode_16"] * clip_frames / 16
    out["fast_fps_bound_sd_vae"] = round(clip_frames / ((6 * out["ms_per_nfe_1pass"] + vae_ms) / 1000), 1)
    if "ms_tiny_decoder_16" in out:
        out["fast_fps_bound_tiny_decoder"] = round(
            clip_frames / ((6 * out["ms_per_nfe_1pass"] + out["ms_tiny_decoder_16"]) / 1000), 1)
    return out


def compile_nets(models, mode: str | None) -> None:
    """torch.compile every network the generation loop runs per step (the denoising nets), once each."""
    for model in models:
        model.denoising_net = torch.compile(model.denoising_net, mode=mode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny configuration on CPU, small sizes (smoke test)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--decoders", default="sd_vae,tiny", help="generation decoders: sd_vae, tiny (VAE configs only)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the denoising nets for every mode")
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune (CUDA graphs)")
    parser.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                        help="channels-last convolution weights in generation (auto: on CPU)")
    parser.add_argument("--clips", type=int, default=3, help="clips per generated video")
    parser.add_argument("--distill-batch-limit", type=int, default=32, help="largest batch the distill search tries")
    parser.add_argument("--memory-cap-gib", type=float, default=None, help="cap GPU memory (emulate an 80 GB card)")
    parser.add_argument("--step-times-from", default=None,
                        help="a JSON report of an earlier run whose train/distill step times the loader section compares with")
    parser.add_argument("--loader-workers", default=None, help="DataLoader worker counts (default 0,4,8,12 / tiny 0,2)")
    args = parser.parse_args()
    sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; use {','.join(SECTIONS)}")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if args.memory_cap_gib and device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory / 2**30
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_cap_gib / total))
    clip_frames = 4 if args.tiny else 16
    config, model, codec = build(args.tiny, device, dtype)
    side = codec.size // 8 if codec.kind == "vae" else codec.size
    report = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
              "config": "tiny" if args.tiny else "sd15 (random weights)", "frames_per_clip": clip_frames,
              "params_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
              "memory_cap_gib": args.memory_cap_gib, "cpu_threads": torch.get_num_threads()}
    show = lambda: print(json.dumps(report), flush=True)  # noqa: E731
    if "train" in sections:
        report["train_step"] = []
        for checkpointing in (True, False):
            try:
                report["train_step"].append(training_step_benchmark(config, model, codec, device, clip_frames, checkpointing))
            except torch.cuda.OutOfMemoryError:
                report["train_step"].append({"gradient_checkpointing": checkpointing, "out_of_memory": True})
                torch.cuda.empty_cache()
        show()
    if "distill" in sections:
        teacher = model.to(device=device, dtype=torch.float32).eval()  # as distill_student loads it (fp32 + autocast)
        report["distill_step"] = [  # --tiny: 16² latents, one timed step after the warm-up (smoke test)
            distill_step_benchmark(teacher, device, timed, frames=clip_frames, side=16 if args.tiny else side,
                                   solver_steps=steps, cfg_variant=variant, repeats=1 if args.tiny else 3)
            for steps in (8, 2) for variant in ("layer-tokens", "none")]
        report["distill_largest_batch"] = {
            variant: largest_batch(teacher, device, limit=args.distill_batch_limit, frames=clip_frames, side=side,
                                   solver_steps=8, cfg_variant=variant, checkpointing=True)
            for variant in ("layer-tokens", "none")}
        show()
    if {"generation", "parts"} & set(sections):
        model.to(device=device, dtype=dtype).eval()
        codec.to(device=device, dtype=dtype)
        student = student_from_teacher(model, "layer-tokens").eval()
        channels_last = {"auto": None, "on": True, "off": False}[args.channels_last]
        if "parts" in sections:  # eager, before any compilation
            report["parts"] = parts_benchmark(student, codec, device, dtype, clip_frames)
            show()
        if "generation" in sections:
            if args.compile:
                compile_nets((model, student), args.compile_mode)
            decoders = [d for d in args.decoders.split(",") if d] if codec.kind == "vae" else ["pixel"]
            report["generation"] = {"compiled": args.compile, "compile_mode": args.compile_mode,
                                    "channels_last": args.channels_last}
            for decoder in decoders:
                use_decoder(codec, decoder, device, dtype)
                report["generation"][decoder] = generation_benchmark(model, student, codec, device, dtype, clip_frames,
                                                                     args.clips, codec.size, channels_last)
                show()
    if "loader" in sections:
        if args.step_times_from and Path(args.step_times_from).is_file():
            earlier = json.loads(Path(args.step_times_from).read_text() or "{}")
            report.setdefault("train_step", earlier.get("train_step", []))
            report.setdefault("distill_step", earlier.get("distill_step", []))
        steps = {"teacher_step": next((row["seconds"] for row in report.get("train_step", []) if "seconds" in row), None),
                 "distill_step_8_cfg": next((row["seconds"] for row in report.get("distill_step", []) if "seconds" in row), None)}
        workers = [int(n) for n in (args.loader_workers or ("0,2" if args.tiny else "0,4,8,12")).split(",")]
        report["loader"] = loader_benchmark(
            workers=workers, batch=1, frames=clip_frames, motion=model.config.num_motion_frames,
            size=64 if args.tiny else 512, n_clips=2 if args.tiny else 8, seconds=1.0 if args.tiny else 4.0,
            copies=2 if args.tiny else 8, step_seconds=steps, min_windows=8 if args.tiny else 96)
    print(json.dumps(report, indent=1), flush=True)


if __name__ == "__main__":
    main()
