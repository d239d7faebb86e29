"""The training sample's reference frame lies outside the denoised window and its motion frames (DESIGN.md §3),
as at inference; a clip too short for that borrows a frame of an earlier clip of its source, or is skipped.

Frames carry their index as blocks (`tests.test_reader`), so every reference frame is read back exactly.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from shards.reader import ClipWindowDataset, collate_windows, reference_index
from shards.shard_writer import ShardWriter
from tests.indexed_clips import CLIP_FRAMES, VERSION, data_dir, indices_of, sample, write_view  # noqa: F401 (fixture)


@pytest.mark.parametrize("n_motion, n_frames", [(2, 16), (0, 4), (3, 1)])
def test_reference_index_is_never_inside_the_window_or_its_motion_frames(n_motion, n_frames):
    for n_usable in range(n_motion + n_frames, n_motion + n_frames + 8):
        seen = set()
        for start in range(n_motion, n_usable - n_frames + 1):
            for seed in range(20):
                index = reference_index(seed, 0, "clip", start, n_motion, n_frames, n_usable)
                if n_usable == n_motion + n_frames:  # the window covers the whole clip: no frame left
                    assert index is None
                    continue
                assert 0 <= index < n_usable and not start - n_motion <= index < start + n_frames
                assert index == reference_index(seed, 0, "clip", start, n_motion, n_frames, n_usable)  # seeded
                seen.add(index)
        outside_some_window = n_usable - n_motion - n_frames > 0
        assert bool(seen) == outside_some_window
        if outside_some_window and n_usable >= n_motion + n_frames + 2:
            assert min(seen) == 0 and max(seen) == n_usable - 1  # both sides of the window are drawn


def test_reader_windows_carry_a_reference_frame_outside_the_window(data_dir):  # noqa: F811
    n_frames, n_motion = 8, 3
    dataset = ClipWindowDataset(data_dir, "subset", n_frames=n_frames, n_motion_frames=n_motion, windows_per_clip=3)
    windows = list(dataset)
    assert len(windows) == 24
    for window in windows:
        start, index = window["start_frame"], window["reference_frame"]
        assert window["reference"].shape == window["frames"].shape[1:]
        assert indices_of(window["reference"][None]) == [index]  # the frame the record names
        assert window["reference_key"] == window["key"] and 0 <= index < CLIP_FRAMES
        assert not start - n_motion <= index < start + n_frames
    batch = collate_windows(windows[:4])
    assert batch["reference"].shape == (4, 3, 64, 64) and batch["reference_frame"].shape == (4,)


def _with_source(key: str, n_frames: int, source: str) -> dict[str, bytes]:
    member = sample(key, n_frames)
    record = json.loads(member["json"])
    member["json"] = json.dumps({**record, "source_id": source}).encode()
    return member


def test_a_clip_too_short_borrows_a_frame_of_its_sources_earlier_clip_or_is_skipped(tmp_path):
    n_frames, n_motion = 8, 2
    exact = n_frames + n_motion  # a window covers the whole clip
    with ShardWriter(tmp_path / VERSION, max_count=10) as writer:
        writer.add("long", _with_source("long", CLIP_FRAMES, "a"))
        writer.add("shorta", _with_source("shorta", exact, "a"))
        writer.add("shortb", _with_source("shortb", exact, "b"))
    write_view(tmp_path, "all", {f"{VERSION}/clips-000000.tar": ["long", "shorta", "shortb"]})
    dataset = ClipWindowDataset(tmp_path, "all", n_frames=n_frames, n_motion_frames=n_motion, shuffle_buffer=0)
    with pytest.warns(Warning, match="no other clip of its source"):
        windows = {w["key"]: w for w in dataset}
    assert sorted(windows) == ["long", "shorta"]
    long, short = windows["long"], windows["shorta"]
    assert short["reference_key"] == "long" and short["reference_frame"] == long["reference_frame"]
    assert torch.equal(short["reference"], long["reference"])
    assert dataset.stats.counts == Counter(samples=2, windows=2, no_reference_outside_window=1)
    # the borrowed frame depends on this epoch's stream only: a second pass gives the same windows
    with pytest.warns(Warning, match="no other clip of its source"):
        again = {w["key"]: w for w in dataset}
    assert again["shorta"]["reference_frame"] == short["reference_frame"]
