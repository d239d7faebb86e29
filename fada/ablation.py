"""The distillation ablation of the paper's Tables 2–4 as an experiment (issue 15 item 7).

1. Data with the paper's premise: a ``strict`` view of clean speakers and a ``lenient`` view of the same plus
   moderate-quality ones (bad lip-sync ground truth, degraded frames) —
   `shards.synthetic_dataset.make_mixed_quality_data_dir`, or a user's data dir and view names.
2. One teacher (seed 0) on the teacher view, the shared reference of every student seed.
3. Per student seed, one student per distinct variant (`VARIANTS`) on the student view, each trained in chunks
   (`distill_student` resumes exactly from its out dir) until its loss is flat (`is_flat`) or ``max_student_steps``.
   Loss rows (Tables 2–3) are plain students (``cfg_variant: none``) scored in balanced mode (6 steps × 3 CFG
   passes = 18 NFE); CFG rows (Table 4, adaptive λ_gt 0.25 loss) are scored in fast mode (6 NFE). The "no CFG
   distillation" row is the adaptive-0.25 plain student in fast mode (conditional inference), not a second run.
4. Every model scored on held-out speakers (`fada.ablation_eval`): distance to the teacher, oracle sync,
   Fréchet distance to real frames, NFE-D, generation and training seconds.
5. Per row mean ± 95 % t-interval over student seeds; per paper claim a computed verdict (`fada.ablation_claims`).
6. ``OUT/ablation.json``, the markdown (`fada.ablation_report.format_markdown`) and a loss-curve PNG beside it.

Everything finished in ``out_dir`` is reused: the data, the teacher, the oracle, each student's chunks (a
progress file per student) and each model's scores, so a cut run continues where it stopped.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from filters.strict_json import json_safe
from shards.atomic import atomic_write_json

# Defaults measured to fit 40 minutes on a shared 2-core CPU (docs/ablation.md records the run).
TEACHER_STEPS, MAX_STUDENT_STEPS, CHUNK_STEPS, SEEDS = 200, 60, 20, 3
FLAT_TOLERANCE = 0.05  # a chunk that lowers the mean loss by less than this (relative) ends training
PROGRESS_FILE = "ablation_progress.json"


@dataclass(frozen=True)
class Variant:
    name: str
    table: str
    label: str
    overrides: dict = field(default_factory=dict)
    mode: str = "balanced"  # the inference mode the row is scored in

    @property
    def settings(self) -> dict:
        """The variant's full `DistillConfig` (defaults + overrides)."""
        from fada.distill import DistillConfig

        return asdict(DistillConfig.from_dict(self.overrides))

    @property
    def key(self) -> str:
        """Equal for variants that train the same student."""
        return json.dumps(self.settings, sort_keys=True)


_PLAIN = {"cfg_variant": "none"}
_ADAPTIVE = {"loss_mode": "adaptive", "lambda_gt": 0.25}
VARIANTS = (
    Variant("perflow", "2", "PeRFlow alone (no GT loss)", {**_PLAIN, "loss_mode": "none"}),
    Variant("fixed-0.2", "2", "fixed w = 0.2", {**_PLAIN, "loss_mode": "fixed", "lambda_gt": 0.2}),
    Variant("fixed-1.0", "2", "fixed w = 1.0", {**_PLAIN, "loss_mode": "fixed", "lambda_gt": 1.0}),
    Variant("adaptive-unlimited", "3", "adaptive, unlimited (λ_gt 0.25)",
            {**_PLAIN, "loss_mode": "adaptive-unlimited", "lambda_gt": 0.25}),
    Variant("adaptive-0.25", "3", "adaptive, λ_gt 0.25", {**_PLAIN, **_ADAPTIVE}),
    Variant("adaptive-0.5", "3", "adaptive, λ_gt 0.5", {**_PLAIN, "loss_mode": "adaptive", "lambda_gt": 0.5}),
    Variant("cfg-none", "4", "no CFG distillation (conditional inference)", {**_ADAPTIVE, "cfg_variant": "none"}, "fast"),
    Variant("cfg-time-embed", "4", "scales in the time embedding", {**_ADAPTIVE, "cfg_variant": "time-embed"}, "fast"),
    Variant("cfg-layer", "4", "CFG layer, plain embedding", {**_ADAPTIVE, "cfg_variant": "layer"}, "fast"),
    Variant("cfg-layer-tokens", "4", "CFG layer with tokens (FADA)", {**_ADAPTIVE, "cfg_variant": "layer-tokens"}, "fast"),
)


