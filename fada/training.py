"""What the teacher and student training loops share: their common keywords, devices and ranks, the window
stream with a resumable position, latents from a batch, EMA, mixed precision, and logging (progress bar,
JSON lines, TensorBoard).

More than one GPU or node runs through torchrun (``torchrun --nproc-per-node 8 -m flows.cli train-teacher …``):
`setup_distributed` reads its RANK/WORLD_SIZE/LOCAL_RANK, the reader splits shards by rank, and the loss
module is wrapped in DistributedDataParallel. Rank 0 alone writes checkpoints and logs.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, fields
from typing import ClassVar
from pathlib import Path

import torch


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
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown {cls.section} keys {sorted(unknown)}; allowed: {sorted(known)}")
        config = cls(**cls.coerce(dict(values)))
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
def batch_latents(batch: dict, codec, device: torch.device, generator: torch.Generator, dtype=torch.float32):
    """(latents (B, M+F, C, h, w), reference latents (B, C, h, w), audio (B, samples)) of a reader batch.

    The reference image is a frame of the window drawn per sample (DESIGN.md §3: any frame of the clip).
    """
    from shards.reader import to_unit_range

    clip = to_unit_range(torch.cat([batch["motion_frames"], batch["frames"]], 1), device)  # uint8 or [-1, 1]
    batch_size, frames = clip.shape[:2]
    latents = codec.encode(clip.flatten(0, 1)).view(batch_size, frames, -1, *codec_latent_hw(codec, clip)).to(dtype)
    motion = batch["motion_frames"].shape[1]
    picks = torch.randint(motion, frames, (batch_size,), generator=generator, device=device)
    reference = latents[torch.arange(batch_size, device=device), picks]
    audio = batch["audio"].to(device)
    return latents, reference, audio


def codec_latent_hw(codec, clip: torch.Tensor) -> tuple[int, int]:
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
