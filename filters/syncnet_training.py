"""Train a SyncNet sync expert, self-supervised, on clips in memory (no labels: sync is the label).

As SyncNet (Chung & Zisserman 2016) and LatentSync's StableSyncNet are trained: a 5-frame face-crop window
and the 0.2 s of MFCCs under the same frames form a positive pair; the same video window with audio taken
``min_shift``..``max_shift`` frames earlier or later in the same clip (a time-shifted negative), or from
another clip (a mismatched negative, share ``other_clip_share``), forms a negative pair. The loss is binary
cross-entropy on the cosine similarity of the two embeddings mapped to [0, 1], p = (1 + cos) / 2, as
LatentSync's and Wav2Lip's experts use; embeddings are L2-normalised (``SyncNetModel(normalize=True)``), so
the scorer's Euclidean distance is √(2 − 2 cos).

Validation (held-out clips: other sources, or the later part of each clip, see ``split_clips``):

* ``val_acc`` — accuracy of in-sync vs time-shifted pairs (cos > 0 means "in sync"), balanced, on a fixed
  set of windows; chance is 0.5;
* ``val_offset_ok`` — share of held-out clips whose scorer offset (least mean distance over ±``max_shift``,
  exactly what ``SyncNetScorer`` reports) is within ±1 frame of 0, the true offset of untouched clips;
* ``val_sync_conf`` — their median Sync-C on this expert's scale.

This module knows clips only as arrays (``SyncClip``); reading them from shards is ``shards.syncnet_data``.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from filters.clip_data import ClipData
from filters.config_fields import check_keys, from_dict
from filters.sync_columns import MAX_SHIFT_FRAMES
from filters.syncnet import (MFCC_STEPS_PER_FRAME, MFCC_WINDOW_STEPS, WINDOW_FRAMES, SyncNetModel, clip_inputs,
                             embed_windows, save_syncnet, shifted_distances, window_tensors)

LOG_FILE = "train_log.jsonl"


@dataclass
class SyncClip:
    """One clip as SyncNet sees it: face crops (N, S, S, 3) uint8 BGR and MFCCs (13, T) at 100 Hz.
    ``group`` is what held-out splitting keeps together (the source id)."""

    key: str
    group: str
    crops: np.ndarray
    mfcc: np.ndarray

    @property
    def n_windows(self) -> int:
        """Window starts f whose frames f..f+4 and MFCC steps 4f..4f+19 both lie inside the clip."""
        by_audio = (self.mfcc.shape[1] - MFCC_WINDOW_STEPS) // MFCC_STEPS_PER_FRAME + 1
        return max(0, min(len(self.crops) - WINDOW_FRAMES + 1, by_audio))

    def span(self, first: int, end: int, suffix: str) -> "SyncClip":
        """Frames [first, end) with their MFCCs only: nothing of the rest of the clip reaches its windows."""
        steps = slice(MFCC_STEPS_PER_FRAME * first, MFCC_STEPS_PER_FRAME * end)
        return replace(self, key=f"{self.key}{suffix}", crops=self.crops[first:end], mfcc=self.mfcc[:, steps])


def sync_clip(clip: ClipData, crop_size: int, group: str) -> SyncClip:
    """A scored clip's SyncNet inputs, cut exactly as ``SyncNetScorer`` cuts them."""
    crops, mfcc, _ = clip_inputs(clip, crop_size)
    return SyncClip(key=clip.key, group=group, crops=crops, mfcc=mfcc)


