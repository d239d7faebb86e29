"""The one training loop (`fit`) of teacher training and distillation, and what it is made of: the common
keywords, devices and ranks, the window stream with a resumable position, latents from a batch, EMA, mixed
precision, logging (progress bar, JSON lines, TensorBoard), training states and the exported EMA model.

`fit` is nanoGPT's loop: teacher training (`fada.train_teacher`) and distillation (`fada.distill`) each build
their model and supply only an objective (`TeacherObjective`, `DistillObjective`); optimisation, exact resume,
EMA, checkpoints, export and logs are the same code for both.

More than one GPU or node runs through torchrun (``torchrun --nproc-per-node 8 -m flows.cli train-teacher …``):
`setup_distributed` reads its RANK/WORLD_SIZE/LOCAL_RANK, the reader splits shards by rank, and the loss
module is wrapped in DistributedDataParallel. Rank 0 alone writes checkpoints and logs.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

import torch

from fada.checkpoint import load_training_state, save_inference_checkpoint, save_training_state, training_states
from filters.config_fields import from_dict


@dataclass
class TrainingRunConfig:
    """Keywords of a training run that teacher training and distillation share: optimisation, condition
    dropout, precision, EMA, checkpoints, logging and data. Subclasses add their own and extend ``check``."""

    num_frames: int = 16
    batch_size: int = 1
    learning_rate: float = 1e-5
    weight_decay: float = 1e-2
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    drop_audio_rate: float = 0.1   # → ε(r,∅)
    drop_both_rate: float = 0.05   # → ε(∅,∅)
    motion_drop_rate: float = 0.1
    motion_noise: float = 0.2      # σ_max of the motion frames' noise augmentation (fada.motion_frames)
    mixed_precision: str = "no"    # no | bf16 | fp16
    gradient_checkpointing: bool = False
    ema_decay: float = 0.9999
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 1
    windows_per_clip: int = 2
    shuffle_buffer: int = 64
    num_workers: int = 0
    seed: int = 0

    section: ClassVar[str] = "train"  # the configuration section named in error messages

    @classmethod
    def from_dict(cls, values: dict):
        config = from_dict(cls, cls.coerce(dict(values)), section=cls.section)
        config.check()
        return config

    @classmethod
    def coerce(cls, values: dict) -> dict:
        """Values as YAML/JSON give them → field types (e.g. lists → tuples); identity here."""
        return values

    def check(self) -> None:
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision {self.mixed_precision!r}: use no, bf16 or fp16")


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_runtime(device: str | None = None) -> Runtime:
    """The device (``cuda`` when available unless given) and, under torchrun, the process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world_size > 1 else 0
    if device is None:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    return Runtime(torch.device(device), rank, world_size)


def wrap_distributed(module: torch.nn.Module, runtime: Runtime) -> torch.nn.Module:
    if runtime.world_size == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)


def autocast(precision: str, device: torch.device):
    """bf16/fp16 autocast for ``precision`` ``bf16``/``fp16``; a no-op for ``no``."""
    if precision == "no":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device.type, dtype=dtype)


class WindowStream:
    """Endless batches of a view's windows, epoch after epoch, with a position that resumes exactly.

    The reader's shard order, shuffle and window starts depend only on (seed, epoch), so skipping the batches
    already consumed in the current epoch reproduces the stream.
    """

    def __init__(self, dataset, batch_size: int, num_workers: int = 0, position: dict | None = None):
        from shards.reader import collate_windows

        self.dataset, self.batch_size, self.num_workers = dataset, batch_size, num_workers
        self.collate = collate_windows
        position = position or {}
        self.epoch, self.batch_in_epoch = position.get("epoch", 0), position.get("batch_in_epoch", 0)
        self._iterator = None

    @property
    def position(self) -> dict:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def _start_epoch(self, skip: int) -> None:
        self.dataset.set_epoch(self.epoch)
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=self.batch_size, collate_fn=self.collate,
                                             num_workers=self.num_workers, drop_last=True)
        self._iterator = iter(loader)
        for _ in range(skip):
            next(self._iterator)

    def __next__(self) -> dict:
        if self._iterator is None:
            self._start_epoch(self.batch_in_epoch)
        for _ in range(2):
            try:
                batch = next(self._iterator)
                self.batch_in_epoch += 1
                return batch
            except StopIteration:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                self._start_epoch(0)
        data = self.dataset
        raise RuntimeError(f"rank {data.rank} of {data.world_size}: the view yields no full batch of {self.batch_size} "
                           f"windows from its {len(data.keys_by_url)} shards (shards are split across ranks, so use at "
                           f"most that many processes; reader skip counts: {dict(data.stats.counts)})")


