"""Checkpoints on disk: inference checkpoints (what `fada generate` loads) and training states (exact resume).

An **inference checkpoint** directory holds ``model/`` (FadaModel config.json + safetensors), ``codec/``,
``scheduler/scheduler_config.json`` (the scheduler it samples with, as a diffusers pipeline carries it: DDIM
with SD1.5's settings for a teacher, `PeRFlowScheduler` with the student's windows for a student;
`fada.pipeline.checkpoint_scheduler` builds it back) and ``fada.json``: the kind (teacher or student), the
full configuration (its ``sample`` section: the sampling defaults) and the lineage (data directory, view,
shards read, steps, teacher for a student). A **training state**
``checkpoints/step-NNNNNNN/`` adds the raw weights, EMA weights (safetensors), optimizer and LR-scheduler
state (loaded with ``weights_only=True``), RNG state and the data position.

Directories are written under a temporary name and renamed, so a crash never leaves a half-written one visible.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from fada.codec import load_codec
from fada.model import FadaModel

META_FILE = "fada.json"
SCHEDULER_DIR = "scheduler"
STATE_PREFIX = "step-"


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or from another configuration."""


def _replace_dir(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``, replacing an existing ``final`` (old copy moved aside, then deleted)."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


def save_inference_checkpoint(directory: str | os.PathLike, model: FadaModel, codec, meta: dict, scheduler=None) -> Path:
    """Write the checkpoint; ``scheduler`` (a diffusers-style scheduler) goes to ``scheduler/`` with its config."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp / "model", safe_serialization=True)
    codec.save(tmp / "codec")
    if scheduler is not None:
        scheduler.save_config(tmp / SCHEDULER_DIR)
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    _replace_dir(tmp, directory)
    return directory


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A training output directory (its ``final/``) or an inference checkpoint directory itself."""
    path = Path(path)
    for candidate in (path, path / "final"):
        if (candidate / META_FILE).is_file() and (candidate / "model").is_dir():
            return candidate
    raise CheckpointError(f"{path} is not a FADA checkpoint (expected {META_FILE} and model/ in it or in final/)")


def newest_checkpoint(path: str | os.PathLike, kind: str) -> Path | None:
    """``path`` itself when it is a checkpoint (its kind is checked where it is loaded); for a directory of
    training outputs, the one of ``kind`` whose ``final/`` was exported last; None when there is none (yet)."""
    path = Path(path)
    if (path / META_FILE).is_file() or (path / "final" / META_FILE).is_file():
        return resolve_checkpoint(path)
    found = [d for d in path.glob("*/final") if (d / META_FILE).is_file()
             and json.loads((d / META_FILE).read_text()).get("kind") == kind]
    return max(found, key=lambda d: (d / META_FILE).stat().st_mtime_ns, default=None)


def load_inference_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu",
                              dtype: torch.dtype = torch.float32) -> tuple[FadaModel, object, dict]:
    """(model, codec, meta); weights load from safetensors only."""
    directory = resolve_checkpoint(path)
    meta = json.loads((directory / META_FILE).read_text())
    model = FadaModel.from_pretrained(directory / "model", use_safetensors=True).to(device)
    if model.dtype != dtype:
        model = model.to(dtype=dtype)
    model.eval()
    codec = load_codec(directory / "codec").to(device=device, dtype=dtype)
    return model, codec, meta


def check_same_config(model: FadaModel, saved_config: dict, where: str) -> None:
    """Raise `CheckpointError` naming the differing keys when ``saved_config`` is not ``model``'s."""
    current = {k: v for k, v in json.loads(json.dumps(dict(model.config), default=str)).items() if not k.startswith("_")}
    saved = {k: v for k, v in saved_config.items() if not k.startswith("_")}
    differing = sorted(k for k in set(current) | set(saved) if current.get(k) != saved.get(k))
    if differing:
        raise CheckpointError(f"{where} was saved from another model configuration (differs in {differing}); "
                              "use the configuration it was trained with or a fresh output directory")


def training_states(out_dir: str | os.PathLike) -> list[Path]:
    root = Path(out_dir) / "checkpoints"
    return sorted(p for p in root.glob(f"{STATE_PREFIX}*") if p.is_dir() and not p.name.endswith((".tmp", ".old")))


def save_training_state(out_dir: str | os.PathLike, step: int, *, model: FadaModel, ema: dict, optimizer, lr_scheduler,
                        generator: torch.Generator, data_position: dict, keep: int = 2) -> Path:
    final = Path(out_dir) / "checkpoints" / f"{STATE_PREFIX}{step:07d}"
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / "config.json").write_text(json.dumps(dict(model.config), default=str))
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    save_file({k: v.contiguous().cpu() for k, v in ema.items()}, str(tmp / "ema.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict(),
                "generator": generator.get_state(), "torch_rng": torch.get_rng_state()}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "data_position": data_position}))
    _replace_dir(tmp, final)
    for old in training_states(out_dir)[:-keep]:
        shutil.rmtree(old)
    return final


def load_training_state(state_dir: Path, *, model: FadaModel, optimizer, lr_scheduler, generator: torch.Generator,
                        device: str | torch.device) -> tuple[int, dict, dict]:
    """Restore everything in place; returns (step, EMA weights, data position)."""
    check_same_config(model, json.loads((state_dir / "config.json").read_text()), str(state_dir))
    model.load_state_dict(load_file(str(state_dir / "model.safetensors"), device=str(device)))
    ema = load_file(str(state_dir / "ema.safetensors"), device=str(device))
    states = torch.load(state_dir / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(states["optimizer"])
    lr_scheduler.load_state_dict(states["lr_scheduler"])
    generator.set_state(states["generator"])
    torch.set_rng_state(states["torch_rng"])
    state = json.loads((state_dir / "state.json").read_text())
    return state["step"], ema, state["data_position"]
