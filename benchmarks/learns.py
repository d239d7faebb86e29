"""Does the teacher learn what it is for? The experiment that could say no (issue 15 item 6).

1. An oracle mouth reader (`fada.metrics.oracle_sync`) is trained on rendered generator speakers (seeds from
   ORACLE_SEED0) and its R² is measured on the held-out evaluation speakers at the model's frame size.
2. A teacher (`fada.train_teacher.train_teacher`, the ``tiny`` preset unless ``--config``) is trained on generated
   speakers 0..N−1 (`shards.synthetic_dataset.make_speaker_data_dir`), once per seed.
3. On HELD-OUT speakers (seeds from HELD_OUT_SEED0, never trained on) each model generates a video from the
   speaker's first frame (portrait) and its audio, as `FadaPipeline.frames` does (DDIM × 3 CFG passes), and
   is measured:
   * oracle sync (peak lagged correlation of the read mouth with the audio envelope), its lag, and the same
     video's shuffled-audio baseline;
   * identity: mean squared pixel distance of the frames to the own portrait over the mean distance to the
     other held-out speakers' portraits (< 1: closer to its own), and the share of frames nearest their own;
   * stability: sync (r at lag 0) over the first and the second half of the clip, and the distance to the
     portrait in the last second over the first (> 1: drifting away).
   Rows: the rendered video itself (the ceiling), the trained teacher, the same network untrained (step 0,
   the same seed's initialisation), and with ``--student-steps`` a PeRFlow student (fast: 6 NFE).
4. Per seed, the mean over held-out speakers; across seeds, mean ± 95 % t-interval. Printed as a markdown table
   and written to ``OUT/learns.json`` (``--doc PATH`` also writes the table into a markdown file).

    .venv/bin/python benchmarks/learns.py --steps 400 --seeds 3 [--device cuda --frame-size 64 --config FILE]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fada.ablation import machine_description  # noqa: E402
from fada.metrics.audio_probe import PROBE_TIMESTEPS, audio_probe  # noqa: E402
from fada.metrics.oracle_sync import (OracleSync, RenderedSpeaker, audio_envelope, load_regressor,  # noqa: E402
                                      per_window_correlation, predict_opening, r_squared, render_speakers,
                                      save_regressor, train_mouth_regressor)
from fada.stats import interval  # noqa: E402
from fada.training_plots import save_figure  # noqa: E402
from filters.strict_json import json_safe  # noqa: E402
from shards.atomic import atomic_write_json  # noqa: E402

ORACLE_SEED0, HELD_OUT_SEED0 = 5000, 9000
VIEW = "train"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="/tmp/fada-learns", help="working directory (reused: data, oracle)")
    parser.add_argument("--steps", type=int, default=400, help="teacher training steps per seed")
    parser.add_argument("--probe-every", type=int, default=0,
                        help="also run the audio probe every N steps on the way (a learning curve; 0: only at the end)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds − 1")
    parser.add_argument("--image-steps", type=int, default=0,
                        help="of --steps, the teacher's image stage (fada.train_teacher; 0: video stage only)")
    parser.add_argument("--image-batch-size", type=int, default=None, help="single frames per image-stage step")
    parser.add_argument("--combine", nargs="+", default=None, metavar="OUT",
                        help="instead of running: merge the seeds of these runs' learns.json (seeds run in parallel)")
    parser.add_argument("--train-speakers", type=int, default=12)
    parser.add_argument("--train-seconds", type=float, default=4.0)
    parser.add_argument("--held-out", type=int, default=3, help="held-out evaluation speakers (at least 2)")
    parser.add_argument("--eval-seconds", type=float, default=4.0)
    parser.add_argument("--inference-steps", type=int, default=25, help="teacher DDIM steps (× 3 CFG passes)")
    parser.add_argument("--student-steps", type=int, default=0, help="distil a student per seed (0: none)")
    parser.add_argument("--config", default="tiny", help="model preset or YAML file (fada.config)")
    parser.add_argument("--frame-size", type=int, default=None, help="pixel-codec frame size (default: the config's)")
    parser.add_argument("--num-frames", type=int, default=8, help="frames per training window / generated clip")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--oracle-speakers", type=int, default=6)
    parser.add_argument("--oracle-steps", type=int, default=400)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    parser.add_argument("--doc", default=None, help="write the markdown result into this file")
    args = parser.parse_args(argv)
    if args.held_out < 2:
        parser.error("--held-out must be at least 2 (identity compares with the other portraits)")
    return args


def teacher_config(args, seed: int) -> dict:
    from fada.config import load_config

    config = load_config(args.config)
    if args.frame_size:
        config["codec"]["size"] = args.frame_size
        config["model"]["unet"]["sample_size"] = args.frame_size
    train = config.setdefault("train", {})
    train.update(num_frames=args.num_frames, checkpoint_every=max(args.steps, 1), seed=seed,
                 ema_decay=min(train.get("ema_decay", 0.99), 1 - 10 / max(args.steps, 10)))
    if args.batch_size:
        train["batch_size"] = args.batch_size
    train["image_steps"] = args.image_steps
    if args.image_batch_size:
        train["image_batch_size"] = args.image_batch_size
    if args.learning_rate:
        train["learning_rate"] = args.learning_rate
    return config


# ---------------------------------------------------------------------------------------------------- metrics

def identity(frames: np.ndarray, portraits: list[np.ndarray], own: int) -> dict:
    """Distance ratio own/others and the share of frames nearest their own portrait: mean squared difference of
    8×8 thumbnails (pixels in 0..1), so the head's sway and the mouth count less than who and where it is."""
    x = thumbnails(frames)
    distances = np.stack([((x - thumbnails(p[None])) ** 2).mean(axis=(1, 2, 3)) for p in portraits], 1)
    others = np.delete(distances, own, axis=1)
    return {"identity_ratio": float(distances[:, own].mean() / others.mean()),
            "identity_nearest": float(np.mean(distances.argmin(1) == own)),
            "portrait_distance_per_s": [float(d) for d in per_second(distances[:, own])]}