@torch.no_grad()
def batch_latents(batch: dict, codec, device: torch.device, dtype=torch.float32):
    """(latents (B, M+F, C, h, w), reference latents (B, C, h, w), audio (B, samples)) of a reader batch.

    The reference image is the reader's, a frame outside the window (DESIGN.md §3, `shards.reader`), as at
    inference.
    """
    from shards.reader import to_unit_range

    clip = to_unit_range(torch.cat([batch["motion_frames"], batch["frames"], batch["reference"][:, None]], 1), device)
    batch_size, frames = clip.shape[:2]
    latents = codec.encode(clip.flatten(0, 1)).view(batch_size, frames, -1, *codec_latent_hw(codec)).to(dtype)
    audio = batch["audio"].to(device)
    return latents[:, :-1], latents[:, -1], audio


def codec_latent_hw(codec) -> tuple[int, int]:
    side = codec.size if codec.kind == "pixel" else codec.size // 8
    return side, side


def ema_init(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone().float() for k, v in model.state_dict().items()}


@torch.no_grad()
def ema_update(ema: dict, model: torch.nn.Module, decay: float, step: int) -> None:
    """EMA with the usual warm-up: the decay used at ``step`` (1-based) is min(decay, (1 + step) / (10 + step)),
    so short runs are not dominated by the initial weights."""
    decay = min(decay, (1 + step) / (10 + step))
    for key, value in model.state_dict().items():
        if value.dtype.is_floating_point:
            ema[key].lerp_(value.float(), 1.0 - decay)
        else:
            ema[key].copy_(value)


class TrainLogger:
    """Per-step scalars to ``train_log.jsonl`` and TensorBoard (``tensorboard/``), histograms to TensorBoard."""

    def __init__(self, out_dir: str | os.PathLike, enabled: bool = True, start_step: int = 0):
        self.enabled = enabled
        self.path = Path(out_dir) / "train_log.jsonl"
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(out_dir) / "tensorboard"), purge_step=start_step + 1 if start_step else None)
            if start_step:
                self._truncate_after(start_step)

    def _truncate_after(self, step: int) -> None:
        """Drop log lines past ``step`` (written after the checkpoint a resume starts from)."""
        if self.path.exists():
            lines = [line for line in self.path.read_text().splitlines() if json.loads(line)["step"] <= step]
            self.path.write_text("".join(line + "\n" for line in lines))

    def log(self, step: int, scalars: dict, histograms: dict | None = None) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as fh:
            fh.write(json.dumps({"step": step, **scalars}) + "\n")
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)
        for name, values in (histograms or {}).items():
            self.writer.add_histogram(name, values.detach().float().cpu(), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_log(out_dir: str | os.PathLike) -> list[dict]:
    path = Path(out_dir) / "train_log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@dataclass
class TrainResult:
    out_dir: str
    steps: int
    resumed_from: int
    final_loss: float
    checkpoint: str


def export_ema(directory: Path, model: torch.nn.Module, ema: dict, codec, meta: dict, scheduler) -> None:
    """Save the EMA weights as the inference checkpoint with its ``scheduler`` (the training weights stay in
    the model)."""
    live = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.to(live[k].dtype) for k, v in ema.items()})
    try:
        save_inference_checkpoint(directory, model, codec, json.loads(json.dumps(meta, default=str)), scheduler)
    finally:
        model.load_state_dict(live)


