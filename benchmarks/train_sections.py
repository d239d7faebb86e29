"""The training side of `benchmarks/model_gpu.py`: a distillation step and the data loader against the step rate.

* `distill_step_benchmark` — one PeRFlow distillation step exactly as `fada.distill.distill_student` runs it
  (`DistillObjective`: the frozen teacher's DDIM solve over ``solver_steps_per_window`` steps, 3 passes per step
  when CFG is distilled, then the student on the distill and GT branches as one batch of 2B; autocast, backward,
  gradient clipping, AdamW, EMA update): seconds per step and peak GPU memory (`torch.cuda.max_memory_allocated`).
* `largest_batch` — the largest batch whose step fits, by doubling then bisecting, catching
  `torch.cuda.OutOfMemoryError` (``memory_cap_gib`` emulates a smaller card with
  `torch.cuda.set_per_process_memory_fraction`, e.g. 80 on a 141 GB H200).
* `loader_benchmark` — `shards.reader.ClipWindowDataset` through a `DataLoader` with N workers on shards written
  with the ingest encoder (`benchmarks/reader.py`): windows/s after the first batch, float32 and uint8 frames,
  and the ratio to the windows/s a training step consumes (batch / seconds per step).
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fada.model import student_from_teacher
from filters.media_contract import SAMPLES_PER_FRAME


def free_memory(device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def make_distill_step(teacher, device, *, frames: int, side: int, solver_steps: int, cfg_variant: str, batch: int,
                      checkpointing: bool):
    """(step, student): a closure running one distillation step on a fixed random batch (the reader is measured
    separately) and the student it trains."""
    from fada.distill import DistillConfig, DistillObjective
    from fada.training import autocast, ema_init, ema_update

    student = student_from_teacher(teacher, cfg_variant).train()
    if checkpointing:
        student.enable_gradient_checkpointing()
    config = DistillConfig(num_frames=frames, solver_steps_per_window=solver_steps, cfg_variant=cfg_variant)
    objective = DistillObjective(student, teacher, config)
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-5)
    ema = ema_init(student)
    motion = teacher.config.num_motion_frames
    latents = torch.randn(batch, motion + frames, teacher.latent_channels, side, side, device=device)
    reference = latents[:, motion].clone()
    audio = torch.randn(batch, (frames + 2 * teacher.audio_context_frames) * SAMPLES_PER_FRAME, device=device) * 0.1
    generator = torch.Generator(device).manual_seed(0)
    precision = "bf16" if device.type == "cuda" else "no"
    count = [0]

    def step():
        with autocast(precision, device):
            out = objective(latents, reference, audio, generator)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        count[0] += 1
        ema_update(ema, student, 0.9999, count[0])

    return step, student


def distill_step_benchmark(teacher, device, timed, *, frames: int, side: int, solver_steps: int, cfg_variant: str,
                           batch: int = 1, checkpointing: bool = True, repeats: int = 3) -> dict:
    """Median seconds per distillation step (after one warm-up step) and peak memory."""
    row = {"solver_steps_per_window": solver_steps, "cfg_variant": cfg_variant, "batch": batch,
           "gradient_checkpointing": checkpointing}
    free_memory(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    try:
        step, _ = make_distill_step(teacher, device, frames=frames, side=side, solver_steps=solver_steps,
                                 cfg_variant=cfg_variant, batch=batch, checkpointing=checkpointing)
        row["seconds"] = round(statistics.median(timed(step, device, repeats)), 3)
        passes = 3 if cfg_variant != "none" else 1
        row["teacher_nfe_per_step"] = solver_steps * passes
    except torch.cuda.OutOfMemoryError:
        row["out_of_memory"] = True
    finally:
        step = None
        free_memory(device)
    if device.type == "cuda":
        row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return row


def fits(teacher, device, batch: int, **kwargs) -> bool:
    """Whether two distillation steps of ``batch`` run without running out of GPU memory."""
    free_memory(device)
    try:
        step, _ = make_distill_step(teacher, device, batch=batch, **kwargs)
        step()
        step()
        torch.cuda.synchronize()
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        step = None
        free_memory(device)


def largest_batch(teacher, device, *, limit: int = 64, **kwargs) -> dict:
    """The largest batch ≤ ``limit`` whose distillation step fits (CUDA only): doubling, then bisection."""
    if device.type != "cuda":
        return {"skipped": "CUDA only (the search catches torch.cuda.OutOfMemoryError)"}
    start = time.perf_counter()
    good, bad = 0, None
    batch = 1
    while batch <= limit and fits(teacher, device, batch, **kwargs):
        good, batch = batch, batch * 2
    if batch <= limit:
        bad = batch
    while bad is not None and bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if fits(teacher, device, middle, **kwargs) else (good, middle)
    return {"largest_batch": good, "first_failing": bad, "limit": limit, "search_seconds": round(time.perf_counter() - start, 1)}


def write_loader_data(root: Path, *, n_clips: int, seconds: float, size: int, copies: int, per_shard: int) -> Path:
    """Shards of rendered clips (the ingest encoder's settings) with a view ``all``; returns the data dir."""
    from benchmarks.reader import render_clips, write_dataset

    (root / "render").mkdir(parents=True, exist_ok=True)
    write_dataset(root, render_clips(root / "render", n_clips=n_clips, seconds=seconds, size=size),
                  copies=copies, per_shard=per_shard)
    return root


def loader_rate(data_dir: Path, *, workers: int, batch: int, frames: int, motion: int, size: int, uint8: bool,
                audio_context: int = 2, min_windows: int = 64) -> dict:
    """Windows/s of a DataLoader over ``view all`` after its first batch (worker start-up excluded), epochs repeated
    until ``min_windows`` windows have been timed."""
    from shards.reader import ClipWindowDataset, collate_windows

    dataset = ClipWindowDataset(data_dir, "all", n_frames=frames, n_motion_frames=motion, frame_size=size,
                                windows_per_clip=1, audio_context_frames=audio_context, uint8_frames=uint8)
    timed_windows, start, epoch = 0, None, 0
    while timed_windows < min_windows:
        dataset.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers, collate_fn=collate_windows,
                                             drop_last=True, pin_memory=torch.cuda.is_available())
        for got in loader:
            if start is None:
                start = time.perf_counter()  # the first batch pays for worker start-up
                continue
            timed_windows += len(got["key"])
        epoch += 1
    return {"workers": workers, "uint8": uint8, "windows_per_s": round(timed_windows / (time.perf_counter() - start), 2)}