def thumbnails(frames: np.ndarray, side: int = 8) -> np.ndarray:
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)
    return torch.nn.functional.interpolate(x, size=(side, side), mode="area").numpy()


def per_second(values: np.ndarray, fps: int = 25) -> np.ndarray:
    return np.array([values[i:i + fps].mean() for i in range(0, len(values) - fps + 1, fps)])


def video_scores(oracle: OracleSync, frames: np.ndarray, speaker: RenderedSpeaker, portraits, own: int) -> dict:
    mouth = predict_opening(oracle.regressor, frames)
    envelope = audio_envelope(speaker.audio, len(frames))
    scores = oracle.score_signals(mouth, envelope)
    half = len(frames) // 2
    scores["sync_first_half"] = float(per_window_correlation(mouth[:half], envelope[:half], half)[0])
    scores["sync_second_half"] = float(per_window_correlation(mouth[half:], envelope[half:], len(frames) - half)[0])
    scores["sync_per_s"] = [float(r) for r in per_window_correlation(mouth, envelope, 25)]
    scores.update(identity(frames, portraits, own))
    drift = scores["portrait_distance_per_s"]
    scores["drift"] = drift[-1] / max(drift[0], 1e-9)
    return scores


SUMMARY_KEYS = ("oracle_sync", "oracle_shuffled", "oracle_r_at_0", "sync_first_half", "sync_second_half",
                "identity_ratio", "identity_nearest", "drift")
PROBE_KEY = "probe_gap"  # `fada.metrics.audio_probe`: r(own audio) − r(other window's audio) of x̂0's mouth


def mean_over_speakers(rows: list[dict]) -> dict:
    out = {key: float(np.mean([row[key] for row in rows])) for key in SUMMARY_KEYS}
    out["lags"] = [row["oracle_lag"] for row in rows]
    return out


def probe_stops(steps: int, every: int, image_steps: int = 0) -> list[int]:
    """Where training pauses for a probe: every ``every`` steps after the image stage (which has no audio to
    probe, and runs in one go), and ``steps``."""
    return sorted({*range(every, steps, every), steps} - set(range(image_steps + 1))) if every > 0 else [steps]


# ------------------------------------------------------------------------------------------------- generation

@torch.no_grad()
def generate(pipe, speaker: RenderedSpeaker, wav: Path, seed: int) -> np.ndarray:
    from fada.media import AudioStream

    frames = np.stack(list(pipe.frames(speaker.frames[0], AudioStream(wav), seed=seed)))
    return frames[: len(speaker.frames)]


def write_wav(speaker: RenderedSpeaker, path: Path) -> Path:
    from shards.synthetic_dataset import encode_wav

    path.write_bytes(encode_wav(speaker.audio))
    return path


