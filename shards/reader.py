"""Training reader: a WebDataset pipeline that streams a view's clips as aligned windows.

Each sample of a shard is ``KEY.mp4`` (H.264, 25 fps, video only), ``KEY.wav`` (16 kHz mono PCM16, 640
samples per frame, sample 0 = frame 0) and ``KEY.json`` (the clip's record). `ClipWindowDataset` keeps the
view's keys only, decodes the mp4 with decord and yields windows of ``n_frames`` frames, the
``n_motion_frames`` frames just before them (DESIGN.md §3: the denoising net continues from them), a
reference frame and the audio samples of exactly the window's frames (plus ``audio_context_frames`` frames on
each side, zero past the clip's ends, for audio encoders that look at neighbouring frames).

The reference frame is drawn outside the window and its motion frames (DESIGN.md §3), as at inference, where
the portrait is not one of the frames being generated: a frame of the same clip outside
[start − n_motion_frames, start + n_frames), uniform, seeded by (seed, epoch, key, start) (`reference_index`).
A clip too short to have such a frame (exactly ``n_motion_frames + n_frames`` usable frames) borrows a frame
of the last clip of the same ``source_id`` this reader decoded (it remembers one frame for each of the
``REFERENCE_SOURCES`` most recent sources); when there is none it is skipped as ``no_reference_outside_window``.

The pipeline, one epoch (all stages are WebDataset stages or plain generators over its samples):

1. the view's shards, shuffled by ``seed + epoch`` (the same order on every rank);
2. split by distributed rank, then by DataLoader worker — shards are the unit, so within an epoch no sample
   reaches two consumers (a consumer with no shard yields nothing);
3. tar members, refusing unsafe names before their bytes are read, then grouped into samples;
4. a shuffle buffer of ``shuffle_buffer`` *encoded* samples (a decoded window is ~56 MB at 512²);
5. decode and cut ``windows_per_clip`` windows per clip, their starts drawn from ``(seed, epoch, key)``,
   so they do not depend on how the data is split.

Bad input never stops iteration: the sample is skipped with a `SkippedSampleWarning` and counted under its
reason in ``dataset.stats`` (a `ReaderStats`; tar members are read by `shards.tar_members.TarMembers`), updated in the process that iterates. With DataLoader
workers each worker counts in its own copy of the dataset (its warnings still reach the log); iterate in the
main process (``num_workers=0``) to read totals from ``dataset.stats``. Reasons:

* ``unreadable_tar`` — a read error in a corrupt or truncated tar (one truncation can count twice: the
  member, then the rest of the shard);
* ``unsafe_key`` — a member whose key (the name up to its extension) has a dot, '/', '..' or is absolute;
  counted per member, whose bytes are never read;
* ``unknown_member`` — an extension other than mp4/wav/json; ``missing_member`` — a sample lacking one;
* ``oversize_member`` — a member larger than ``max_member_bytes`` (default 256 MiB, far above any clip),
  skipped without being read (the tar stream moves past it in small blocks); its sample then also counts
  as ``missing_member``;
* ``bad_record``, ``bad_audio``, ``bad_video`` — json that is not a 25-fps record, wav that is undecodable
  or not 16 kHz mono, undecodable mp4;
* ``too_short_for_window`` — fewer frames (with audio) than ``n_motion_frames + n_frames``;
* ``no_reference_outside_window`` — exactly that many, and no earlier clip of its source to take a reference
  frame from (see above).

``samples`` and ``windows`` count what was yielded.
"""

from __future__ import annotations

import io
import json
import os
import random
from collections import OrderedDict
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import webdataset as wds
from webdataset.tariterators import group_by_keys

from filters.media_contract import AUDIO_RATE, FPS, SAMPLES_PER_FRAME
from shards.shard_writer import SAMPLE_EXTENSIONS
from shards.tar_members import MAX_MEMBER_BYTES, ReaderStats, TarMembers

REFERENCE_SOURCES = 64  # sources whose last decoded frame a too-short clip may borrow as its reference


