"""ClipWindowDataset: view selection, frame/audio alignment, rank × worker splitting, bad input, shuffling.

Clips are tiny 64×64 H.264 videos whose frames carry their index as 8 black/white blocks, with a wav whose
sample i has the PCM16 value i, so every window's frames, motion frames and audio can be checked exactly.
"""

from __future__ import annotations

import shutil
import tarfile
from collections import Counter

import numpy as np
import pytest
import torch

from shards.reader import ClipWindowDataset, collate_windows, load_view, resolve_rank
from shards.tar_members import SkippedSampleWarning, member_key
from tests.indexed_clips import CLIP_FRAMES, SIZE, VERSION, data_dir, indices_of, raw_tar, sample, write_view  # noqa: F401 (data_dir: fixture)


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