def split_clips(clips: list[SyncClip], held_out: float = 0.2, by: str = "auto", min_groups: int = 5,
                seed: int = 0) -> tuple[list[SyncClip], list[SyncClip], str]:
    """(train, validation, how) with no leakage between them.

    ``by="source"``: whole groups (sources) are held out, about ``held_out`` of them, chosen by a seeded
    shuffle — validation then measures generalisation to unseen people. ``by="time"``: every clip's last
    ``held_out`` share of frames is held out (its first part trains) — for when there are too few sources;
    it measures generalisation to unseen moments of the same people. ``auto``: source when there are at
    least ``min_groups`` groups, else time.
    """
    if by not in ("auto", "source", "time"):
        raise ValueError(f"held-out split must be auto, source or time, got {by!r}")
    if not 0 < held_out < 1:
        raise ValueError(f"held-out share must be in (0, 1), got {held_out}")
    groups = sorted({clip.group for clip in clips})
    if by == "auto":
        by = "source" if len(groups) >= min_groups else "time"
    if by == "source":
        if len(groups) < 2:
            raise ValueError(f"a held-out split by source needs at least 2 sources, the clips have {len(groups)}")
        order = np.random.default_rng(seed).permutation(len(groups))
        chosen = {groups[i] for i in order[:max(1, int(round(held_out * len(groups))))]}
        return [c for c in clips if c.group not in chosen], [c for c in clips if c.group in chosen], "source"
    train, validation = [], []
    for clip in clips:
        n_frames = min(len(clip.crops), clip.mfcc.shape[1] // MFCC_STEPS_PER_FRAME)
        cut = int(round(n_frames * (1 - held_out)))
        train.append(clip.span(0, cut, ":train"))
        validation.append(clip.span(cut, n_frames, ":held-out"))
    return train, validation, "time"


@dataclass
class SyncNetTrainingConfig:
    """Training settings; ``model`` holds SyncNetModel keywords (``normalize`` is always on for training).
    The default model is the public architecture at half width on 112² crops: ~4× cheaper per window on
    a CPU than 224² at full width, still the same layers."""

    model: dict = field(default_factory=lambda: {"embedding_dim": 1024, "width": 0.5, "crop_size": 112})
    steps: int = 2000
    batch_size: int = 32
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    min_shift: int = 3  # |shift| of time-shifted negatives, in frames (3 frames = 120 ms: clearly out of sync)
    max_shift: int = MAX_SHIFT_FRAMES
    other_clip_share: float = 0.25  # negatives with another clip's audio (when there is another clip)
    eval_every: int = 100
    eval_windows_per_clip: int = 32
    seed: int = 0
    device: str | None = None  # default: cuda when available

    @classmethod
    def from_dict(cls, values: dict) -> "SyncNetTrainingConfig":
        """Unknown keys or wrong types are a `ConfigError`; ``model`` is merged over the default model keywords."""
        model = {**cls().model, **(values.get("model") or {})}
        check_keys(model, list(inspect.signature(SyncNetModel).parameters), section="SyncNet model")
        config = from_dict(cls, {**values, "model": model}, section="sync-expert training")
        config.check()
        return config

    def check(self) -> None:
        if self.steps < 1 or self.batch_size < 2 or self.eval_every < 1 or self.eval_windows_per_clip < 1:
            raise ValueError("need steps >= 1, batch_size >= 2, eval_every >= 1, eval_windows_per_clip >= 1")
        if not 1 <= self.min_shift <= self.max_shift:
            raise ValueError(f"need 1 <= min_shift <= max_shift, got {self.min_shift}, {self.max_shift}")
        if not 0 <= self.other_clip_share <= 1 or self.learning_rate <= 0:
            raise ValueError("need 0 <= other_clip_share <= 1 and learning_rate > 0")


@dataclass
class SyncTrainingResult:
    out_dir: str
    steps: int
    final_loss: float
    metrics: dict  # the last validation row
    split: str  # how validation was held out: source or time
    checkpoint: str  # the directory load_syncnet reads (= out_dir)
    resumed_from: int = 0  # training always starts fresh (the flows' artifact table shows it)


def shifted_start(rng: np.random.Generator, f: int, n_windows: int, min_shift: int, max_shift: int) -> int | None:
    """A start f + s with min_shift <= |s| <= max_shift inside the clip, uniformly; None if there is none."""
    candidates = [f + s for s in range(-max_shift, max_shift + 1) if abs(s) >= min_shift and 0 <= f + s < n_windows]
    return None if not candidates else int(rng.choice(candidates))


class PairSampler:
    """Seeded training batches: video window f of a clip, its in-sync audio window, and one negative audio
    window (time-shifted in the same clip, or from another clip)."""

    def __init__(self, clips: list[SyncClip], config: SyncNetTrainingConfig, seed: int):
        self.clips = [clip for clip in clips if clip.n_windows > config.min_shift]
        if not self.clips:
            raise ValueError(f"no training clip has more than {config.min_shift + WINDOW_FRAMES} frames")
        self.config = config
        self.rng = np.random.default_rng(seed)
        sizes = np.array([clip.n_windows for clip in self.clips], np.float64)
        self.weights = sizes / sizes.sum()

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(video (B, 3, 5, S, S), in-sync audio (B, 1, 13, 20), negative audio (B, 1, 13, 20))."""
        video, positive, negative = [], [], []
        for index in self.rng.choice(len(self.clips), size=size, p=self.weights):
            clip = self.clips[index]
            f = int(self.rng.integers(clip.n_windows))
            other = len(self.clips) > 1 and self.rng.random() < self.config.other_clip_share
            g = None if other else shifted_start(self.rng, f, clip.n_windows, self.config.min_shift,
                                                 self.config.max_shift)
            if g is None:  # another clip's audio, anywhere in it
                other_index = (index + 1 + int(self.rng.integers(len(self.clips) - 1))) % len(self.clips)
                source = self.clips[other_index]
                g = int(self.rng.integers(source.n_windows))
            else:
                source = clip
            v, a = window_tensors(clip.crops, clip.mfcc, [f], [f])
            _, n = window_tensors(source.crops, source.mfcc, [g], [g])
            video.append(v)
            positive.append(a)
            negative.append(n)
        return torch.cat(video), torch.cat(positive), torch.cat(negative)


def sync_probability(video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """p(in sync) = (1 + cos) / 2 of the two embeddings, kept off 0 and 1 for the log."""
    return ((1 + nn.functional.cosine_similarity(video, audio)) / 2).clamp(1e-6, 1 - 1e-6)


def pair_loss(model: SyncNetModel, video: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(BCE loss over the B positive and B negative pairs, accuracy of those 2B pairs at p = 0.5)."""
    v = model.video_embedding(video)
    p = torch.cat([sync_probability(v, model.audio_embedding(positive)),
                   sync_probability(v, model.audio_embedding(negative))])
    labels = torch.cat([torch.ones(len(video)), torch.zeros(len(video))]).to(p.device)
    loss = nn.functional.binary_cross_entropy(p, labels)
    return loss, ((p > 0.5).float() == labels).float().mean()


def validation_pairs(clips: list[SyncClip], config: SyncNetTrainingConfig) -> list[tuple[SyncClip, list, list]]:
    """Per held-out clip: evenly spaced window starts and, for each, one time-shifted start (seeded)."""
    rng = np.random.default_rng(config.seed + 1)
    pairs = []
    for clip in clips:
        if clip.n_windows <= config.min_shift:
            continue
        starts = np.unique(np.linspace(0, clip.n_windows - 1, config.eval_windows_per_clip).astype(int))
        shifted = [shifted_start(rng, int(f), clip.n_windows, config.min_shift, config.max_shift) for f in starts]
        kept = [(int(f), g) for f, g in zip(starts, shifted) if g is not None]
        pairs.append((clip, [f for f, _ in kept], [g for _, g in kept]))
    return pairs


def evaluate(model: SyncNetModel, pairs: list, config: SyncNetTrainingConfig, device: str) -> dict:
    """``val_loss``, ``val_acc`` (in-sync vs shifted), ``val_offset_ok`` and ``val_sync_conf`` (module docstring)."""
    model.eval()
    losses, correct, total, offsets_ok, confidences = [], 0, 0, [], []
    with torch.inference_mode():
        for clip, starts, shifted in pairs:
            video, positive = window_tensors(clip.crops, clip.mfcc, starts, starts)
            _, negative = window_tensors(clip.crops, clip.mfcc, shifted, shifted)
            loss, accuracy = pair_loss(model, video.to(device), positive.to(device), negative.to(device))
            losses.append(loss.item() * 2 * len(starts))
            correct += accuracy.item() * 2 * len(starts)
            total += 2 * len(starts)
            v, a = embed_windows(model, clip.crops, clip.mfcc, clip.n_windows, device)
            distances = shifted_distances(v, a, config.max_shift).numpy()
            offsets_ok.append(abs(int(np.argmin(distances)) - config.max_shift) <= 1)
            confidences.append(float(np.median(distances) - distances.min()))
    model.train()
    return {"val_loss": sum(losses) / total, "val_acc": correct / total,
            "val_offset_ok": float(np.mean(offsets_ok)), "val_sync_conf": float(np.median(confidences)),
            "val_pairs": total, "val_clips": len(pairs)}


def train_syncnet(train: list[SyncClip], validation: list[SyncClip], config: SyncNetTrainingConfig,
                  out_dir: str | os.PathLike, *, split: str = "", provenance: dict | None = None,
                  progress: bool = True) -> SyncTrainingResult:
    """Train a SyncNet on ``train``, validate on ``validation`` every ``eval_every`` steps and at the end, and
    write ``out_dir``: ``model.safetensors`` + ``config.json`` (load with ``filters.syncnet.load_syncnet``)
    and ``train_log.jsonl`` (one row per step: loss, acc; validation rows add the ``val_*`` columns)."""
    from tqdm.auto import tqdm

    config.check()
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed)
    model = SyncNetModel(**{**config.model, "normalize": True}).to(device).train()
    sampler = PairSampler(train, config, config.seed)
    pairs = validation_pairs(validation, config)
    if not pairs:
        raise ValueError(f"no held-out clip has more than {config.min_shift + WINDOW_FRAMES} frames to validate on")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(  # cosine decay to a tenth
        optimizer, lambda step: 0.1 + 0.45 * (1 + math.cos(math.pi * min(step, config.steps) / config.steps)))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / LOG_FILE
    log_path.unlink(missing_ok=True)
    bar = tqdm(range(1, config.steps + 1), desc="train-syncnet", disable=not progress)
    metrics: dict = {}
    loss_value = float("nan")
    with open(log_path, "w") as log:
        for step in bar:
            video, positive, negative = (t.to(device) for t in sampler.batch(config.batch_size))
            loss, accuracy = pair_loss(model, video, positive, negative)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_value = loss.item()
            row = {"step": step, "loss": loss_value, "acc": accuracy.item()}
            if step % config.eval_every == 0 or step == config.steps:
                metrics = evaluate(model, pairs, config, device)
                row.update({k: v for k, v in metrics.items() if k not in ("val_pairs", "val_clips")})  # curves only
                bar.set_postfix(loss=f"{loss_value:.3f}", val_acc=f"{metrics['val_acc']:.2f}")
            log.write(json.dumps(row) + "\n")
            log.flush()
    save_syncnet(model.cpu(), out_dir, {
        "training": {k: v for k, v in asdict(config).items() if k != "model"},
        "validation": {"split": split, **metrics},
        "data": {"train_clips": [c.key for c in train], "held_out_clips": [c.key for c in validation],
                 **(provenance or {})},
    })
    return SyncTrainingResult(out_dir=str(out_dir), steps=config.steps, final_loss=loss_value, metrics=metrics,
                              split=split, checkpoint=str(out_dir))