def loader_benchmark(*, workers: list[int], batch: int, frames: int, motion: int, size: int, n_clips: int,
                     seconds: float, copies: int, step_seconds: dict[str, float], min_windows: int) -> dict:
    """Loader windows/s per worker count (float32 frames, then uint8 at the largest count) against the windows/s
    each training step named in ``step_seconds`` consumes at ``batch``."""
    torch.set_num_threads(1)  # as in a DataLoader worker; the main process only collates
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = write_loader_data(Path(tmp), n_clips=n_clips, seconds=seconds, size=size, copies=copies,
                                     per_shard=max(1, n_clips * copies // max(2 * max(workers), 1)))
        rows = [loader_rate(data_dir, workers=n, batch=batch, frames=frames, motion=motion, size=size, uint8=False,
                            min_windows=min_windows) for n in workers]
        rows.append(loader_rate(data_dir, workers=max(workers), batch=batch, frames=frames, motion=motion, size=size,
                                uint8=True, min_windows=min_windows))
    needed = {name: round(batch / seconds, 3) for name, seconds in step_seconds.items() if seconds}
    best = max(row["windows_per_s"] for row in rows)
    return {"frames": f"{frames}+{motion} at {size}²", "batch": batch, "rows": rows,
            "step_windows_per_s": needed,
            "loader_over_step_rate": {name: round(best / rate, 2) for name, rate in needed.items()}}