# ------------------------------------------------------------------------------------------------- experiment

def run(args) -> dict:
    from fada.checkpoint import load_inference_checkpoint
    from fada.pipeline import FadaPipeline
    from fada.train_teacher import build_model, train_teacher
    from shards.synthetic_dataset import make_speaker_data_dir

    if args.threads:  # FadaPipeline takes every core unless OMP_NUM_THREADS is set (slow on shared cores)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings, started = {}, time.perf_counter()
    size = teacher_config(args, 0)["codec"]["size"]

    # 1. the oracle and its accuracy on the held-out speakers at the model's frame size
    tick = time.perf_counter()
    held_out = render_speakers(range(HELD_OUT_SEED0, HELD_OUT_SEED0 + args.held_out), args.eval_seconds,
                               out / "held_out", size=size)
    weights = out / f"mouth_regressor_{args.oracle_speakers}x{args.oracle_steps}.safetensors"
    if weights.is_file():  # a previous run's, same speakers and steps
        regressor = load_regressor(weights)
    else:
        oracle_speakers = render_speakers(range(ORACLE_SEED0, ORACLE_SEED0 + args.oracle_speakers), 4.0, out / "oracle")
        regressor = train_mouth_regressor(oracle_speakers, steps=args.oracle_steps, seed=0)
        save_regressor(regressor, weights)
    truth = np.concatenate([s.mouth_open for s in held_out])
    oracle_r2 = r_squared(np.concatenate([predict_opening(regressor, s.frames) for s in held_out]), truth)
    oracle = OracleSync(regressor)
    timings["oracle"] = time.perf_counter() - tick
    print(f"oracle: R² {oracle_r2:.3f} on {args.held_out} held-out speakers at {size}² "
          f"({timings['oracle']:.0f} s)", flush=True)

    # 2. training data: generated speakers 0..N-1
    tick = time.perf_counter()
    data_dir = out / f"data_{args.train_speakers}x{args.train_seconds:g}s_{size}"
    if not (data_dir / "views" / f"{VIEW}.json").is_file():
        make_speaker_data_dir(data_dir, n_clips=args.train_speakers, size=size, duration_s=args.train_seconds,
                              view=VIEW)
    timings["data"] = time.perf_counter() - tick
    portraits = [s.frames[0] for s in held_out]
    wavs = [write_wav(s, out / "held_out" / f"speaker{s.seed}.wav") for s in held_out]

    def score_all(pipe, seed: int) -> dict:
        rows = [video_scores(oracle, generate(pipe, s, wav, seed), s, portraits, i)
                for i, (s, wav) in enumerate(zip(held_out, wavs))]
        scores = {"per_speaker": rows, **mean_over_speakers(rows)}
        if pipe.mode == "teacher":  # the probe reads ε-predictions; a student's fast mode predicts along its flow
            probe = audio_probe(pipe.model, pipe.codec, held_out, regressor, num_frames=args.num_frames, seed=seed)
            scores.update(probe=probe, probe_gap=probe["mean_gap"])
        return scores

    ground_truth = mean_over_speakers([video_scores(oracle, s.frames, s, portraits, i) for i, s in enumerate(held_out)])
    per_seed = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        config = teacher_config(args, seed)
        seed_dir = out / f"seed{seed}"
        tick, curve = time.perf_counter(), []
        for stop in probe_stops(args.steps, args.probe_every, args.image_steps):  # training resumes exactly
            train_teacher(data_dir, VIEW, copy.deepcopy(config), stop, seed_dir / "teacher", device=args.device,
                          progress=False)
            if stop < args.steps:
                model, codec, _ = load_inference_checkpoint(seed_dir / "teacher" / "final", args.device, torch.float32)
                curve.append((stop, audio_probe(model, codec, held_out, regressor, num_frames=args.num_frames,
                                                seed=seed)["mean_gap"]))
                print(f"seed {seed} step {stop}: audio probe gap {curve[-1][1]:+.3f}", flush=True)
        train_s = time.perf_counter() - tick
        tick = time.perf_counter()
        teacher = FadaPipeline.from_checkpoint(seed_dir / "teacher" / "final", "teacher", device=args.device,
                                               num_inference_steps=args.inference_steps)
        result = {"seed": seed, "train_s": train_s, "teacher": score_all(teacher, seed)}
        result["probe_curve"] = curve + [(args.steps, result["teacher"]["probe_gap"])]
        torch.manual_seed(config["train"]["seed"])  # train_teacher's initialisation of this seed
        model, codec = build_model(config)
        untrained = FadaPipeline(model.to(args.device).eval(), codec.to(args.device), "teacher",
                                 clip_frames=args.num_frames, num_inference_steps=args.inference_steps)
        result["untrained"] = score_all(untrained, seed)
        result["eval_s"] = time.perf_counter() - tick
        if args.student_steps:
            from fada.distill import distill_student

            tick = time.perf_counter()
            distill_student(data_dir, VIEW, seed_dir / "teacher", seed_dir / "student", steps=args.student_steps,
                            config={"num_frames": args.num_frames, "solver_steps_per_window": 2, "seed": seed,
                                    "checkpoint_every": args.student_steps},
                            device=args.device, progress=False)
            student = FadaPipeline.from_checkpoint(seed_dir / "student" / "final", "fast", device=args.device)
            result["student"] = score_all(student, seed)
            result["student_s"] = time.perf_counter() - tick
        per_seed.append(result)
        print(f"seed {seed}: teacher sync {result['teacher']['oracle_sync']:.3f} (shuffled "
              f"{result['teacher']['oracle_shuffled']:.3f}), untrained {result['untrained']['oracle_sync']:.3f}; "
              f"train {train_s:.0f} s, eval {result['eval_s']:.0f} s", flush=True)
        timings["total"] = time.perf_counter() - started
        summary = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine_description(
                torch.device(args.device)), "args": vars(args), "frame_size": size, "oracle_r2": oracle_r2,
            "timings_s": timings, "ground_truth": ground_truth, "seeds": per_seed, "seeds_done": len(per_seed),
            "rows": summarise(ground_truth, per_seed),
        }
        atomic_write_json(out / "learns.json", json_safe(summary))  # after every seed: a cut run keeps its seeds
    return summary


