"""PeRFlow distillation of the teacher into the FADA student (DESIGN.md §3 "Distillation", paper §3.1–3.3).

The student starts as the teacher (`student_from_teacher`: the teacher's weights plus zero-initialised CFG
conditioning) and learns, inside each of K time windows, the straight line from the window start z_s to the
end point z_e that the frozen teacher's DDIM solver reaches. Per step, for a batch of a view's windows:

1. frames → latents (`batch_latents`); motion frames noise-augmented (training mode) and replaced by the
   "no motion" state with ``motion_drop_rate``, as in teacher training, the same for teacher and student;
2. t ~ U(0, 1], its window (t_e, t_s]; z_s = √ᾱ_s·x0 + √(1−ᾱ_s)·ε from the forward process;
3. z_e from the frozen teacher, no gradient: DDIM from t_s to t_e in ``solver_steps_per_window`` steps.
   When CFG is distilled (``cfg_variant`` ≠ none) each sample draws (s_a, s_r) from the configured ranges and
   the teacher is guided with multi-CFG (eq. 9; three passes as one batch: bank [r+m, r+m, ∅] with ∅ the empty
   reference and motion frames, audio [a, 0, 0]).
   Without CFG distillation each sample drops its conditions as in teacher training and the teacher predicts
   with the same dropped conditions, so the student keeps the three predictions the balanced mode combines;
4. the student's input on the straight line, z_t = z_s + (z_e − z_s)·(t − t_s)/(t_e − t_s);
5. its ε-form target ε* = (z_e − λ·z_s)/η ("ddim_eps"); L_distill = ‖ε̂(z_t, t) − ε*‖²;
6. the ground-truth branch: the same with z_e^gt = √ᾱ_e·x0 + √(1−ᾱ_e)·ε (same ε) → L_gt; the distill and GT
   inputs go through the student as one batch of 2B. Under CFG distillation the GT half gets unit scales
   (s_a = s_r = 1, the conditional prediction), since its target is unguided noise;
7. L = L_distill + w·L_gt per sample (`MixedSupervision`, eq. 8 as reconstructed), r and w logged;
8. the CFG-distilled student sees (s_a, s_r) through its CFG conditioning (`cfg_conditioning`).

Losses are means over the denoised frames only. `DistillObjective` is steps 1–8; the loop around it (AdamW,
warmup, grad clipping, EMA, exact resume, checkpoints) is `fada.training.fit`, shared with teacher training. ``init_student`` starts a fresh run from an earlier student's weights instead of the
teacher's (retraining on a refreshed view; the teacher still supervises); a run that resumes from ``OUT``
ignores it. ``OUT/final`` is the EMA student (meta kind "student", the teacher it came from, the
view it read and this configuration under ``config.train``), which `FadaPipeline` loads in fast mode, and in
balanced mode when it was distilled without CFG conditioning (`fada.pipeline.student_modes`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import ClassVar
from pathlib import Path

import torch
import torch.nn as nn

from fada.cfg_conditioning import CFG_VARIANTS
from fada.checkpoint import META_FILE, CheckpointError, check_same_config, load_inference_checkpoint, resolve_checkpoint
from fada.guidance import cfg_bank, multi_cfg, split_cfg_batch
from fada.mixed_supervision import MODES as LOSS_MODES
from fada.mixed_supervision import MixedSupervision
from fada.model import FadaModel, student_from_teacher
from fada.motion_frames import training_motion
from fada.noise_schedule import NoiseSchedule
from fada.perflow import PerflowWindows, ddim_solve, eps_target, gt_window_end, line_point, sample_t
from fada.pipeline import MODE_DEFAULTS, SAMPLE_KEYS, make_scheduler
from fada.train_teacher import drop_masks, view_lineage
from fada.training import TrainingRunConfig, TrainResult, fit, setup_runtime

@dataclass
class DistillConfig(TrainingRunConfig):
    """The ``distill`` section: the shared keywords (`fada.training.TrainingRunConfig`; ``num_frames`` =
    denoised frames per window, which `distill_student` defaults to the teacher's; the condition dropout
    rates apply when ``cfg_variant`` is none, keeping ε(r,a), ε(r,∅), ε(∅,∅) for the balanced mode) and these."""

    # PeRFlow (steps 1–5)
    num_windows: int = 4
    solver_steps_per_window: int = 8
    # mixed supervision (steps 6–7; paper constants)
    loss_mode: str = "adaptive"       # none | fixed | adaptive-unlimited | adaptive
    lambda_gt: float = 0.25
    alpha: float = 0.2
    r_peak: float = 30.0
    r_dead: float = 100.0
    # CFG distillation (step 8): scales drawn per sample, uniform in these ranges
    cfg_variant: str = "layer-tokens"  # none | time-embed | layer | layer-tokens
    cfg_num_tokens: int = 4
    guidance_audio_range: tuple[float, float] = (4.0, 9.0)
    guidance_reference_range: tuple[float, float] = (1.5, 3.0)

    section: ClassVar[str] = "distill"

    @classmethod
    def coerce(cls, values: dict) -> dict:
        for key in ("guidance_audio_range", "guidance_reference_range"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        return values

    def check(self) -> None:
        super().check()
        if self.cfg_variant not in CFG_VARIANTS:
            raise ValueError(f"cfg_variant {self.cfg_variant!r}: use one of {', '.join(CFG_VARIANTS)}")
        if self.loss_mode not in LOSS_MODES:
            raise ValueError(f"loss_mode {self.loss_mode!r}: use one of {', '.join(LOSS_MODES)}")
        if self.num_windows < 1 or self.solver_steps_per_window < 1:
            raise ValueError("need num_windows >= 1 and solver_steps_per_window >= 1")
        for key in ("guidance_audio_range", "guidance_reference_range"):
            low_high = getattr(self, key)
            if len(low_high) != 2 or low_high[0] > low_high[1]:
                raise ValueError(f"{key} must be [low, high] with low <= high, got {low_high}")
        self.supervision()  # checks r_peak < r_dead

    @property
    def distills_cfg(self) -> bool:
        return self.cfg_variant != "none"

    def supervision(self) -> MixedSupervision:
        return MixedSupervision(self.loss_mode, self.lambda_gt, self.alpha, self.r_peak, self.r_dead)


def sample_scales(batch: int, config: DistillConfig, generator: torch.Generator, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 8: (s_a, s_r) per sample, uniform in the configured ranges."""
    (a_low, a_high), (r_low, r_high) = config.guidance_audio_range, config.guidance_reference_range
    u = torch.rand(2, batch, generator=generator, device=device)
    return a_low + (a_high - a_low) * u[0], r_low + (r_high - r_low) * u[1]


