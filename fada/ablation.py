"""Ablation harness for the paper's Tables 2–4: one teacher, one student per variant, all measured against the
teacher on the same noise, portrait and audio; results as a markdown table (``docs/ablation.md``).

Variants (`VARIANTS`):

* Tables 2–3, mixed supervision (CFG variant layer-tokens): PeRFlow without the GT loss; fixed w = 0.2 and
  1.0; adaptive without the fall-off (λ_gt 0.25); adaptive with λ_gt 0.25 and 0.5;
* Table 4, CFG distillation (loss adaptive, λ_gt 0.25): no CFG conditioning, scales in the time embedding,
  CFG layer on a plain scale embedding, CFG layer with tokens.

Variants with identical settings (adaptive 0.25 = layer-tokens) are trained once and share a row's numbers.

Per student and mode (fast: 6 steps × 1 pass; balanced: 6 steps × 3 passes with eq. 9), on ``eval_clips``
fixed windows of the view, each generated clip by clip from a frame outside it (the reader's reference, as at
inference) and its audio exactly by `FadaPipeline`'s sampling loop, with the same generator seed as the teacher's 25-step DDIM × 3 passes run:

* latent MSE and PSNR against the teacher's latents (PSNR peak: 2 for the pixel codec's [-1, 1] latents, the
  teacher latents' range for a VAE);
* Sync-C / Sync-D of the decoded frames (upsampled to ``output_size``) with the project's scorer
  (`SyncMetric`); NaN with the scorer's reason when it cannot score (no face found, or a video shorter than
  the ±15-frame search needs: about 40 frames — set ``eval_frames`` for that);
* NFE-D per clip as counted by the pipeline's `NFECounter` (75 / 18 / 6).

On a CPU the defaults (tiny config, 4-frame clips, few steps) finish in minutes; the numbers then show that
the harness works, not the paper's ranking. Pass more ``teacher_steps``/``student_steps`` (and a larger
``teacher_config``) on a GPU. Runs already finished in ``out_dir`` are resumed/reused, not retrained.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from filters.media_contract import SAMPLES_PER_FRAME
MODES = ("fast", "balanced")
NOT_RUN = {"nfe": None, "sync_reasons": [], "mse": None, "psnr": None, "sync_c": None, "sync_d": None,
           "sync_scored": "0/0", "sync_reason": "not run: a CFG-distilled student runs in fast mode only"}
TEACHER_STEPS, STUDENT_STEPS = 120, 10  # the CPU defaults; a GPU run passes more


@dataclass(frozen=True)
class Variant:
    name: str
    table: str
    label: str
    overrides: dict = field(default_factory=dict)

    @property
    def settings(self) -> dict:
        """The variant's full `DistillConfig` (defaults + overrides)."""
        from dataclasses import asdict

        from fada.distill import DistillConfig

        return asdict(DistillConfig.from_dict(self.overrides))

    @property
    def key(self) -> str:
        """Equal for variants that train the same student."""
        return json.dumps(self.settings, sort_keys=True)


_CFG_LOSS = {"loss_mode": "adaptive", "lambda_gt": 0.25}
VARIANTS = (
    Variant("perflow", "2", "PeRFlow, no GT loss", {"loss_mode": "none"}),
    Variant("fixed-0.2", "2", "fixed w = 0.2", {"loss_mode": "fixed", "lambda_gt": 0.2}),
    Variant("fixed-1.0", "2", "fixed w = 1.0", {"loss_mode": "fixed", "lambda_gt": 1.0}),
    Variant("adaptive-unlimited", "3", "adaptive, unlimited (λ_gt 0.25)",
            {"loss_mode": "adaptive-unlimited", "lambda_gt": 0.25}),
    Variant("adaptive-0.25", "3", "adaptive, λ_gt 0.25", _CFG_LOSS),
    Variant("adaptive-0.5", "3", "adaptive, λ_gt 0.5", {"loss_mode": "adaptive", "lambda_gt": 0.5}),
    Variant("cfg-none", "4", "no CFG distillation", {**_CFG_LOSS, "cfg_variant": "none"}),
    Variant("cfg-time-embed", "4", "scales in the time embedding", {**_CFG_LOSS, "cfg_variant": "time-embed"}),
    Variant("cfg-layer", "4", "CFG layer, plain embedding", {**_CFG_LOSS, "cfg_variant": "layer"}),
    Variant("cfg-layer-tokens", "4", "CFG layer with tokens (FADA)", {**_CFG_LOSS, "cfg_variant": "layer-tokens"}),
)


