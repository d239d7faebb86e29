"""GPU check and benchmark of the model (issues #6 and #7): SD1.5-sized dual-UNet, random weights, bf16.

Measures, on one card, in one run:
* one teacher training step (ε loss, AdamW, autocast bf16 over fp32 weights) at 16 frames 512² (+2 motion
  frames): time and peak memory, with and without gradient checkpointing;
* end-to-end generation frames/s (reference net once, audio encoder, denoising, SD VAE decode, frames to the
  CPU) for teacher (25 × 3 = 75 NFE-D), balanced (6 × 3 = 18) and fast (6 × 1 = 6), and the wall-clock
  speedups next to the NFE ratios 4.17 and 12.5;
* what bounds fast: time per NFE and per SD VAE decode of 16 frames, a tiny decoder (AutoencoderTiny, random)
  in its place, and optionally ``torch.compile`` of the denoising net (``--compile``).

``--tiny`` runs the same code with the tiny configuration on CPU (a smoke test of this script).
Prints one JSON object; results are recorded in docs/benchmarks.md with the card.
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

from fada.config import load_config  # noqa: E402
from fada.model import FadaModel, student_from_teacher  # noqa: E402

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
            yield first, (rng.standard_normal((clip + 2 * context) * 640) * 0.05).astype(np.float32)


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
    audio = torch.randn(1, (frames + 4) * 640, device=device) * 0.1
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


def generation_benchmark(model, student, codec, device, dtype, clip_frames: int, clips: int, size: int) -> dict:
    from fada.pipeline import FadaPipeline

    portrait = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    results = {}
    for mode, net in (("teacher", model), ("balanced", student), ("fast", student)):
        pipeline = FadaPipeline(net, codec, mode, clip_frames=clip_frames, output_size=size)
        frames_total = clip_frames * clips

        def run():
            pipeline.nfe.reset()
            count = sum(1 for _ in pipeline.frames(portrait, SilenceStream(frames_total), seed=0))
            assert count == frames_total

        times = timed(run, device, repeats=2 if mode == "teacher" else 3)
        seconds = statistics.median(times)
        results[mode] = {"frames_per_s": round(frames_total / seconds, 2), "seconds_per_clip": round(seconds / clips, 4),
                         "nfe_per_clip": pipeline.nfe.total / clips}
    results["speedup_fast_vs_teacher"] = round(results["fast"]["frames_per_s"] / results["teacher"]["frames_per_s"], 2)
    results["speedup_balanced_vs_teacher"] = round(results["balanced"]["frames_per_s"] / results["teacher"]["frames_per_s"], 2)
    results["nfe_ratio_fast"] = 75 / 6
    results["nfe_ratio_balanced"] = round(75 / 18, 2)
    return results


def parts_benchmark(student, codec, device, dtype, clip_frames: int, compile_net: bool) -> dict:
    motion = student.config.num_motion_frames
    side = codec.size // 8 if codec.kind == "vae" else codec.size
    latents = torch.randn(1, motion + clip_frames, student.latent_channels, side, side, device=device, dtype=dtype)
    with torch.no_grad():
        bank = student.encode_reference(latents[:, 0])
        tokens = student.encode_audio(torch.randn(1, (clip_frames + 4) * 640, device=device, dtype=dtype), clip_frames)
        scales = (torch.full((1,), 6.5, device=device), torch.full((1,), 2.0, device=device))
        t = torch.tensor([500], device=device)
        nfe = lambda: student(latents, t, tokens, bank, cfg_scales=scales)  # noqa: E731
        out = {"ms_per_nfe_1pass": round(1000 * statistics.median(timed(nfe, device, 5)), 1)}
        out["ms_reference_net"] = round(1000 * statistics.median(timed(lambda: student.encode_reference(latents[:, 0]), device, 5)), 1)
        decode = lambda: codec.decode(latents[0, motion:])  # noqa: E731
        out["ms_sd_vae_decode_16"] = round(1000 * statistics.median(timed(decode, device, 3)), 1)
        if device.type == "cuda":
            from diffusers import AutoencoderTiny

            tiny = AutoencoderTiny().to(device, dtype).eval()
            out["ms_tiny_decoder_16"] = round(1000 * statistics.median(
                timed(lambda: tiny.decode(latents[0, motion:]).sample, device, 5)), 1)
        if compile_net:
            start = time.perf_counter()
            student.denoising_net = torch.compile(student.denoising_net)
            nfe()
            sync(device)
            out["compile_seconds"] = round(time.perf_counter() - start, 1)
            out["ms_per_nfe_1pass_compiled"] = round(1000 * statistics.median(timed(nfe, device, 5)), 1)
    vae_ms = out["ms_sd_vae_decode_16"] * clip_frames / 16
    out["fast_fps_bound_sd_vae"] = round(clip_frames / ((6 * out["ms_per_nfe_1pass"] + vae_ms) / 1000), 1)
    if "ms_tiny_decoder_16" in out:
        out["fast_fps_bound_tiny_decoder"] = round(
            clip_frames / ((6 * out["ms_per_nfe_1pass"] + out["ms_tiny_decoder_16"]) / 1000), 1)
    if "ms_per_nfe_1pass_compiled" in out and "ms_tiny_decoder_16" in out:
        out["fast_fps_bound_compiled_tiny_decoder"] = round(
            clip_frames / ((6 * out["ms_per_nfe_1pass_compiled"] + out["ms_tiny_decoder_16"]) / 1000), 1)
    return out


def fast_variants(student, codec, device, dtype, clip_frames: int, clips: int, size: int, tiny: bool) -> dict:
    """End-to-end fast-mode frames/s with the SD decoder, a tiny decoder, and a tiny decoder + torch.compile."""
    from diffusers import AutoencoderTiny

    from fada.pipeline import FadaPipeline

    portrait = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    results = {}
    for name in ("sd_vae", "tiny_decoder", "tiny_decoder_compiled"):
        if name != "sd_vae" and codec.kind == "vae":
            codec.tiny_decoder = AutoencoderTiny().to(device, dtype).eval()
        pipeline = FadaPipeline(student, codec, "fast", clip_frames=clip_frames, output_size=size,
                                compile=name.endswith("compiled") and not tiny)
        frames_total = clip_frames * clips
        run = lambda: sum(1 for _ in pipeline.frames(portrait, SilenceStream(frames_total), seed=0))  # noqa: E731
        start = time.perf_counter()
        run()
        warmup = time.perf_counter() - start
        seconds = statistics.median(timed(run, device, repeats=3, warmup=0))
        results[name] = {"frames_per_s": round(frames_total / seconds, 2), "first_run_seconds": round(warmup, 1)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny configuration on CPU (smoke test)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the denoising net")
    parser.add_argument("--clips", type=int, default=3, help="clips per generated video")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--fast-only", action="store_true",
                        help="only fast-mode generation: SD VAE, tiny decoder, tiny decoder + compiled denoising net")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    clip_frames = 4 if args.tiny else 16
    config, model, codec = build(args.tiny, device, dtype)
    report = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
              "config": "tiny" if args.tiny else "sd15 (random weights)", "frames_per_clip": clip_frames,
              "params_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 1)}
    if not args.skip_train:
        report["train_step"] = []
        for checkpointing in (True, False):
            try:
                report["train_step"].append(training_step_benchmark(config, model, codec, device, clip_frames, checkpointing))
            except torch.cuda.OutOfMemoryError:
                report["train_step"].append({"gradient_checkpointing": checkpointing, "out_of_memory": True})
                torch.cuda.empty_cache()
        print(json.dumps(report), flush=True)
    model.to(device=device, dtype=dtype).eval()
    codec.to(device=device, dtype=dtype)
    student = student_from_teacher(model, "layer-tokens").eval()
    size = codec.size
    if args.fast_only:
        report["fast_end_to_end"] = fast_variants(student, codec, device, dtype, clip_frames, args.clips, size, args.tiny)
        print(json.dumps(report, indent=1), flush=True)
        return
    report["generation"] = generation_benchmark(model, student, codec, device, dtype, clip_frames, args.clips, size)
    print(json.dumps(report), flush=True)
    report["parts"] = parts_benchmark(student, codec, device, dtype, clip_frames, args.compile)
    print(json.dumps(report, indent=1), flush=True)


if __name__ == "__main__":
    main()
