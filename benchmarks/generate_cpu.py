"""CPU generation of the tiny configuration (what `make demo` and the tests run): before/after in one run.

The demo's generation: a tiny teacher (`fada.config` preset ``tiny``: 32² pixel latents), clips of 8 frames
(+2 motion frames), 25 DDIM steps × 3 CFG passes, output 128². Each round runs one clip with
  * ``before`` — the pipeline as it was: convolution weights in torch's default (contiguous) layout;
  * ``after``  — the pipeline's CPU defaults: channels-last convolution weights, every available core;
interleaved, so both see the same load on a shared machine. Reports wall-clock and process CPU seconds per NFE
(CPU time is what a loaded machine distorts least), the after/before ratios, the FLOPs of one 3-pass NFE
(`torch.utils.flop_counter`) and the largest difference between the two outputs' frames (equivalence).

    .venv/bin/python benchmarks/generate_cpu.py [--rounds 3] [--threads N]
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

from benchmarks.model_gpu import SilenceStream  # noqa: E402
from fada.codec import PixelCodec  # noqa: E402
from fada.config import load_config  # noqa: E402
from fada.model import FadaModel  # noqa: E402
from fada.pipeline import FadaPipeline  # noqa: E402
from filters.media_contract import SAMPLES_PER_FRAME  # noqa: E402

CLIP_FRAMES, OUTPUT = 8, 128


def tiny_model() -> FadaModel:
    torch.manual_seed(0)
    return FadaModel(**load_config("tiny")["model"]).eval()


def nfe_gflop(model: FadaModel) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    motion = model.config.num_motion_frames
    latents = torch.randn(3, CLIP_FRAMES, 3, 32, 32)
    with torch.no_grad():
        bank = model.encode_conditions(torch.randn(3, 3, 32, 32), torch.randn(3, motion, 3, 32, 32))
        tokens = model.encode_audio(torch.randn(3, (CLIP_FRAMES + 4) * SAMPLES_PER_FRAME), CLIP_FRAMES)
        with FlopCounterMode(display=False) as counter:
            model(latents, torch.full((3,), 500), tokens, bank)
    return counter.get_total_flops() / 1e9


def one_clip(pipeline: FadaPipeline, portrait: np.ndarray) -> tuple[np.ndarray, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    frames = np.stack(list(pipeline.frames(portrait, SilenceStream(CLIP_FRAMES), seed=0)))
    return frames, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for 'before' (default: torch's)")
    args = parser.parse_args()
    threads_before = args.threads or torch.get_num_threads()
    portrait = (np.random.default_rng(0).random((OUTPUT, OUTPUT, 3)) * 255).astype(np.uint8)
    before_model, after_model = tiny_model(), tiny_model()
    gflop = nfe_gflop(before_model)
    torch.set_num_threads(threads_before)
    before = FadaPipeline(before_model, PixelCodec(32), "teacher", clip_frames=CLIP_FRAMES, output_size=OUTPUT,
                          channels_last=False)
    torch.set_num_threads(threads_before)  # the constructor set the available cores: restore for 'before'
    times = {"before": [], "after": []}
    outputs = {}
    for _ in range(args.rounds):
        for name in ("before", "after"):
            if name == "before":
                torch.set_num_threads(threads_before)
                pipeline = before
            else:
                pipeline = FadaPipeline(after_model, PixelCodec(32), "teacher", clip_frames=CLIP_FRAMES,
                                        output_size=OUTPUT)
            outputs[name], wall, cpu = one_clip(pipeline, portrait)
            times[name].append((wall, cpu))
    nfe = 25  # 3-pass NFEs per clip
    report = {"machine": "shared 2-core VM" if (torch.get_num_threads() <= 2) else "cpu",
              "threads_before": threads_before, "threads_after": torch.get_num_threads(),
              "gflop_per_3pass_nfe": round(gflop, 2)}
    for name, rows in times.items():
        report[name] = {"wall_s_per_nfe": round(statistics.median(w for w, _ in rows) / nfe, 3),
                        "cpu_s_per_nfe": round(statistics.median(c for _, c in rows) / nfe, 3),
                        "best_wall_s_per_nfe": round(min(w for w, _ in rows) / nfe, 3)}
    report["after_over_before_wall"] = round(report["before"]["wall_s_per_nfe"] / report["after"]["wall_s_per_nfe"], 2)
    report["after_over_before_cpu"] = round(report["before"]["cpu_s_per_nfe"] / report["after"]["cpu_s_per_nfe"], 2)
    report["demo_seconds_estimate_after"] = round(7 * nfe * report["after"]["best_wall_s_per_nfe"], 1)  # 2 s, 7 clips
    diff = np.abs(outputs["before"].astype(int) - outputs["after"].astype(int))
    report["max_frame_difference"] = int(diff.max())
    report["mean_frame_difference"] = round(float(diff.mean()), 4)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