def _ema_decay(steps: int) -> float:
    """EMA horizon of about a tenth of the run (short harness runs would otherwise export mostly the init)."""
    return 1.0 - min(1.0, 10.0 / max(steps, 1))


def default_teacher_config(num_frames: int, steps: int, seed: int) -> dict:
    from fada.config import load_config

    config = load_config("tiny")
    config["train"].update(num_frames=num_frames, batch_size=2, windows_per_clip=2, shuffle_buffer=8,
                           checkpoint_every=max(steps, 1), ema_decay=_ema_decay(steps), seed=seed)
    return config


def default_distill_config(num_frames: int, steps: int, seed: int) -> dict:
    return {"num_frames": num_frames, "batch_size": 1, "solver_steps_per_window": 2, "learning_rate": 2e-4,
            "windows_per_clip": 2, "shuffle_buffer": 8, "checkpoint_every": max(steps, 1),
            "ema_decay": _ema_decay(steps), "seed": seed}


# ----------------------------------------------------------------------------------------------- evaluation

@dataclass
class EvalClip:
    portrait: torch.Tensor  # (3, H, W) in [-1, 1] at the codec's size: the reader's reference, outside the window
    audio: torch.Tensor     # samples of the window's frames plus the audio encoder's context on both sides
    frames: np.ndarray      # the real frames (T, H, W, 3) uint8