def students(variants: tuple[Variant, ...] = VARIANTS) -> dict[str, str]:
    """Variant name → the name of the variant whose student it uses (the first with the same settings)."""
    first: dict[str, str] = {}
    return {v.name: first.setdefault(v.key, v.name) for v in variants}


# ------------------------------------------------------------------------------------------------ training

def is_flat(losses: list[float], chunk: int, tolerance: float = FLAT_TOLERANCE) -> bool:
    """True when the mean loss of the last ``chunk`` steps is lower than the chunk before's by less than
    ``tolerance`` of it (or higher): the smoothed curve stopped improving."""
    if chunk < 1 or len(losses) < 2 * chunk:
        return False
    last, before = float(np.mean(losses[-chunk:])), float(np.mean(losses[-2 * chunk:-chunk]))
    return before - last < tolerance * abs(before)


def train_until_flat(train, read_losses, progress_path: Path, *, chunk: int, max_steps: int,
                     tolerance: float = FLAT_TOLERANCE) -> dict:
    """Call ``train(total_steps)`` a chunk at a time until `is_flat` on ``read_losses()`` or ``max_steps``;
    {steps, seconds, status: flat | capped}, kept in ``progress_path`` after every chunk (a cut run resumes; a
    capped one continues when ``max_steps`` has grown)."""
    state = {"steps": 0, "seconds": 0.0, "status": "training"}
    if progress_path.is_file():
        state = json.loads(progress_path.read_text())
        if state["status"] == "capped" and state["steps"] < max_steps:
            state["status"] = "training"
    while state["status"] == "training":
        steps = min(state["steps"] + chunk, max_steps)
        tick = time.perf_counter()
        train(steps)
        status = "flat" if is_flat(read_losses(), chunk, tolerance) else "capped" if steps >= max_steps else "training"
        state = {"steps": steps, "seconds": state["seconds"] + time.perf_counter() - tick, "status": status}
        atomic_write_json(progress_path, state)
    return state


def _ema_decay(steps: int) -> float:
    """EMA horizon of about a tenth of the run (short runs would otherwise export mostly the initialisation)."""
    return 1.0 - min(1.0, 10.0 / max(steps, 1))


def default_teacher_config(num_frames: int, steps: int, seed: int = 0) -> dict:
    from fada.config import load_config

    config = load_config("tiny")
    config["train"].update(num_frames=num_frames, batch_size=2, windows_per_clip=2, shuffle_buffer=8,
                           checkpoint_every=max(steps, 1), ema_decay=_ema_decay(steps), seed=seed)
    return config


def default_distill_config(num_frames: int, max_steps: int, chunk: int) -> dict:
    return {"num_frames": num_frames, "batch_size": 1, "solver_steps_per_window": 2, "learning_rate": 2e-4,
            "windows_per_clip": 2, "shuffle_buffer": 8, "checkpoint_every": max(chunk, 1),
            "ema_decay": _ema_decay(max_steps)}


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


