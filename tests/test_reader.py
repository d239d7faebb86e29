"""ClipWindowDataset: view selection, frame/audio alignment, rank × worker splitting, bad input, shuffling.

Clips are tiny 64×64 H.264 videos whose frames carry their index as 8 black/white blocks, with a wav whose
sample i has the PCM16 value i, so every window's frames, motion frames and audio can be checked exactly.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections import Counter

import numpy as np
import pytest
import torch

from shards.reader import ClipWindowDataset, collate_windows, load_view, resolve_rank
from shards.shard_writer import ShardWriter
from shards.tar_members import SkippedSampleWarning, member_key

SIZE, CLIP_FRAMES = 64, 30
BLOCK_H, BLOCK_W = SIZE // 2, SIZE // 4
VERSION = "shards/v1"


def frame_with_index(index: int) -> np.ndarray:
    """A 64×64 RGB frame showing `index` in binary: 2 rows × 4 blocks tiling the frame, white = 1."""
    frame = np.zeros((SIZE, SIZE, 3), np.uint8)
    for bit in range(8):
        if index >> bit & 1:
            row, col = divmod(bit, 4)
            frame[row * BLOCK_H:(row + 1) * BLOCK_H, col * BLOCK_W:(col + 1) * BLOCK_W] = 255
    return frame


def indices_of(frames: torch.Tensor) -> list[int]:
    """Read back the frame indices of (T, 3, H, W) frames in [-1, 1], at any size."""
    blocks = frames.mean(dim=1).unflatten(1, (2, -1)).unflatten(3, (4, -1)).mean(dim=(2, 4))  # (T, 2, 4)
    bits = (blocks.flatten(1) > 0).long()
    return (bits * (2 ** torch.arange(8))).sum(dim=1).tolist()


def mp4_bytes(n_frames: int) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": "18"})
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        for index in range(n_frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame_with_index(index), format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def wav_bytes(n_frames: int) -> bytes:
    """Sample i has the PCM16 value i (a ramp), 640 samples per frame."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.arange(n_frames * 640, dtype=np.int16), 16000, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def sample(key: str, n_frames: int = CLIP_FRAMES) -> dict[str, bytes]:
    record = {"key": key, "source_id": "src", "n_frames": n_frames, "fps": 25, "iqa": None}
    return {"mp4": mp4_bytes(n_frames), "wav": wav_bytes(n_frames), "json": json.dumps(record).encode()}


def write_view(data_dir, name: str, shards: dict[str, list[str]]) -> None:
    (data_dir / "views").mkdir(exist_ok=True)
    (data_dir / "views" / f"{name}.json").write_text(json.dumps({"name": name, "shards": shards}))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """4 shards × 3 clips; view `subset` keeps 8 of the 12 (the middle clip of each shard is left out)."""
    root = tmp_path_factory.mktemp("data")
    with ShardWriter(root / VERSION, max_count=3) as writer:
        for n in range(12):
            writer.add(f"clip{n:02d}", sample(f"clip{n:02d}"))
    keep = {f"{VERSION}/clips-{s:06d}.tar": [f"clip{n:02d}" for n in range(3 * s, 3 * s + 3) if n % 3 != 1]
            for s in range(4)}
    write_view(root, "subset", keep)
    return root


def selected(data_dir) -> set[str]:
    return {key for keys in load_view(data_dir, "subset")["shards"].values() for key in keys}


def check_alignment(window: dict, n_frames: int = 16, n_motion: int = 2) -> None:
    start = window["start_frame"]
    assert start >= n_motion and start + n_frames <= CLIP_FRAMES
    assert indices_of(window["frames"]) == list(range(start, start + n_frames))
    assert indices_of(window["motion_frames"]) == list(range(start - n_motion, start))
    assert window["frames"].dtype == torch.float32 and window["frames"].abs().max() <= 1.0
    ramp = (window["audio"] * 32768).round().long()
    assert torch.equal(ramp, torch.arange(start * 640, (start + n_frames) * 640))
    assert window["record"]["key"] == window["key"]


def test_yields_exactly_the_view_keys_with_aligned_frames_audio_and_motion_frames(data_dir):
    dataset = ClipWindowDataset(data_dir, "subset")
    windows = list(dataset)
    assert sorted(w["key"] for w in windows) == sorted(selected(data_dir))
    assert len(selected(data_dir)) == 8
    for window in windows:
        assert window["frames"].shape == (16, 3, SIZE, SIZE) and window["motion_frames"].shape == (2, 3, SIZE, SIZE)
        check_alignment(window)
    assert dataset.stats.counts == Counter(samples=8, windows=8)