def eval_clips(data_dir, view: str, *, count: int, frames: int, size: int, context_frames: int, seed: int) -> list[EvalClip]:
    """The first ``count`` windows of ``frames`` frames of the view (no shuffle, seeded window starts)."""
    from shards.reader import ClipWindowDataset

    dataset = ClipWindowDataset(data_dir, view, n_frames=frames, n_motion_frames=0, frame_size=size,
                                windows_per_clip=1, shuffle_buffer=0, seed=seed, audio_context_frames=context_frames)
    clips = []
    for window in dataset:
        video = window["frames"]
        real = ((video + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        clips.append(EvalClip(window["reference"], window["audio"], real))
        if len(clips) == count:
            break
    if not clips:
        raise ValueError(f"view {view!r} has no window of {frames} frames to evaluate on")
    return clips


@torch.no_grad()
def generate_latents(pipe, clip: EvalClip, seed: int) -> tuple[torch.Tensor, float]:
    """(latents (T, C, h, w), NFE-D per clip) of one eval video: `FadaPipeline.latent_clips` over the window's
    clips, each with its audio and the real audio around it as context."""
    frames, context = pipe.clip_frames, pipe.model.audio_context_frames
    n_clips = len(clip.frames) // frames
    clips = [(c * frames, clip.audio[c * frames * SAMPLES_PER_FRAME:((c + 1) * frames + 2 * context) * SAMPLES_PER_FRAME])
             for c in range(n_clips)]
    pipe.nfe.reset()
    latents = [clip_latents[0] for _, clip_latents in pipe.latent_clips(clip.portrait[None], clips, seed=seed)]
    return torch.cat(latents).float().cpu(), pipe.nfe.total / n_clips


def sync_score(metric, frames: np.ndarray, audio: np.ndarray) -> tuple[float, float, str]:
    """(Sync-C, Sync-D, "") or (NaN, NaN, reason) when the scorer cannot score the video."""
    try:
        scores = metric.score(frames, audio)
        return float(scores["sync_c"]), float(scores["sync_d"]), ""
    except Exception as exc:  # noqa: BLE001 — a metric that cannot score is recorded, never fatal
        return math.nan, math.nan, f"{type(exc).__name__}: {exc}"


def _upsample(frames: np.ndarray, size: int) -> np.ndarray:
    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    tensor = torch.nn.functional.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    return tensor.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


class Evaluator:
    """Scores pipelines on fixed eval clips against the teacher's outputs (see the module docstring)."""

    def __init__(self, clips: list[EvalClip], *, context_frames: int, output_size: int, seed: int):
        from fada.metrics.sync_metric import SyncMetric

        self.clips, self.context, self.output_size, self.seed = clips, context_frames, output_size, seed
        self.metric = SyncMetric()
        self.reference: list[torch.Tensor] | None = None

    def _audio(self, clip: EvalClip, frames: int) -> np.ndarray:
        start = self.context * SAMPLES_PER_FRAME
        return clip.audio[start:start + frames * SAMPLES_PER_FRAME].numpy().astype(np.float32)

    def real(self) -> dict:
        """Sync of the real frames (how far the scorer gets on these clips at all)."""
        scores = [sync_score(self.metric, _upsample(c.frames, self.output_size), self._audio(c, len(c.frames)))
                  for c in self.clips]
        return self._summarise(scores, mse=[], psnr=[], nfe=math.nan)

    def teacher(self, pipe) -> dict:
        """Score the teacher and keep its latents as the reference of every later call."""
        self.reference = None
        return self(pipe)

    def __call__(self, pipe) -> dict:
        latents, nfe, scores = [], [], []
        for clip in self.clips:
            clip_latents, clip_nfe = generate_latents(pipe, clip, self.seed)
            latents.append(clip_latents)
            nfe.append(clip_nfe)
            frames = pipe.decode_frames(clip_latents.to(pipe.device, pipe.dtype), self.output_size)
            scores.append(sync_score(self.metric, frames, self._audio(clip, len(frames))))
        if self.reference is None:  # `teacher` is scoring
            self.reference = latents
        mse = [float((x - ref).pow(2).mean()) for x, ref in zip(latents, self.reference)]
        peaks = [2.0 if pipe.codec.kind == "pixel" else float(ref.max() - ref.min()) for ref in self.reference]
        psnr = [10 * math.log10(peak**2 / e) if e > 0 else math.inf for e, peak in zip(mse, peaks)]
        return self._summarise(scores, mse, psnr, float(np.mean(nfe)))

    def _summarise(self, scores: list, mse: list, psnr: list, nfe: float) -> dict:
        sync_c = [c for c, _, reason in scores if not reason]
        sync_d = [d for _, d, reason in scores if not reason]
        reasons = sorted({reason for *_, reason in scores if reason})
        return {"nfe": nfe, "sync_reasons": reasons, "mse": float(np.mean(mse)) if mse else math.nan,
                "psnr": float(np.mean(psnr)) if psnr else math.nan,
                "sync_c": float(np.mean(sync_c)) if sync_c else math.nan,
                "sync_d": float(np.mean(sync_d)) if sync_d else math.nan,
                "sync_scored": f"{len(sync_c)}/{len(scores)}", "sync_reason": "; ".join(reasons)}


# ------------------------------------------------------------------------------------------------- harness

def machine_description(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": str(device), "torch": torch.__version__, "python": platform.python_version()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def run_ablation(out_dir: str | os.PathLike, *, data_dir: str | os.PathLike | None = None, view: str = "train",
                 teacher_steps: int | None = None, student_steps: int | None = None, device: str | None = None,
                 progress: bool = True, table_path: str | os.PathLike | None = "docs/ablation.md", num_frames: int = 4,
                 teacher_config: dict | None = None, distill_config: dict | None = None,
                 variants: tuple[Variant, ...] = VARIANTS, eval_clips_count: int = 2, eval_frames: int | None = None,
                 output_size: int = 128, seed: int = 0, num_threads: int | None = None) -> list[dict]:
    """Train a teacher and one student per variant, score them, write the markdown to ``table_path`` (None: don't);
    one row per variant is returned (and saved to ``out_dir/ablation.json`` with the teacher's and the real
    frames' rows). Steps default to `TEACHER_STEPS` and `STUDENT_STEPS` (about 8–10 minutes on a 2-core CPU).

    ``teacher_config``: a full configuration (`fada.config.load_config` layout; default: tiny with
    ``num_frames``); ``distill_config``: `DistillConfig` overrides for every variant. ``eval_frames``: frames
    per eval video (whole clips; default one clip). ``num_threads``: torch CPU threads while running (default 1
    on a CPU: on shared cores, parallel regions wait on busy cores and a step took ~10× longer with 2).
    """
    from fada.distill import distill_student
    from fada.pipeline import FadaPipeline, student_modes
    from fada.train_teacher import train_teacher
    from fada.training import read_log

    start = time.perf_counter()
    teacher_steps = TEACHER_STEPS if teacher_steps is None else teacher_steps
    student_steps = STUDENT_STEPS if student_steps is None else student_steps
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    previous_threads = torch.get_num_threads()
    threads = num_threads or (1 if device.type == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    timings, load_start = {}, _load()
    try:
        # 1. data: a small generated speaker set unless a data directory is given
        tick = time.perf_counter()
        if data_dir is None:
            from shards.synthetic_dataset import make_speaker_data_dir

            data_dir = out_dir / "data"
            if not (data_dir / "views" / f"{view}.json").is_file():
                make_speaker_data_dir(data_dir, n_clips=3, size=32, duration_s=2.0, view=view)
        timings["data"] = time.perf_counter() - tick
        # 2. the teacher
        tick = time.perf_counter()
        teacher_cfg = copy.deepcopy(teacher_config) if teacher_config else default_teacher_config(num_frames, teacher_steps, seed)
        num_frames = teacher_cfg.setdefault("train", {}).setdefault("num_frames", num_frames)
        teacher_dir = out_dir / "teacher"
        train_teacher(data_dir, view, teacher_cfg, teacher_steps, teacher_dir, device=str(device), progress=progress)
        teacher_log = read_log(teacher_dir)
        timings["teacher"] = time.perf_counter() - tick
        # 3. one student per distinct variant
        common = {**default_distill_config(num_frames, student_steps, seed), **(distill_config or {})}
        trained: dict[str, dict] = {}
        for variant in variants:
            if variant.key in trained:
                continue
            tick = time.perf_counter()
            student_dir = out_dir / "students" / variant.name
            result = distill_student(data_dir, view, teacher_dir, student_dir, config={**common, **variant.overrides},
                                     steps=student_steps, device=str(device), progress=progress)
            log = read_log(student_dir)
            trained[variant.key] = {"dir": student_dir, "name": variant.name, "seconds": time.perf_counter() - tick,
                                    "final_loss": log[-1]["loss"] if log else result.final_loss,
                                    "w_mean": float(np.mean([row["w_mean"] for row in log])) if log else math.nan}
        timings["students"] = sum(run["seconds"] for run in trained.values())
        # 4. evaluation: the teacher first (the reference), then each student in both modes
        tick = time.perf_counter()
        teacher_pipe = FadaPipeline.from_checkpoint(teacher_dir, mode="teacher", device=str(device))
        frames = -(-(eval_frames or num_frames) // num_frames) * num_frames
        clips = eval_clips(data_dir, view, count=eval_clips_count, frames=frames, size=teacher_pipe.codec.size,
                           context_frames=teacher_pipe.model.audio_context_frames, seed=seed + 1)
        evaluator = Evaluator(clips, context_frames=teacher_pipe.model.audio_context_frames, output_size=output_size,
                              seed=seed)
        teacher_row = {"variant": "teacher", "label": "teacher, DDIM 25 steps × 3 passes", **evaluator.teacher(teacher_pipe)}
        real_row = {"variant": "real", "label": "real frames (scorer reference)", **evaluator.real()}
        scored: dict[str, dict] = {}
        rows = []
        for variant in variants:
            run = trained[variant.key]
            if variant.key not in scored:
                scored[variant.key] = {}
                runnable = student_modes(variant.settings["cfg_variant"])
                for mode in MODES:
                    if mode not in runnable:  # balanced would run states a CFG-distilled student never learnt
                        scored[variant.key][mode] = NOT_RUN
                        continue
                    pipe = FadaPipeline.from_checkpoint(run["dir"], mode=mode, device=str(device))
                    scored[variant.key][mode] = evaluator(pipe)
            settings = variant.settings
            row = {"variant": variant.name, "table": variant.table, "label": variant.label,
                   "loss_mode": settings["loss_mode"], "lambda_gt": settings["lambda_gt"],
                   "cfg_variant": settings["cfg_variant"], "trained_as": run["name"],
                   "distill_seconds": run["seconds"], "final_loss": run["final_loss"], "w_mean": run["w_mean"]}
            for mode, metrics in scored[variant.key].items():
                row.update({f"{k}_{mode}": v for k, v in metrics.items()})
            rows.append(row)
        timings["eval"] = time.perf_counter() - tick
        timings["total"] = time.perf_counter() - start
        summary = {
            "machine": machine_description(device), "load_average": {"start": load_start, "end": _load()},
            "timings_s": timings, "teacher_steps": teacher_steps, "student_steps": student_steps,
            "teacher_config": teacher_cfg, "distill_config": common, "eval": {
                "clips": len(clips), "frames": frames, "output_size": output_size, "seed": seed,
                "sync_scorer": evaluator.metric.scorer.name},
            "teacher_final_loss": teacher_log[-1]["loss"] if teacher_log else math.nan,
            "teacher": teacher_row, "real": real_row, "rows": rows,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        }
        (out_dir / "ablation.json").write_text(json.dumps(summary, indent=1, default=str))
        if table_path:
            Path(table_path).parent.mkdir(parents=True, exist_ok=True)
            Path(table_path).write_text(format_markdown(summary))
        return rows
    finally:
        torch.set_num_threads(previous_threads)


# ------------------------------------------------------------------------------------------------ markdown

def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "∞"
        return f"{value:.{digits}g}"
    return str(value)


def format_markdown(summary: dict) -> str:
    machine, timings, ev = summary["machine"], summary["timings_s"], summary["eval"]
    teacher_train = summary["teacher_config"].get("train", {})
    lines = [
        "# Distillation ablation (paper Tables 2–4)",
        "",
        f"Produced by `fada.ablation.run_ablation` on {summary['date']}: one teacher, one student per variant, "
        "every student scored in both modes against the teacher's 75-NFE output from the same noise, portrait "
        "and audio. Regenerate with `fada ablate` (or `fada.ablation.run_ablation(out_dir)`; on a GPU pass more "
        "`--teacher-steps`/`--student-steps`, or `teacher_config`/`eval_frames` to `run_ablation`).",
        "",
        "## Setup",
        "",
        f"* Machine: {machine['cpu']}, {machine['cpu_count']} CPUs, device `{machine['device']}`"
        + (f" ({machine['gpu']})" if machine.get("gpu") else "")
        + f", torch {machine['torch']} with {machine['torch_threads']} thread(s); load average (1/5/15 min) "
        f"{summary['load_average']['start']} at the start, {summary['load_average']['end']} at the end "
        "(the cores are shared with other jobs).",
        f"* Wall time: **{timings['total']:.0f} s** in all — data {timings['data']:.0f} s, teacher "
        f"{timings['teacher']:.0f} s, students {timings['students']:.0f} s, evaluation {timings['eval']:.0f} s.",
        f"* Teacher: {summary['teacher_steps']} steps; model/codec `{json.dumps(summary['teacher_config'].get('codec'))}`, "
        f"train `{json.dumps(teacher_train, sort_keys=True)}`; final loss {_fmt(summary['teacher_final_loss'])}.",
        f"* Students: {summary['student_steps']} steps each; common settings "
        f"`{json.dumps(summary['distill_config'], sort_keys=True)}`; each row's own settings below "
        "(loss rows use the layer-tokens CFG variant, CFG rows the adaptive λ_gt 0.25 loss).",
        f"* Evaluation: {ev['clips']} fixed windows of the view, {ev['frames']} frames each (clips of "
        f"{teacher_train.get('num_frames')} frames chained through motion frames), generator seed {ev['seed']}; "
        f"latent MSE/PSNR vs the teacher; sync by `{ev['sync_scorer']}` on frames upsampled to "
        f"{ev['output_size']}²; NFE-D per clip counted by the pipeline.",
        "",
        "## Results",
        "",
        "| table | variant | loss | λ_gt | CFG | final loss | mean w | NFE-D fast | MSE fast | PSNR fast (dB) "
        "| Sync-C fast | NFE-D balanced | MSE balanced | PSNR balanced (dB) | Sync-C balanced |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    t = summary["teacher"]
    lines.append(f"| — | {t['label']} | — | — | — | {_fmt(summary['teacher_final_loss'])} | — | {_fmt(t['nfe'])} "
                 f"| 0 | ∞ | {_fmt(t['sync_c'])} | | | | |")
    for row in summary["rows"]:
        shared = "" if row["trained_as"] == row["variant"] else f" (= {row['trained_as']})"
        lines.append(
            f"| {row['table']} | {row['label']}{shared} | {row['loss_mode']} "
            f"| {'—' if row['loss_mode'] == 'none' else _fmt(row['lambda_gt'])} "
            f"| {row['cfg_variant']} | {_fmt(row['final_loss'])} | {_fmt(row['w_mean'], 3)} "
            f"| {_fmt(row['nfe_fast'])} | {_fmt(row['mse_fast'])} | {_fmt(row['psnr_fast'])} | {_fmt(row['sync_c_fast'])} "
            f"| {_fmt(row['nfe_balanced'])} | {_fmt(row['mse_balanced'])} | {_fmt(row['psnr_balanced'])} "
            f"| {_fmt(row['sync_c_balanced'])} |")
    reasons = set(t["sync_reasons"]).union(*(row[f"sync_reasons_{m}"] for row in summary["rows"] for m in MODES))
    real = summary["real"]
    lines += [
        "",
        f"Sync on the real frames of the same windows: Sync-C {_fmt(real['sync_c'])}, Sync-D {_fmt(real['sync_d'])} "
        f"({real['sync_scored']} scored).",
    ]
    reasons |= set(real["sync_reasons"])
    if reasons:
        lines += ["", "Why a sync value is NaN (the scorer's own messages, over all rows and clips):", ""]
        lines += [f"* {r}" for r in sorted(reasons)]
    lines += [
        "",
        "## Reading it",
        "",
        "* NFE-D is the cost: teacher 75, balanced 18 (4.17× fewer), fast 6 (12.5× fewer).",
        "* MSE/PSNR measure how closely a student reproduces its teacher from the same noise (higher PSNR = "
        "closer). With the few steps a CPU run affords, the students are still near their initialisation (the "
        "teacher's weights), so the rows show that every variant trains and runs, not the paper's ranking.",
        "* What each mode runs: fast is one pass with the scales (s_a 6.5, s_r 2.0) fed to the CFG conditioning "
        "— for the `none` CFG variant that is one unguided pass; balanced is three passes combined with eq. 9 "
        "(s_a 6.5, s_r 2.5) and no scales fed, which is how the `none` variant was trained (condition dropout) "
        "but not how the CFG-distilled variants were (they always saw full conditions and scales).",
        "* adaptive and adaptive-unlimited differ only for samples with r = L_gt/L_distill > r_peak (30); when "
        "no sample gets there their runs are identical.",
        "* Sync is NaN when the scorer cannot score: its ±15-frame search needs about 40 frames with a face; "
        "pass `eval_frames=48` (GPU) to get values.",
        "",
    ]
    return "\n".join(lines)