def summarise(ground_truth: dict, per_seed: list[dict]) -> dict:
    rows = {"rendered video (ceiling)": {key: (ground_truth[key], float("nan")) for key in SUMMARY_KEYS}}
    rows["rendered video (ceiling)"]["lags"] = ground_truth["lags"]
    for name in ("teacher", "untrained", "student"):
        if name not in per_seed[0]:
            continue
        keys = SUMMARY_KEYS + ((PROBE_KEY,) if PROBE_KEY in per_seed[0][name] else ())
        rows[name] = {key: interval([seed[name][key] for seed in per_seed]) for key in keys}
        rows[name]["lags"] = [lag for seed in per_seed for lag in seed[name]["lags"]]
        rows[name]["above_shuffled"] = interval([seed[name]["oracle_sync"] - seed[name]["oracle_shuffled"]
                                                 for seed in per_seed])
    if "student" in per_seed[0]:
        rows["student"]["share_of_teacher"] = interval([seed["student"]["oracle_sync"] / seed["teacher"]["oracle_sync"]
                                                        for seed in per_seed])
    return rows


# --------------------------------------------------------------------------------------------------- markdown

def _pm(value) -> str:
    mean, half = value
    return f"{mean:.3f}" if np.isnan(half) else f"{mean:.3f} ± {half:.3f}"


COLUMNS = (("oracle sync", "oracle_sync"), ("shuffled audio", "oracle_shuffled"), ("r at lag 0", "oracle_r_at_0"),
           ("sync 1st half", "sync_first_half"), ("sync 2nd half", "sync_second_half"),
           ("identity ratio ↓", "identity_ratio"), ("nearest own portrait", "identity_nearest"),
           ("drift (last s / first s) ", "drift"), ("audio probe gap", PROBE_KEY))