class BadSample(Exception):
    """A sample that cannot be used; ``reason`` is its counter name."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def load_view(data_dir: str | os.PathLike, name: str) -> dict:
    """Read ``DATA_DIR/views/<name>.json`` (an alias is followed to its view: ``shards.view_aliases``); every
    shard it names must exist (FileNotFoundError names it)."""
    from shards.view_aliases import resolve_view_name
    from shards.views import view_path

    name = resolve_view_name(data_dir, name)
    view = json.loads(view_path(data_dir, name).read_text())
    if not isinstance(view.get("shards"), dict):
        raise ValueError(f"view {name!r} has no 'shards' mapping")
    for shard in view["shards"]:
        parts = PurePosixPath(shard).parts
        if PurePosixPath(shard).is_absolute() or ".." in parts:
            raise ValueError(f"view {name!r} names shard {shard!r} outside the data directory")
        if not (Path(data_dir) / shard).is_file():
            raise FileNotFoundError(f"view {name!r} names missing shard {shard} (looked in {data_dir})")
    return view


def resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """(rank, world_size): the arguments, else torch.distributed if initialised, else RANK/WORLD_SIZE, else (0, 1)."""
    if rank is None and world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        elif "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        else:
            rank, world_size = 0, 1
    if rank is None or world_size is None or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return rank, world_size


def window_starts(seed: int, epoch: int, key: str, first: int, last: int, count: int) -> list[int]:
    """Up to `count` distinct sorted starts in [first, last], a function of (seed, epoch, key) only."""
    rng = random.Random(f"{seed}:{epoch}:{key}")
    candidates = range(first, last + 1)
    return sorted(rng.sample(candidates, min(count, len(candidates))))


def reference_index(seed: int, epoch: int, key: str, start: int, n_motion_frames: int, n_frames: int,
                    n_usable: int) -> int | None:
    """The reference frame of the window at ``start``: uniform over the clip's frames outside
    [start − n_motion_frames, start + n_frames), a function of (seed, epoch, key, start); None if there is none."""
    before, after = start - n_motion_frames, n_usable - (start + n_frames)
    if before + after <= 0:
        return None
    pick = random.Random(f"{seed}:{epoch}:{key}:{start}:reference").randrange(before + after)
    return pick if pick < before else pick + n_motion_frames + n_frames


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 → (T, 3, H, W) float32 in [-1, 1]."""
    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).to(torch.float32)
    return tensor.div_(127.5).sub_(1.0)


def to_uint8_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 → (T, 3, H, W) uint8, a quarter of float32's bytes; `to_unit_range` on the device."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()


def to_unit_range(frames: torch.Tensor, device=None) -> torch.Tensor:
    """uint8 frames → float32 in [-1, 1] on ``device`` (moved first: the conversion runs there); float frames
    pass through (moved)."""
    frames = frames.to(device, non_blocking=True) if device is not None else frames
    if frames.dtype != torch.uint8:
        return frames
    return frames.to(torch.float32).div_(127.5).sub_(1.0)


def collate_windows(windows: list[dict]) -> dict:
    """Batch windows: tensors stacked, ``key`` and ``record`` kept as lists (records hold nulls)."""
    return {
        "frames": torch.stack([w["frames"] for w in windows]),
        "motion_frames": torch.stack([w["motion_frames"] for w in windows]),
        "audio": torch.stack([w["audio"] for w in windows]),
        "reference": torch.stack([w["reference"] for w in windows]),
        "start_frame": torch.tensor([w["start_frame"] for w in windows]),
        "reference_frame": torch.tensor([w["reference_frame"] for w in windows]),
        "reference_key": [w["reference_key"] for w in windows],
        "key": [w["key"] for w in windows],
        "record": [w["record"] for w in windows],
    }