def fit(objective: torch.nn.Module, *, model: torch.nn.Module, codec, data_dir: str | os.PathLike, view: str,
        config: TrainingRunConfig, runtime: Runtime, steps: int, out_dir: str | os.PathLike, meta: dict, scheduler,
        desc: str, progress: bool = True, on_fresh_start: Callable[[], dict | None] | None = None) -> TrainResult:
    """Train ``model`` (the parameters ``objective`` optimises) on ``view``'s windows up to ``steps`` total steps.

    ``objective(latents, reference, audio, generator)`` gives an output whose ``objective.summarize(output)`` is
    (scalar loss, scalars to log, histograms to log). A run whose ``out_dir`` holds a training state resumes
    from its last one exactly (weights, EMA, optimizer, LR schedule, RNGs, data position); otherwise
    ``on_fresh_start`` (when given) runs first and what it returns is added to ``meta``. Per step: AdamW with
    constant-with-warmup LR, optional fp16 grad scaling, grad clipping at ``max_grad_norm``, EMA. Every
    ``checkpoint_every`` steps and at the last one, rank 0 saves a training state and exports the EMA weights
    to ``out_dir/final`` with ``meta`` and the step, and ``scheduler``'s config (the one it samples with).
    """
    from diffusers.optimization import get_scheduler
    from tqdm.auto import tqdm

    from shards.reader import ClipWindowDataset

    out_dir = Path(out_dir)
    if config.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=config.warmup_steps)
    generator = torch.Generator(runtime.device).manual_seed(config.seed + runtime.rank)
    start_step, ema, position = 0, None, None
    states = training_states(out_dir)
    if states:
        start_step, ema, position = load_training_state(states[-1], model=model, optimizer=optimizer,
                                                        lr_scheduler=lr_scheduler, generator=generator,
                                                        device=runtime.device)
    elif on_fresh_start is not None:
        meta = {**meta, **(on_fresh_start() or {})}
    ema = ema if ema is not None else ema_init(model)
    dataset = ClipWindowDataset(data_dir, view, n_frames=config.num_frames, n_motion_frames=model.config.num_motion_frames,
                                frame_size=codec.size, windows_per_clip=config.windows_per_clip,
                                shuffle_buffer=config.shuffle_buffer, seed=config.seed,
                                audio_context_frames=model.audio_context_frames)
    stream = WindowStream(dataset, config.batch_size, config.num_workers, position)
    wrapped = wrap_distributed(objective, runtime)
    logger = TrainLogger(out_dir, enabled=runtime.is_main, start_step=start_step)
    bar = tqdm(range(start_step, steps), initial=start_step, total=steps, desc=desc,
               disable=not (progress and runtime.is_main))
    scaler = torch.amp.GradScaler(enabled=config.mixed_precision == "fp16")
    loss_value = float("nan")
    for step in bar:
        latents, reference, audio = batch_latents(next(stream), codec, runtime.device)
        with autocast(config.mixed_precision, runtime.device):
            output = wrapped(latents, reference, audio, generator)
        loss, scalars, histograms = objective.summarize(output)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        lr_scheduler.step()
        ema_update(ema, model, config.ema_decay, step + 1)
        loss_value = loss.item()
        bar.set_postfix(loss=f"{loss_value:.4f}")
        if (step + 1) % config.log_every == 0:
            logger.log(step + 1, {**scalars, "grad_norm": float(grad_norm), "lr": lr_scheduler.get_last_lr()[0]},
                       histograms=histograms)
        if runtime.is_main and ((step + 1) % config.checkpoint_every == 0 or step + 1 == steps):
            save_training_state(out_dir, step + 1, model=model, ema=ema, optimizer=optimizer, lr_scheduler=lr_scheduler,
                                generator=generator, data_position=stream.position, keep=config.keep_checkpoints)
            export_ema(out_dir / "final", model, ema, codec, {**meta, "step": step + 1}, scheduler)
    logger.close()
    return TrainResult(str(out_dir), steps, start_step, loss_value, str(out_dir / "final"))