@dataclass
class AblationSettings:
    """What `run_ablation` runs; ``__init__`` keywords are the configuration (the CLI's options map onto them)."""

    data_dir: str | None = None          # None: generated mixed-quality speakers in OUT/data
    teacher_view: str = "strict"
    student_view: str = "lenient"
    seeds: int = SEEDS                   # student seeds; the teacher is trained once (seed 0)
    teacher_steps: int = TEACHER_STEPS
    max_student_steps: int = MAX_STUDENT_STEPS
    chunk_steps: int = CHUNK_STEPS
    flat_tolerance: float = FLAT_TOLERANCE
    num_frames: int = 4                  # frames per training window and per generated clip
    teacher_config: dict | None = None   # full configuration (`fada.config` layout); default tiny at 32²
    distill_config: dict | None = None   # `DistillConfig` overrides for every student
    n_clean: int = 6                     # generated data: clean speakers (strict) …
    n_moderate: int = 6                  # … and moderate-quality ones (lenient adds them)
    data_seconds: float = 4.0
    eval_speakers: int = 2
    eval_frames: int = 40                # per eval video (whole clips); the oracle needs ≥ 40
    fd_side: int = 4                     # FD features: fd_side² × 3 thumbnail pixels
    oracle_speakers: int = 4
    oracle_seconds: float = 3.0
    oracle_steps: int = 300
    oracle_min_frames: int = 40
    eval_seed: int = 0                   # generator seed of every eval video (the same noise for every model)


def _eval_key(settings: AblationSettings, teacher_dir: Path) -> str:
    fields = {k: getattr(settings, k) for k in ("eval_speakers", "eval_frames", "fd_side", "oracle_speakers",
                                                  "oracle_seconds", "oracle_steps", "oracle_min_frames", "eval_seed")}
    fields["teacher"] = str(teacher_dir.resolve())
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def _cached(path: Path, compute) -> dict:
    """``compute()``'s dict in strict JSON (NaN → None), kept at ``path``; a later run reads it back."""
    if path.is_file():
        return json.loads(path.read_text())
    result = json_safe(compute())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, result)
    return result


def _timed(compute) -> dict:
    """``compute()``'s dict with the seconds it took as ``eval_seconds``."""
    tick = time.perf_counter()
    return {**compute(), "eval_seconds": time.perf_counter() - tick}


def _train_teacher_once(train, progress_path: Path, steps: int) -> dict:
    """``train(steps)`` unless ``progress_path`` records a teacher of ``steps`` steps; {steps, seconds}."""
    state = json.loads(progress_path.read_text()) if progress_path.is_file() else {"steps": 0, "seconds": 0.0}
    if state["steps"] != steps:
        tick = time.perf_counter()
        train(steps)
        state = {"steps": steps, "seconds": state["seconds"] + time.perf_counter() - tick}
        atomic_write_json(progress_path, state)
    return state


def run_ablation(out_dir: str | os.PathLike, settings: AblationSettings | None = None, *, device: str | None = None,
                 num_threads: int | None = None, doc_path: str | os.PathLike | None = "docs/ablation.md",
                 variants: tuple[Variant, ...] = VARIANTS, progress: bool = True) -> dict:
    """Run the experiment (module docstring) into ``out_dir``; returns the summary also written to
    ``out_dir/ablation.json`` and, unless ``doc_path`` is None, as markdown to ``doc_path`` (with the loss-curve
    PNG beside it). ``num_threads``: torch CPU threads (default 1 on a CPU: on shared cores, parallel regions
    wait on busy cores)."""
    settings = settings or AblationSettings()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    threads = num_threads or (1 if device.type == "cpu" else None)
    previous = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    if threads:  # FadaPipeline takes every core unless OMP_NUM_THREADS is set
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    try:
        return _run(out_dir, settings, device, variants, progress, doc_path)
    finally:
        torch.set_num_threads(previous[0])
        if previous[1] is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous[1]