def test_several_windows_per_clip_are_distinct_and_batch(data_dir):
    dataset = ClipWindowDataset(data_dir, "subset", n_frames=8, n_motion_frames=3, windows_per_clip=3)
    windows = list(dataset)
    starts = Counter((w["key"], w["start_frame"]) for w in windows)
    assert len(starts) == len(windows) == 24 and set(starts.values()) == {1}
    for window in windows:
        check_alignment(window, n_frames=8, n_motion=3)
    batch = collate_windows(windows[:4])
    assert batch["frames"].shape == (4, 8, 3, SIZE, SIZE) and batch["audio"].shape == (4, 8 * 640)
    assert len(batch["record"]) == 4


def test_two_ranks_by_two_workers_see_each_key_exactly_once(data_dir):
    seen = Counter()
    for rank in range(2):
        dataset = ClipWindowDataset(data_dir, "subset", frame_size=32, rank=rank, world_size=2, seed=5)
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2)
        for window in loader:
            assert window["frames"].shape == (16, 3, 32, 32)
            check_alignment(window)
            seen[window["key"]] += 1
    assert seen == Counter(selected(data_dir))


def test_rank_comes_from_arguments_then_environment(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert resolve_rank(None, None) == (1, 3)
    assert resolve_rank(0, 2) == (0, 2)
    with pytest.raises(ValueError):
        resolve_rank(2, 2)


def test_shuffle_is_deterministic_per_seed_and_changes_with_the_epoch(data_dir):
    def order(epoch: int) -> list[tuple[str, int]]:
        dataset = ClipWindowDataset(data_dir, "subset", seed=11)
        dataset.set_epoch(epoch)
        return [(w["key"], w["start_frame"]) for w in dataset]

    first = order(0)
    assert first == order(0)
    assert first != order(1) and sorted(k for k, _ in first) == sorted(k for k, _ in order(1))


def raw_tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_bad_input_is_skipped_counted_and_iteration_goes_on(tmp_path):
    shards = tmp_path / VERSION
    shards.mkdir(parents=True)
    good = sample("good")
    corrupt_video = dict(sample("badmp4"), mp4=np.random.default_rng(0).bytes(len(good["mp4"])))
    corrupt_audio = dict(sample("badwav"), wav=b"RIFF" + bytes(200))
    raw_tar(shards / "clips-000000.tar", {
        **{f"good.{ext}": data for ext, data in good.items()},
        **{f"badmp4.{ext}": data for ext, data in corrupt_video.items()},
        **{f"badwav.{ext}": data for ext, data in corrupt_audio.items()},
        **{f"short.{ext}": data for ext, data in sample("short", n_frames=12).items()},
        "../evil.mp4": good["mp4"], "a.b.mp4": good["mp4"],
        **{f"after.{ext}": data for ext, data in good.items()},
    })
    raw_tar(shards / "clips-000001.tar", {f"{key}.{ext}": data for key in ("whole", "cut") for ext, data in good.items()})
    with tarfile.open(shards / "clips-000001.tar") as tar:
        cut_at = tar.getmember("cut.wav").offset_data + 100
    (shards / "clips-000001.tar").write_bytes((shards / "clips-000001.tar").read_bytes()[:cut_at])
    write_view(tmp_path, "all", {f"{VERSION}/clips-000000.tar": ["after", "badmp4", "badwav", "good", "short"],
                                 f"{VERSION}/clips-000001.tar": ["cut", "whole"]})

    dataset = ClipWindowDataset(tmp_path, "all", shuffle_buffer=0)
    with pytest.warns(SkippedSampleWarning):
        keys = [w["key"] for w in dataset]
    assert keys == ["good", "after", "whole"]
    counts = dataset.stats.counts
    assert (counts["bad_video"], counts["bad_audio"], counts["too_short_for_window"], counts["unsafe_key"]) == (1, 1, 1, 2)
    assert counts["unreadable_tar"] >= 1 and counts["samples"] == 3
    assert not (tmp_path / "evil.mp4").exists() and not (tmp_path.parent / "evil.mp4").exists()


def test_member_names_split_at_the_last_dot():
    assert member_key("a.b.mp4") == ("a.b", "mp4")
    assert member_key("../evil.MP4") == ("../evil", "mp4")


def test_a_view_naming_a_missing_shard_fails_naming_it(data_dir, tmp_path):
    shutil.copytree(data_dir / "shards", tmp_path / "shards")
    write_view(tmp_path, "broken", {f"{VERSION}/clips-000000.tar": ["clip00"], f"{VERSION}/clips-000009.tar": ["x"]})
    with pytest.raises(FileNotFoundError, match="clips-000009.tar"):
        ClipWindowDataset(tmp_path, "broken")
    write_view(tmp_path, "escapes", {"../outside.tar": ["x"]})
    with pytest.raises(ValueError, match="outside"):
        load_view(tmp_path, "escapes")
