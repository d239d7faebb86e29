"""Training reader throughput against the raw tar read speed of the same shards, in one run.

Renders 8 distinct 4-s synthetic talking heads at 512×512, 25 fps (`filters/synthetic.py`, video only, with
their 16 kHz mono wav), writes them ``COPIES`` times under distinct keys into shards with `ShardWriter`, and a
view selecting every key. Then, in this one process with one torch thread, as in a DataLoader worker
(page cache warm for both):
  1. raw tar read    — iterate every shard with `tarfile`, reading each member's bytes;
  2. reader          — one epoch of `ClipWindowDataset` (16 frames + 2 motion frames, 512², one window
                       per clip, then four), no DataLoader workers, decord with one thread.
Prints samples/s (and MB/s, windows/s) for each and the reader/raw ratio.

    .venv/bin/python benchmarks/reader.py
"""

from __future__ import annotations

import json
import platform
import tarfile
import tempfile
import time
from pathlib import Path

CLIPS, SECONDS, SIZE, COPIES, PER_SHARD = 8, 4.0, 512, 2, 4
VERSION = "shards/bench"


def render_clips(folder: Path, n_clips: int = CLIPS, seconds: float = SECONDS, size: int = SIZE) -> list[dict[str, bytes]]:
    """``n_clips`` distinct rendered clips as {mp4, wav, json} payloads (keys filled in when written).

    Each is re-encoded with the ingest stage's own encoder (`filters.media_writer`), so the shards have the
    same codec settings (keyframe interval included) as shards written by `fada ingest`.
    """
    import av

    from filters.media_contract import AUDIO_RATE
    from filters.synthetic import SpeakerSpec, render_sidecar_audio, render_speaker
    from filters.media_writer import Mp4Writer

    clips = []
    for seed in range(n_clips):
        spec = SpeakerSpec(seed=seed, duration_s=seconds, width=size, height=size, with_audio=False)
        render_speaker(spec, folder / f"{seed}-rendered.mp4")
        with av.open(str(folder / f"{seed}-rendered.mp4")) as rendered, Mp4Writer(folder / f"{seed}.mp4", fps=spec.fps, width=size, height=size) as writer:
            for frame in rendered.decode(video=0):
                writer.write(frame.to_ndarray(format="rgb24"))
        render_sidecar_audio(spec, folder / f"{seed}.wav", rate=AUDIO_RATE, channels=1)
        record = {"source_id": f"synthetic{seed}", "n_frames": spec.n_frames, "fps": spec.fps}
        clips.append({"mp4": (folder / f"{seed}.mp4").read_bytes(), "wav": (folder / f"{seed}.wav").read_bytes(),
                      "record": record})
    return clips


def write_dataset(data_dir: Path, clips: list[dict], copies: int = COPIES, per_shard: int = PER_SHARD) -> list[Path]:
    """Shards of ``copies`` × len(clips) samples and a view `all` selecting them; returns the shard paths."""
    from shards.shard_writer import ShardWriter

    by_shard: dict[str, list[str]] = {}
    with ShardWriter(data_dir / VERSION, max_count=per_shard) as writer:
        for n in range(copies * len(clips)):
            clip, key = clips[n % len(clips)], f"bench_{n:05d}"
            record = json.dumps({"key": key, **clip["record"]}).encode()
            writer.add(key, {"mp4": clip["mp4"], "wav": clip["wav"], "json": record})
            by_shard.setdefault(f"{VERSION}/clips-{n // per_shard:06d}.tar", []).append(key)
    (data_dir / "views").mkdir()
    (data_dir / "views" / "all.json").write_text(json.dumps({"name": "all", "shards": by_shard}))
    return sorted((data_dir / VERSION).glob("clips-*.tar"))


def raw_tar_read(shards: list[Path], min_seconds: float = 1.0) -> tuple[float, float]:
    """(samples/s, MB/s) reading every member's bytes with tarfile, repeated for at least `min_seconds`."""
    keys, n_bytes, start = 0, 0, time.perf_counter()
    while keys == 0 or time.perf_counter() - start < min_seconds:
        for shard in shards:
            with tarfile.open(shard, mode="r|") as tar:
                for member in tar:
                    n_bytes += len(tar.extractfile(member).read())
                    keys += member.name.endswith(".json")
    elapsed = time.perf_counter() - start
    return keys / elapsed, n_bytes / elapsed / 1e6


def reader_rate(data_dir: Path, windows_per_clip: int) -> tuple[float, float]:
    """(samples/s, windows/s) over one epoch of ClipWindowDataset in this process."""
    from shards.reader import ClipWindowDataset

    dataset = ClipWindowDataset(data_dir, "all", windows_per_clip=windows_per_clip)
    start = time.perf_counter()
    for _ in dataset:
        pass
    elapsed = time.perf_counter() - start
    return dataset.stats.counts["samples"] / elapsed, dataset.stats.counts["windows"] / elapsed


def main() -> None:
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "render").mkdir()
        shards = write_dataset(tmp, render_clips(tmp / "render"))
        size_mb = sum(shard.stat().st_size for shard in shards) / 1e6
        print(f"{platform.processor() or platform.machine()}; {len(shards)} shards, {COPIES * CLIPS} samples, "
              f"{size_mb:.1f} MB ({CLIPS} distinct {SECONDS:.0f}-s {SIZE}² clips)")
        raw_samples, raw_mb = raw_tar_read(shards)
        print(f"raw tar read: {raw_samples:,.0f} samples/s, {raw_mb:,.0f} MB/s")
        for windows_per_clip in (1, 4):
            samples, windows = reader_rate(tmp, windows_per_clip)
            print(f"reader, {windows_per_clip} window(s)/clip: {samples:.1f} samples/s, {windows:.1f} windows/s "
                  f"(16+2 frames each); ratio to raw tar read {samples / raw_samples:.4f}")


if __name__ == "__main__":
    main()