def _run(out_dir: Path, settings: AblationSettings, device: torch.device, variants: tuple[Variant, ...],
         progress: bool, doc_path) -> dict:
    from fada.ablation_claims import judge
    from fada.ablation_eval import Evaluator, held_out_clips, oracle_regressor
    from fada.ablation_report import format_markdown, loss_curves_png
    from fada.distill import distill_student
    from fada.metrics.oracle_sync import OracleSync, predict_opening, r_squared
    from fada.pipeline import FadaPipeline
    from fada.train_teacher import train_teacher
    from fada.training import read_log

    start, load_start, timings = time.perf_counter(), _load(), {}
    # 1. data
    teacher_cfg = copy.deepcopy(settings.teacher_config) if settings.teacher_config else default_teacher_config(
        settings.num_frames, settings.teacher_steps)
    num_frames = teacher_cfg.setdefault("train", {}).setdefault("num_frames", settings.num_frames)
    size = teacher_cfg["codec"]["size"]
    data_dir = Path(settings.data_dir) if settings.data_dir else out_dir / "data"
    data_record = out_dir / "data_made.json"
    if settings.data_dir is None and not (data_dir / "views" / f"{settings.student_view}.json").is_file():
        from shards.synthetic_dataset import make_mixed_quality_data_dir

        _cached(data_record, lambda: _timed(lambda: {"path": str(make_mixed_quality_data_dir(
            data_dir, n_clean=settings.n_clean, n_moderate=settings.n_moderate, size=size,
            duration_s=settings.data_seconds, strict_view=settings.teacher_view, lenient_view=settings.student_view))}))
    # None: a data dir reused without a record of its making (or the user's own)
    timings["data"] = json.loads(data_record.read_text())["eval_seconds"] if data_record.is_file() else None
    # 2. the teacher (seed 0), once
    teacher_dir = out_dir / "teacher"
    teacher_run = _train_teacher_once(
        lambda steps: train_teacher(data_dir, settings.teacher_view, copy.deepcopy(teacher_cfg), steps, teacher_dir,
                                    device=str(device), progress=progress),
        teacher_dir / PROGRESS_FILE, settings.teacher_steps)
    timings["teacher"] = teacher_run["seconds"]
    # 3. students: per seed, one per distinct variant, each until flat or capped
    shared = students(variants)
    common = {**default_distill_config(num_frames, settings.max_student_steps, settings.chunk_steps),
              **(settings.distill_config or {})}
    runs: dict[tuple[str, int], dict] = {}
    for seed in range(settings.seeds):
        for variant in variants:
            if shared[variant.name] != variant.name:
                continue
            student_dir = out_dir / "students" / variant.name / f"seed{seed}"
            config = {**common, **variant.overrides, "seed": seed}
            run = train_until_flat(
                lambda steps, student_dir=student_dir, config=config: distill_student(
                    data_dir, settings.student_view, teacher_dir, student_dir, config=config, steps=steps,
                    device=str(device), progress=progress),
                lambda student_dir=student_dir: [row["loss"] for row in read_log(student_dir)],
                student_dir / PROGRESS_FILE, chunk=settings.chunk_steps, max_steps=settings.max_student_steps,
                tolerance=settings.flat_tolerance)
            log = read_log(student_dir)
            runs[variant.name, seed] = {**run, "dir": str(student_dir), "final_loss": log[-1]["loss"],
                                        "w_mean": float(np.mean([row["w_mean"] for row in log])),
                                        "r_mean": float(np.mean([row["r_mean"] for row in log])),
                                        "r_max": float(np.max([row["r_mean"] for row in log]))}
    timings["students"] = sum(run["seconds"] for run in runs.values())
    # 4. evaluation: the oracle, the held-out clips, the teacher (the reference), then every row
    teacher_pipe = FadaPipeline.from_checkpoint(teacher_dir, mode="teacher", device=str(device))
    context = teacher_pipe.model.audio_context_frames
    frames = -(-settings.eval_frames // num_frames) * num_frames
    scores_dir = out_dir / "scores" / _eval_key(settings, teacher_dir)
    weights = out_dir / f"mouth_regressor_{settings.oracle_speakers}x{settings.oracle_steps}.safetensors"
    tick = time.perf_counter()
    regressor = oracle_regressor(weights, speakers=settings.oracle_speakers, seconds=settings.oracle_seconds,
                                 steps=settings.oracle_steps)
    eval_seconds = {"oracle": _cached(weights.with_suffix(".json"), lambda: {"seconds": time.perf_counter() - tick})["seconds"]}
    clips = held_out_clips(out_dir / "held_out", count=settings.eval_speakers, frames=frames, size=size,
                           context_frames=context)
    oracle_r2 = r_squared(np.concatenate([predict_opening(regressor, c.frames) for c in clips]),
                          np.concatenate([c.mouth_open for c in clips]))
    evaluator = Evaluator(clips, OracleSync(regressor, min_frames=settings.oracle_min_frames), context_frames=context,
                          seed=settings.eval_seed, fd_side=settings.fd_side)
    teacher_latents = scores_dir / "teacher_latents.safetensors"
    if teacher_latents.is_file() and (scores_dir / "teacher.json").is_file():
        from safetensors.torch import load_file

        stored = load_file(str(teacher_latents))
        evaluator.reference = [stored[str(i)] for i in range(len(clips))]
    else:
        from safetensors.torch import save_file

        from shards.atomic import atomic_path

        teacher_scores = _timed(lambda: evaluator(teacher_pipe))
        scores_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(teacher_latents) as tmp:
            save_file({str(i): x.contiguous() for i, x in enumerate(evaluator.reference)}, str(tmp))
        atomic_write_json(scores_dir / "teacher.json", json_safe(teacher_scores))
    teacher_row = {"variant": "teacher", "label": "teacher, DDIM 25 steps × 3 passes", "mode": "teacher",
                   **json.loads((scores_dir / "teacher.json").read_text())}
    real_row = _cached(scores_dir / "real.json", lambda: _timed(evaluator.real))
    eval_seconds.update(teacher=teacher_row["eval_seconds"], real=real_row["eval_seconds"])
    per_seed: dict[str, list[dict]] = {"teacher": [teacher_row]}
    for variant in variants:
        trained = shared[variant.name]
        per_seed[variant.name] = []
        for seed in range(settings.seeds):
            run = runs[trained, seed]
            name = f"{trained}-seed{seed}-{variant.mode}"
            scores = _cached(scores_dir / f"{name}.json", lambda run=run: _timed(lambda: evaluator(
                FadaPipeline.from_checkpoint(run["dir"], mode=variant.mode, device=str(device)))))
            eval_seconds[name] = scores["eval_seconds"]
            per_seed[variant.name].append({**scores, "seed": seed, "train_steps": run["steps"],
                                           "train_status": run["status"], "train_seconds": run["seconds"],
                                           **{k: run[k] for k in ("final_loss", "w_mean", "r_mean", "r_max")}})
    # the work's seconds as recorded when it was done (a resumed run reuses earlier work with its time)
    timings["eval"] = sum(eval_seconds.values())
    timings["total"] = (timings["data"] or 0.0) + timings["teacher"] + timings["students"] + timings["eval"]
    timings["this_invocation"] = time.perf_counter() - start
    rows = [{"variant": v.name, "table": v.table, "label": v.label, "mode": v.mode, "trained_as": shared[v.name],
             "loss_mode": v.settings["loss_mode"], "lambda_gt": v.settings["lambda_gt"],
             "cfg_variant": v.settings["cfg_variant"], "seeds": per_seed[v.name]} for v in variants]
    summary = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine_description(device),
        "load_average": {"start": load_start, "end": _load()}, "timings_s": timings,
        "settings": {**asdict(settings), "teacher_config": teacher_cfg}, "distill_config": common,
        "data_dir": str(data_dir), "teacher_steps": teacher_run["steps"],
        "eval": {"speakers": len(clips), "frames": frames, "clip_frames": num_frames, "size": size,
                 "oracle_r2": oracle_r2, "window_start": "frame 10 (portrait: frame 0)"},
        "teacher_final_loss": read_log(teacher_dir)[-1]["loss"] if read_log(teacher_dir) else math.nan,
        "teacher": teacher_row, "real": real_row, "rows": rows,
        "claims": judge({**{v.name: per_seed[v.name] for v in variants}, "teacher": [teacher_row]}),
    }
    summary = json_safe(summary)
    atomic_write_json(out_dir / "ablation.json", summary)
    if doc_path:
        doc_path = Path(doc_path)
        doc_path.parent.mkdir(parents=True, exist_ok=True)
        png = loss_curves_png({(v.name, seed): read_log(runs[v.name, seed]["dir"]) for v in variants
                               if shared[v.name] == v.name for seed in range(settings.seeds)},
                              doc_path.with_name(doc_path.stem + "_loss.png"), chunk=settings.chunk_steps)
        summary["loss_png"] = png.name if png else None
        doc_path.write_text(format_markdown(summary))
    return summary