class ClipWindowDataset(torch.utils.data.IterableDataset):
    """Aligned (motion frames, frames, audio) windows of a view's clips; see the module docstring.

    ``frame_size`` (an int for square output, or (height, width)) resizes while decoding; None keeps the
    stored size. Each clip gives ``windows_per_clip`` distinct windows (fewer if it has fewer possible starts).
    ``shuffle_buffer=0`` turns shuffling off: shards in view order, samples in shard order
    (window starts stay seeded). Call ``set_epoch(e)`` before each epoch; with persistent DataLoader workers
    the new epoch does not reach them. ``uint8_frames`` yields frames as uint8 (T, 3, H, W), a quarter of the
    bytes through DataLoader workers, for `to_unit_range` on the GPU instead of float32 in [-1, 1]; decord
    decodes only the windows' frames, seeking from the nearest keyframe before each.
    """

    def __init__(self, data_dir: str | os.PathLike, view_name: str, *, n_frames: int = 16, n_motion_frames: int = 2,
                 frame_size: int | tuple[int, int] | None = None, windows_per_clip: int = 1, shuffle_buffer: int = 64,
                 seed: int = 0, rank: int | None = None, world_size: int | None = None,
                 audio_context_frames: int = 0, max_member_bytes: int = MAX_MEMBER_BYTES, uint8_frames: bool = False):
        super().__init__()
        if n_frames < 1 or n_motion_frames < 0 or windows_per_clip < 1 or shuffle_buffer < 0:
            raise ValueError("need n_frames >= 1, n_motion_frames >= 0, windows_per_clip >= 1, shuffle_buffer >= 0")
        self.data_dir, self.view = Path(data_dir), load_view(data_dir, view_name)
        shards = self.view["shards"].items()
        self.keys_by_url = {str(self.data_dir / shard): frozenset(keys) for shard, keys in shards if keys}
        if not self.keys_by_url:
            raise ValueError(f"view {view_name!r} selects no clips")
        self.n_frames, self.n_motion_frames, self.windows_per_clip = n_frames, n_motion_frames, windows_per_clip
        self.frame_size = (frame_size, frame_size) if isinstance(frame_size, int) else frame_size
        self.shuffle_buffer, self.seed, self.epoch = shuffle_buffer, seed, 0
        self.audio_context_frames, self.max_member_bytes = audio_context_frames, max_member_bytes
        self.uint8_frames = uint8_frames
        self.rank, self.world_size = resolve_rank(rank, world_size)
        self.stats = ReaderStats()
        self.recent_frames: OrderedDict[str, tuple[str, int, np.ndarray]] = OrderedDict()  # source → (key, index, frame)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose shard order, sample order and window starts the next iteration uses."""
        self.epoch = epoch

    def __iter__(self):
        return iter(self.pipeline())

    def pipeline(self) -> wds.DataPipeline:
        """The WebDataset pipeline of one epoch, for this rank and (when called in one) this worker."""
        shuffling = self.shuffle_buffer > 0
        self.recent_frames.clear()  # an epoch's borrowed references depend on that epoch's stream only (resume)
        stages = [
            wds.SimpleShardList(sorted(self.keys_by_url), seed=self.seed + self.epoch if shuffling else None),
            self._split_by_rank,
            wds.split_by_worker,
            TarMembers(self.keys_by_url, self.stats, self.max_member_bytes),
            partial(group_by_keys, handler=self.stats.on_tar_error),
        ]
        if shuffling:
            stages.append(wds.shuffle(self.shuffle_buffer, self.shuffle_buffer, rng=random.Random(self._stream_seed())))
        stages.append(self._windows)
        return wds.DataPipeline(*stages)

    def _stream_seed(self) -> str:
        worker = torch.utils.data.get_worker_info()
        return f"{self.seed}:{self.epoch}:{self.rank}:{0 if worker is None else worker.id}"

    def _split_by_rank(self, shards):
        """WebDataset node splitter with this dataset's rank and world size (not only the environment's)."""
        for index, shard in enumerate(shards):
            if index % self.world_size == self.rank:
                yield shard

    def _windows(self, samples):
        """Decode each sample and yield its windows; a bad sample is counted and skipped."""
        for sample in samples:
            try:
                windows = self._cut(sample)
            except BadSample as bad:
                self.stats.skip(bad.reason, f"sample {sample['__key__']} of {sample['__url__']} ({bad})")
                continue
            self.stats.counts["samples"] += 1
            for window in windows:
                self.stats.counts["windows"] += 1
                yield window

    def _cut(self, sample: dict) -> list[dict]:
        """All windows of one sample (decoded eagerly, so a decode error skips the whole sample)."""
        missing = [extension for extension in SAMPLE_EXTENSIONS if extension not in sample]
        if missing:
            raise BadSample("missing_member", f"no {', '.join(missing)}")
        key, record, audio = sample["__key__"], parse_record(sample["json"]), parse_audio(sample["wav"])
        video = open_video(sample["mp4"], self.frame_size)
        n_usable = min(len(video), len(audio) // SAMPLES_PER_FRAME)
        last = n_usable - self.n_frames
        if last < self.n_motion_frames:
            raise BadSample("too_short_for_window", f"{n_usable} usable frames < {self.n_motion_frames} + {self.n_frames}")
        starts = window_starts(self.seed, self.epoch, key, self.n_motion_frames, last, self.windows_per_clip)
        picks = [reference_index(self.seed, self.epoch, key, start, self.n_motion_frames, self.n_frames, n_usable)
                 for start in starts]
        source = str(record.get("source_id") or key)
        borrowed = self.recent_frames.get(source) if None in picks else None
        if None in picks and borrowed is None:
            raise BadSample("no_reference_outside_window",
                            f"{n_usable} usable frames leave none outside the window, and no other clip of its source")
        frames = decode_frames(video, starts, self.n_motion_frames, self.n_frames, extra=[i for i in picks if i is not None])
        references = [(key, i, frames[i]) if i is not None else borrowed for i in picks]
        if None not in picks:
            self.recent_frames[source] = references[0]
            self.recent_frames.move_to_end(source)
            while len(self.recent_frames) > REFERENCE_SOURCES:
                self.recent_frames.popitem(last=False)
        return [self._window(key, record, audio, frames, start, reference) for start, reference in zip(starts, references)]

    def _window(self, key: str, record: dict, audio: np.ndarray, frames: dict[int, np.ndarray], start: int,
                reference: tuple[str, int, np.ndarray]) -> dict:
        clip = np.stack([frames[i] for i in range(start - self.n_motion_frames, start + self.n_frames)] + [reference[2]])
        clip = to_uint8_tensor(clip) if self.uint8_frames else to_tensor(clip)
        samples = audio_span(audio, start - self.audio_context_frames, start + self.n_frames + self.audio_context_frames)
        return {
            "key": key,
            "start_frame": start,
            "record": record,
            "motion_frames": clip[:self.n_motion_frames],
            "frames": clip[self.n_motion_frames:-1],
            "reference": clip[-1],
            "reference_key": reference[0],
            "reference_frame": reference[1],
            "audio": torch.from_numpy(samples),
        }


def audio_span(audio: np.ndarray, first_frame: int, end_frame: int) -> np.ndarray:
    """The samples of frames [first_frame, end_frame), zero where the span runs past either end of the clip."""
    out = np.zeros((end_frame - first_frame) * SAMPLES_PER_FRAME, np.float32)
    lo, hi = max(first_frame, 0) * SAMPLES_PER_FRAME, min(end_frame * SAMPLES_PER_FRAME, len(audio))
    if hi > lo:
        out[lo - first_frame * SAMPLES_PER_FRAME:hi - first_frame * SAMPLES_PER_FRAME] = audio[lo:hi]
    return out


def parse_record(data: bytes) -> dict:
    """The clip's JSON record, which must be an object with the contract's frame rate."""
    try:
        record = json.loads(data)
    except ValueError as exn:
        raise BadSample("bad_record", f"json: {exn}") from exn
    if not isinstance(record, dict) or record.get("fps", FPS) != FPS:
        raise BadSample("bad_record", f"not a {FPS}-fps clip record")
    return record


def parse_audio(data: bytes) -> np.ndarray:
    """16 kHz mono wav bytes → float32 samples in [-1, 1]."""
    import soundfile

    try:
        audio, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    except (RuntimeError, TypeError, ValueError) as exn:
        raise BadSample("bad_audio", f"wav: {exn}") from exn
    if rate != AUDIO_RATE or audio.ndim != 1:
        raise BadSample("bad_audio", f"wav is {rate} Hz with shape {audio.shape}, expected {AUDIO_RATE} Hz mono")
    return audio


def open_video(data: bytes, frame_size: tuple[int, int] | None):
    """A decord VideoReader over mp4 bytes (one decode thread: parallelism comes from DataLoader workers)."""
    import decord

    size = {} if frame_size is None else {"height": frame_size[0], "width": frame_size[1]}
    try:
        return decord.VideoReader(io.BytesIO(data), num_threads=1, **size)
    except (RuntimeError, decord.DECORDError) as exn:
        raise BadSample("bad_video", f"mp4: {str(exn)[:200]}") from exn


def decode_frames(video, starts: list[int], n_motion_frames: int, n_frames: int, extra=()) -> dict[int, np.ndarray]:
    """Frame index → (H, W, 3) uint8 for every frame the windows at `starts` need (and the ``extra`` ones),
    decoded in one pass."""
    import decord

    indices = sorted({i for start in starts for i in range(start - n_motion_frames, start + n_frames)} | set(extra))
    try:
        batch = video.get_batch(indices).asnumpy()
    except (RuntimeError, decord.DECORDError) as exn:
        raise BadSample("bad_video", f"mp4: {str(exn)[:200]}") from exn
    return dict(zip(indices, batch))
