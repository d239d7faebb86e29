"""Model and training configurations: the `tiny` and `sd15` presets, or a YAML file with the same keys.

A configuration has four sections, each a dict of keyword arguments:

* ``model`` — `FadaModel.__init__` keywords: ``unet`` (a diffusers `UNet2DConditionModel` config shared by the
  reference and denoising nets), ``audio`` (audio encoder), ``num_motion_frames``, ``cfg_variant`` …;
* ``codec`` — `fada.codec.make_codec` keywords: ``kind: pixel`` (tiny models work on downsampled pixels) or
  ``kind: vae`` (an `AutoencoderKL`, from ``path`` when given, else randomly initialised from ``vae``);
* ``train`` — `fada.train_teacher.TeacherTrainConfig` keywords;
* ``sample`` — sampling defaults (steps, multi-CFG scales of paper eq. 9) of the checkpoint's own mode: teacher for a
  teacher, fast for a student (`fada.pipeline.sample_defaults`; explicit arguments win).

Unknown sections or keys are errors. ``sd15_dir`` (a local Stable Diffusion 1.5 directory in the diffusers
layout) initialises both UNets and the VAE from it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from fada.train_teacher import TeacherTrainConfig
from filters.config_fields import ConfigError, allowed_paths, apply_dotted, check_keys, parse_override

SECTIONS = ("model", "codec", "train", "sample", "sd15_dir")

TINY_UNET = {
    "sample_size": 32,
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "cross_attention_dim": 64,
    "attention_head_dim": 4,
    "norm_num_groups": 8,
}

# Stable Diffusion 1.5's UNet (runwayml/stable-diffusion-v1-5 unet/config.json).
SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}

SD15_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}

PRESETS = {
    "tiny": {
        "model": {
            "unet": TINY_UNET,
            "audio": {"kind": "mel", "num_tokens": 4, "hidden_dim": 64, "context_frames": 2},
            "num_motion_frames": 2,
        },
        "codec": {"kind": "pixel", "size": 32},
        "train": {"num_frames": 8, "batch_size": 2, "learning_rate": 1e-3, "mixed_precision": "no",
                  "ema_decay": 0.99, "checkpoint_every": 50},
        "sample": {"num_inference_steps": 25, "guidance_reference": 2.5, "guidance_audio": 6.5},
    },
    "sd15": {
        "model": {
            "unet": SD15_UNET,
            "audio": {"kind": "mel", "num_tokens": 32, "hidden_dim": 512, "context_frames": 2},
            "num_motion_frames": 2,
        },
        "codec": {"kind": "vae", "size": 512, "vae": SD15_VAE},
        "train": {"num_frames": 16, "batch_size": 1, "learning_rate": 1e-5, "mixed_precision": "bf16",
                  "gradient_checkpointing": True, "ema_decay": 0.9999, "checkpoint_every": 1000},
        "sample": {"num_inference_steps": 25, "guidance_reference": 2.5, "guidance_audio": 6.5},
    },
}


def load_config(name_or_path: str | os.PathLike) -> dict:
    """A deep copy of a preset (``tiny``, ``sd15``) or a YAML file's configuration, checked for unknown keys."""
    if str(name_or_path) in PRESETS:
        return copy.deepcopy(PRESETS[str(name_or_path)])
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"config {str(name_or_path)!r} is neither a preset ({', '.join(PRESETS)}) nor a file")
    config = yaml.safe_load(path.read_text()) or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of sections {SECTIONS}")
    base = config.pop("base", None)
    merged = load_config(base) if base else {}
    try:
        check_keys(config, SECTIONS, noun="sections")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    for section, values in config.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section].update(values)
        else:
            merged[section] = values
    return merged


def resolve_config(name_or_path: str | os.PathLike, overrides: Mapping[str, Any] | Iterable[str] = (),
                   sd15_dir: str | None = None) -> dict:
    """`load_config` with overrides: ``--set`` strings (``"train.num_frames=2"``) or a mapping, dotted
    (``{"train.num_frames": 2}``) or nested (``{"train": {"num_frames": 2}}``); ``sd15_dir`` set when given.

    Paths are checked: the sections, and in ``train`` the `TeacherTrainConfig` keys; ``model`` and ``codec``
    keys are checked by the model and codec constructors.
    """
    config = load_config(name_or_path)
    if not isinstance(overrides, Mapping):
        overrides = dict(parse_override(pair) for pair in overrides)
    allowed = {"model": None, "codec": None, "train": allowed_paths(TeacherTrainConfig),
               "sample": config.get("sample"), "sd15_dir": None}
    resolved = apply_dotted(config, overrides, allowed=allowed)
    if sd15_dir:
        resolved["sd15_dir"] = sd15_dir
    return resolved
