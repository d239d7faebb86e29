"""Train a sync expert on a view: read the view's clips from the shards, cut them as SyncNet sees them, and
hand them to ``filters.syncnet_training`` (``fada train-syncnet`` and the ``train-sync-expert`` flow call
``train_syncnet_on_view``).

Clips are read whole through ``ClipWindowDataset``'s pipeline (its shard listing, tar safety checks,
decoders and skip counters; see ``shards.reader``), face landmarks are found with the same face mesh as
scoring, and only the face crops at the expert's ``crop_size`` and the MFCCs are kept in memory (~37 kB per
frame at 112²: about 3.4 GB per hour of clips). A clip without any face is skipped and counted.
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np

from filters.media_contract import AUDIO_RATE, SAMPLES_PER_FRAME
from shards.shard_writer import SAMPLE_EXTENSIONS
from shards.reader import BadSample, ClipWindowDataset, decode_frames, open_video, parse_audio, parse_record


class ViewClips(ClipWindowDataset):
    """Whole clips of a view, in view order: ``{key, record, frames (N, H, W, 3) uint8 RGB, audio}``; bad
    samples are skipped and counted in ``stats`` as in ``ClipWindowDataset``."""

    def __init__(self, data_dir: str | os.PathLike, view_name: str):
        super().__init__(data_dir, view_name, n_frames=1, n_motion_frames=0, shuffle_buffer=0)

    def _cut(self, sample: dict) -> list[dict]:
        missing = [extension for extension in SAMPLE_EXTENSIONS if extension not in sample]
        if missing:
            raise BadSample("missing_member", f"no {', '.join(missing)}")
        record, audio = parse_record(sample["json"]), parse_audio(sample["wav"])
        video = open_video(sample["mp4"], None)
        n_usable = min(len(video), len(audio) // SAMPLES_PER_FRAME)
        if n_usable < 1:
            raise BadSample("too_short_for_window", f"{n_usable} usable frames")
        frames = decode_frames(video, [0], 0, n_usable)
        return [{"key": sample["__key__"], "record": record, "frames": np.stack([frames[i] for i in range(n_usable)]),
                 "audio": audio[:n_usable * SAMPLES_PER_FRAME]}]


def read_sync_clips(data_dir: str | os.PathLike, view: str, crop_size: int, *, progress: bool = True):
    """(SyncClips of the view's clips, skip counts by reason). Grouped by ``source_id`` for held-out splits."""
    from tqdm.auto import tqdm

    from filters.clip_data import LandmarkModel, clip_from_arrays
    from filters.syncnet_training import sync_clip

    dataset = ViewClips(data_dir, view)
    landmarks = LandmarkModel()
    clips, skipped = [], Counter()
    total = sum(len(keys) for keys in dataset.keys_by_url.values())
    for item in tqdm(dataset, total=total, desc=f"read view {view}", disable=not progress):
        record = {**item["record"], "key": item["key"]}
        clip = clip_from_arrays(item["frames"], item["audio"], AUDIO_RATE, record, landmarks)
        try:
            clips.append(sync_clip(clip, crop_size, str(record.get("source_id") or item["key"])))
        except ValueError:  # no face in any frame, or too short for one window
            skipped["no_face_or_too_short"] += 1
    skipped.update({k: v for k, v in dataset.stats.counts.items() if k not in ("samples", "windows")})
    return clips, skipped


def train_syncnet_on_view(data_dir: str | os.PathLike, view: str, out_dir: str | os.PathLike, config: dict | None = None,
                          *, held_out: float = 0.2, split_by: str = "auto", progress: bool = True):
    """Read the view, hold out part of it (``filters.syncnet_training.split_clips``), train, write ``out_dir``.
    ``config``: ``SyncNetTrainingConfig`` fields (ValueError on unknown ones). Returns the SyncTrainingResult."""
    from filters.syncnet_training import SyncNetTrainingConfig, split_clips, train_syncnet

    settings = SyncNetTrainingConfig.from_dict(config or {})
    clips, skipped = read_sync_clips(data_dir, view, settings.model["crop_size"], progress=progress)
    if not clips:
        raise ValueError(f"view {view!r} has no clip with a face to train on (skipped: {dict(skipped)})")
    train, validation, how = split_clips(clips, held_out, split_by, seed=settings.seed)
    provenance = {"data_dir": str(data_dir), "view": view, "held_out_share": held_out, "skipped": dict(skipped),
                  "sources": len({c.group for c in clips}), "frames": int(sum(len(c.crops) for c in clips))}
    return train_syncnet(train, validation, settings, out_dir, split=how, provenance=provenance, progress=progress)