class DistillObjective(nn.Module):
    """Per-sample PeRFlow losses of a batch (steps 1–8); the module DDP wraps (the teacher is frozen)."""

    def __init__(self, student: FadaModel, teacher: FadaModel, config: DistillConfig):
        super().__init__()
        self.student, self.teacher, self.config = student, teacher.requires_grad_(False).eval(), config
        self.schedule = NoiseSchedule()
        self.windows = PerflowWindows(config.num_windows)
        self.supervision = config.supervision()

    @torch.no_grad()
    def teacher_window_end(self, motion: torch.Tensor, z_s: torch.Tensor, t_s: torch.Tensor, t_e: torch.Tensor,
                           reference: torch.Tensor, audio: torch.Tensor, keep_reference: torch.Tensor,
                           keep_audio: torch.Tensor, scales: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        """Step 3: the teacher's DDIM solve from z_s at t_s to t_e (guided with eq. 9 when ``scales`` are given)."""
        teacher, frames = self.teacher, z_s.shape[1]
        if scales is None:  # the sample's own (possibly dropped) conditions, one pass
            bank = teacher.encode_conditions(reference * keep_reference[:, None, None, None],
                                             motion * keep_reference[:, None, None, None, None])
            tokens = teacher.encode_audio(audio, frames) * keep_audio[:, None, None, None]
            passes = 1
        else:  # three passes as one batch: bank [r+m, r+m, ∅], audio [a, 0, 0]
            batch = reference.shape[0]
            banks = teacher.encode_conditions(torch.cat([reference, torch.zeros_like(reference)]),
                                              torch.cat([motion, torch.zeros_like(motion)]))
            bank = cfg_bank({k: v[:batch] for k, v in banks.items()}, {k: v[batch:] for k, v in banks.items()})
            tokens = teacher.encode_audio(audio, frames)
            tokens = torch.cat([tokens, torch.zeros_like(tokens), torch.zeros_like(tokens)])
            passes = 3

        def eps_fn(z: torch.Tensor, timestep_index: torch.Tensor) -> torch.Tensor:
            x = z.repeat(passes, 1, 1, 1, 1).to(motion.dtype)
            eps = teacher(x, timestep_index.repeat(passes), tokens, bank).float()
            if scales is None:
                return eps
            s_a, s_r = scales
            return multi_cfg(*split_cfg_batch(eps), s_r=s_r, s_a=s_a)

        return ddim_solve(eps_fn, z_s, t_s, t_e, self.config.solver_steps_per_window, self.schedule)

    def forward(self, latents: torch.Tensor, reference: torch.Tensor, audio: torch.Tensor,
                generator: torch.Generator) -> dict:
        """{loss (scalar), l_distill, l_gt, r, w, t, s_a, s_r (B,)}; only ``loss`` carries gradient."""
        config, student, schedule = self.config, self.student, self.schedule
        m, batch, device = student.config.num_motion_frames, latents.shape[0], latents.device
        # 1. motion frames (augmented in training mode, "no motion" with motion_drop_rate), shared by teacher and student
        keep_motion = (torch.rand(batch, generator=generator, device=device) >= config.motion_drop_rate).float()
        motion = training_motion(latents[:, :m], keep_motion, config.motion_noise if self.training else 0.0, generator)
        x0 = latents[:, m:].float()
        # 2. t, its window, the window start from the forward process
        t = sample_t(batch, generator, device)
        t_s, t_e = self.windows.locate(t)
        alpha_s, alpha_e = schedule.alpha_bar(t_s), schedule.alpha_bar(t_e)
        noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
        z_s = schedule.add_noise(x0, noise, t_s)
        # 3. the teacher's window end, with the sample's guidance scales or dropped conditions
        if config.distills_cfg:
            s_a, s_r = sample_scales(batch, config, generator, device)
            keep_reference = keep_audio = torch.ones(batch, device=device)
            scales = (s_a, s_r)
        else:
            keep_reference, keep_audio = drop_masks(batch, config, generator, device)
            s_a = s_r = torch.full((batch,), float("nan"), device=device)
            scales = None
        z_e = self.teacher_window_end(motion, z_s, t_s, t_e, reference, audio, keep_reference, keep_audio, scales)
        # 4–5. the student's input on the line and its ε-form target; 6. the same for the real window end
        z_e_gt = gt_window_end(x0, noise, alpha_e)
        inputs = torch.cat([line_point(z_s, z_e, t, t_s, t_e), line_point(z_s, z_e_gt, t, t_s, t_e)])
        targets = torch.cat([eps_target(z_s, z_e, alpha_s, alpha_e), eps_target(z_s, z_e_gt, alpha_s, alpha_e)])
        # the distill and GT branches as one batch of 2B
        bank = student.encode_conditions(reference * keep_reference[:, None, None, None],
                                         motion * keep_reference[:, None, None, None, None])
        tokens = student.encode_audio(audio, x0.shape[1]) * keep_audio[:, None, None, None]
        bank = {k: v.repeat(2, 1, 1) for k, v in bank.items()}
        # Under CFG distillation the GT branch gets unit scales (s_a = s_r = 1: e = T_ra, the conditional
        # prediction): its target ε is unguided, so r = L_gt/L_distill then compares like with like (DESIGN step 7).
        ones = torch.ones_like(s_a)
        cfg_scales = (torch.cat([s_a, ones]), torch.cat([s_r, ones])) if scales is not None else None
        timesteps = schedule.model_timestep(t).repeat(2)  # N·t, as PeRFlow feeds its student (and its scheduler steps)
        prediction = student(inputs.to(motion.dtype), timesteps, tokens.repeat(2, 1, 1, 1), bank, cfg_scales=cfg_scales)
        per_sample = (prediction.float() - targets).pow(2).flatten(1).mean(1)  # denoised frames only
        l_distill, l_gt = per_sample.chunk(2)
        # 7. mixed supervision
        loss, r, w = self.supervision.combine(l_distill, l_gt)
        return {"loss": loss, "l_distill": l_distill.detach(), "l_gt": l_gt.detach(), "r": r, "w": w, "t": t,
                "s_a": s_a, "s_r": s_r}

    @staticmethod
    def summarize(out: dict) -> tuple[torch.Tensor, dict, dict]:
        """(loss, scalars, histograms) of a step for `fada.training.fit`: batch means of the losses, r and w (and
        of the sampled scales under CFG distillation); per-sample r, w, t and losses as histograms."""
        scalars = {"loss": out["loss"].item(), "l_distill": out["l_distill"].mean().item(),
                   "l_gt": out["l_gt"].mean().item(), "r_mean": out["r"].mean().item(), "w_mean": out["w"].mean().item()}
        if not torch.isnan(out["s_a"]).any():
            scalars.update(s_a_mean=out["s_a"].mean().item(), s_r_mean=out["s_r"].mean().item())
        histograms = {"r": out["r"], "w": out["w"], "t": out["t"], "l_distill_samples": out["l_distill"],
                      "l_gt_samples": out["l_gt"]}
        return out["loss"], scalars, histograms


def student_config(teacher_config: dict, train: DistillConfig) -> dict:
    """The configuration saved with the student: the teacher's model/codec, this run's settings under ``train``
    (``train.num_frames`` is the clip length `FadaPipeline` uses) and the teacher's own under ``teacher_train``."""
    config = {k: v for k, v in teacher_config.items() if k not in ("train", "sample")}
    config["model"] = {**teacher_config.get("model", {}), "cfg_variant": train.cfg_variant,
                       "cfg_num_tokens": train.cfg_num_tokens}
    config["train"] = asdict(train)
    config["teacher_train"] = teacher_config.get("train", {})
    config["sample"] = {k: v for k, v in MODE_DEFAULTS["fast"].items() if k in SAMPLE_KEYS}  # fast: its own mode
    return config


def _check_same_teacher(out_dir: Path, teacher_path: str) -> None:
    meta_path = out_dir / "final" / META_FILE
    if meta_path.is_file():
        previous = json.loads(meta_path.read_text()).get("teacher", {}).get("path")
        if previous and previous != teacher_path:
            raise CheckpointError(f"{out_dir} holds a distillation from teacher {previous}, not {teacher_path}; "
                                  "use that teacher to resume or a fresh output directory")


def _init_from_student(student: FadaModel, path: str | os.PathLike, teacher_path: str, device) -> dict:
    """Load an earlier student's (EMA) weights into ``student``; it must come from the same teacher and use the
    same CFG conditioning. Returns its lineage for the new student's meta."""
    init_dir = resolve_checkpoint(path)
    meta = json.loads((init_dir / META_FILE).read_text())
    if meta.get("kind") != "student":
        raise CheckpointError(f"{init_dir} holds a {meta.get('kind')}, not a student to continue from")
    if meta.get("teacher", {}).get("path") != teacher_path:
        raise CheckpointError(f"{init_dir} was distilled from teacher {meta.get('teacher', {}).get('path')}, "
                              f"not {teacher_path}; continue from a student of this teacher")
    earlier, _, _ = load_inference_checkpoint(init_dir, device)
    check_same_config(student, dict(earlier.config), str(init_dir))
    student.load_state_dict(earlier.state_dict())
    return {"path": str(init_dir.resolve()), **{k: meta.get(k) for k in ("view", "step")}}


def distill_student(data_dir: str | os.PathLike, view: str, teacher: str | os.PathLike, out_dir: str | os.PathLike, *,
                    config: dict | None = None, steps: int, device: str | None = None,
                    init_student: str | os.PathLike | None = None, progress: bool = True) -> TrainResult:
    """Distil ``teacher`` (a teacher checkpoint or training output) into a student on ``view`` for ``steps`` total
    steps, resuming when ``out_dir`` holds a training state. ``config``: `DistillConfig` overrides.
    ``init_student``: a student of the same teacher whose weights a fresh run starts from."""
    runtime = setup_runtime(device)
    teacher_dir = resolve_checkpoint(teacher)
    lineage = view_lineage(data_dir, view)  # an alias is resolved once: the whole run reads one immutable view
    teacher_model, codec, teacher_meta = load_inference_checkpoint(teacher_dir, runtime.device)
    if teacher_meta.get("kind") != "teacher":
        raise CheckpointError(f"{teacher_dir} holds a {teacher_meta.get('kind')}, not a teacher")
    teacher_config = teacher_meta.get("config", {})
    train = DistillConfig.from_dict({"num_frames": teacher_config.get("train", {}).get("num_frames", 16),
                                     **(config or {})})
    _check_same_teacher(Path(out_dir), str(teacher_dir.resolve()))
    torch.manual_seed(train.seed)
    student = student_from_teacher(teacher_model, train.cfg_variant, train.cfg_num_tokens).train()
    teacher_lineage = {k: teacher_meta.get(k) for k in ("data_dir", "view", "shards", "clips", "step")}
    meta = {"kind": "student", **lineage, "config": student_config(teacher_config, train),
            "teacher": {"path": str(teacher_dir.resolve()), **teacher_lineage}}

    def start_from_init_student() -> dict:
        return {"init_student": _init_from_student(student, init_student, str(teacher_dir.resolve()), runtime.device)}

    return fit(DistillObjective(student, teacher_model, train), model=student, codec=codec, data_dir=data_dir,
               view=lineage["view"], config=train, runtime=runtime, steps=steps, out_dir=out_dir, meta=meta,
               scheduler=make_scheduler("fast", num_time_windows=train.num_windows), desc="distill",
               progress=progress, on_fresh_start=start_from_init_student if init_student is not None else None)