def format_markdown(summary: dict) -> str:
    args, machine = summary["args"], summary["machine"]
    lines = [
        f"Run of `benchmarks/learns.py` on {summary['date']}: {machine.get('gpu') or machine['cpu']} "
        f"({machine['cpu_count']} CPUs, device `{machine['device']}`, {machine['torch_threads']} torch threads; "
        "the machine was shared with other jobs).",
        "",
        f"* Teacher: config `{args['config']}` at {summary['frame_size']}², {args['steps']} steps per seed"
        + (f" (the first {args['image_steps']} the image stage, single frames)" if args.get("image_steps") else "")
        + f", {args['num_frames']}-frame windows, {summary['seeds_done']} of {args['seeds']} seeds; trained on "
        f"{args['train_speakers']} generated speakers × {args['train_seconds']:g} s.",
        f"* Evaluation: {args['held_out']} held-out speakers × {args['eval_seconds']:g} s, DDIM "
        f"{args['inference_steps']} steps × 3 CFG passes; oracle mouth reader R² **{summary['oracle_r2']:.3f}** on "
        "those speakers' rendered frames; mean over speakers per seed, then mean ± 95 % t-interval over seeds.",
        f"* Audio probe (`fada.metrics.audio_probe`): one denoising step at t ∈ {list(PROBE_TIMESTEPS)} from the "
        "held-out frames, first-clip state; the gap is r(mouth of x̂0, true mouth) with the window's own audio minus "
        "with another window's audio (0: the net ignores the audio).",
        f"* Wall time: {summary['timings_s']['total']:.0f} s.",
        "",
        "| video | " + " | ".join(name for name, _ in COLUMNS) + " | lags |",
        "| --- |" + " --- |" * (len(COLUMNS) + 1),
    ]
    for name, row in summary["rows"].items():
        cells = [_pm(row[key]) if key in row else "—" for _, key in COLUMNS]
        lags = ", ".join("—" if lag is None else f"{lag:+d}" for lag in row["lags"])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {lags} |")
    curves = [seed["probe_curve"] for seed in summary["seeds"]]
    if any(len(curve) > 1 for curve in curves):
        steps = sorted({step for curve in curves for step, _ in curve})
        lines += ["", "Audio probe gap on the way (learning curve; `learns_probe.png` plots it):", "",
                  "| step | " + " | ".join(f"seed {seed['seed']}" for seed in summary["seeds"]) + " |",
                  "| --- |" + " --- |" * len(curves)]
        for step in steps:
            cells = [next((f"{gap:+.3f}" for s, gap in curve if s == step), "—") for curve in curves]
            lines.append(f"| {step} | " + " | ".join(cells) + " |")
    student = summary["rows"].get("student")
    if student:
        lines += ["", f"Student (fast, 6 NFE) sync as a share of its teacher's: {_pm(student['share_of_teacher'])}."]
    return "\n".join(lines) + "\n"


def plot_probe_curves(summary: dict, path: Path) -> None:
    """The audio probe gap against training steps, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.2))
    for seed in summary["seeds"]:
        steps, gaps = zip(*seed["probe_curve"])
        axes.plot(steps, gaps, marker="o", label=f"seed {seed['seed']}")
    axes.axhline(0, color="grey", linewidth=0.8)
    axes.set(xlabel="teacher training step", ylabel="audio probe gap (r own − r other)",
             title="Does the teacher draw the mouth the audio asks for?")
    axes.legend()
    save_figure(figure, path, dpi=120)


def combine(outs: list[str]) -> dict:
    """One summary of several runs' ``learns.json`` (the same settings, other seeds): their seeds together."""
    runs = [json.loads((Path(out) / "learns.json").read_text()) for out in outs]
    per_seed = sorted((seed for run in runs for seed in run["seeds"]), key=lambda seed: seed["seed"])
    if len({seed["seed"] for seed in per_seed}) != len(per_seed):
        raise SystemExit(f"error: the runs {outs} share seeds; run them with other --first-seed values")
    summary = dict(runs[0], seeds=per_seed, seeds_done=len(per_seed), rows=summarise(runs[0]["ground_truth"], per_seed))
    summary["args"] = dict(summary["args"], seeds=len(per_seed))
    summary["timings_s"] = dict(summary["timings_s"], total=max(run["timings_s"]["total"] for run in runs))
    return summary


def main(argv=None) -> None:
    args = parse_args(argv)
    summary = combine(args.combine) if args.combine else run(args)
    if args.combine:
        summary["args"]["doc"], summary["args"]["out"] = args.doc, args.out
    text = format_markdown(summary)
    print(text)
    plot_probe_curves(summary, Path(summary["args"]["out"]) / "learns_probe.png")
    if summary["args"]["doc"]:
        Path(summary["args"]["doc"]).write_text(text)
        plot_probe_curves(summary, Path(summary["args"]["doc"]).parent / "learns_probe.png")


if __name__ == "__main__":
    main()
