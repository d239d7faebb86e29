"""Tests for filters.probe: facts of a good file, every reject reason from its own file, rotation, sidecars."""

from __future__ import annotations

import dataclasses
import io
import json

import fsspec
import numpy as np
import pytest

from filters.probe import REJECT_REASONS, ProbeLimits, ProbeResult, apply_rotation, probe_source
from tests.media_factory import truncate_copy, write_test_audio, write_test_video

TINY = ProbeLimits(min_short_side=64)  # lets a test use 64-pixel frames when size is not what it checks


# --- accepted files -------------------------------------------------------------------------------------


def test_good_file_with_audio_is_accepted_with_its_facts(tmp_path):
    path = write_test_video(
        tmp_path / "good.mp4", n_frames=64, fps=25, size=(320, 288), audio_rate=22050, audio_channels=2
    )
    result = probe_source(path)
    assert result.ok, result.detail
    assert (result.width, result.height, result.rotation) == (320, 288, 0)
    assert result.fps == 25.0
    assert result.duration_s == pytest.approx(64 / 25)
    assert result.n_frames == 64
    assert result.video_start_s == 0.0
    assert result.video_codec == "h264"
    assert result.has_audio_stream and result.audio_source == "stream"
    assert (result.audio_rate, result.audio_channels) == (22050, 2)
    assert result.audio_duration_s == pytest.approx(64 / 25, abs=0.05)
    assert result.usable_span_s == pytest.approx((0.0, 64 / 25), abs=0.05)
    assert json.loads(json.dumps(result.to_dict()))["usable_span_s"] == pytest.approx([0.0, 64 / 25], abs=0.05)


def test_sidecar_shorter_than_video_gives_the_overlap(tmp_path):
    video = write_test_video(tmp_path / "mute.mp4", n_frames=100, fps=25, audio_rate=16000)  # 4 s, stream audio too
    sidecar = write_test_audio(tmp_path / "speech.wav", duration_s=3.0, rate=48000, channels=2)
    result = probe_source(video, sidecar_audio=sidecar)
    assert result.ok, result.detail
    assert result.has_audio_stream and result.audio_source == "sidecar"  # the sidecar wins over the stream
    assert (result.audio_rate, result.audio_channels) == (48000, 2)
    assert result.audio_start_s == result.video_start_s
    assert result.audio_duration_s == pytest.approx(3.0, abs=1e-3)
    assert result.duration_s == pytest.approx(4.0)
    assert result.usable_span_s == pytest.approx((0.0, 3.0), abs=1e-3)


def test_stream_audio_shorter_than_video_gives_the_overlap(tmp_path):
    path = write_test_video(tmp_path / "v.mp4", n_frames=100, fps=25, audio_rate=16000, audio_duration_s=2.5)
    result = probe_source(path)
    assert result.ok, result.detail
    assert result.usable_span_s == pytest.approx((0.0, 2.5), abs=0.05)


def test_usable_span_is_the_intersection_on_the_video_timeline():
    facts = dict(video_start_s=0.5, duration_s=3.0, audio_duration_s=10.0)
    assert ProbeResult(None, "", audio_start_s=1.0, **facts).usable_span_s == (1.0, 3.5)
    assert ProbeResult(None, "", audio_start_s=4.0, **facts).usable_span_s is None
    assert ProbeResult(None, "", video_start_s=0.5, duration_s=3.0).usable_span_s is None  # no audio


def test_file_objects_probe_like_paths_and_keep_their_position(tmp_path):
    video = write_test_video(tmp_path / "v.mp4", n_frames=64, size=(320, 288))
    sidecar = write_test_audio(tmp_path / "a.wav", duration_s=2.4, rate=16000, channels=1)
    expected = probe_source(video, sidecar_audio=sidecar)
    assert expected.ok, expected.detail
    with fsspec.open(str(video), "rb") as video_file, open(sidecar, "rb") as sidecar_file:
        video_file.seek(7)
        assert probe_source(video_file, sidecar_audio=sidecar_file) == expected
        assert (video_file.tell(), sidecar_file.tell()) == (7, 0)
    assert probe_source(io.BytesIO(video.read_bytes()), sidecar_audio=io.BytesIO(sidecar.read_bytes())) == expected


# --- rejections -----------------------------------------------------------------------------------------


def _bad_inputs(root) -> dict[str, tuple[str, object, dict]]:
    """Case id -> (expected reason, input, probe keywords): one constructed file per way of failing."""
    good = write_test_video(root / "good.mp4", n_frames=64, audio_rate=16000)
    mute = write_test_video(root / "mute.mp4", n_frames=64)
    moov_last = write_test_video(root / "moov_last.mp4", n_frames=64, audio_rate=16000)
    moov_first = write_test_video(root / "moov_first.mp4", n_frames=64, audio_rate=16000, faststart=True)
    mkv = write_test_video(root / "v.mkv", n_frames=100, size=(64, 64))
    (root / "garbage.mp4").write_bytes(b"this is not a video " * 500)
    (root / "empty.mp4").write_bytes(b"")
    return {
        "garbage": ("unreadable", root / "garbage.mp4", {}),
        "empty": ("unreadable", root / "empty.mp4", {}),
        "missing": ("unreadable", root / "missing.mp4", {}),
        "garbage_file_object": ("unreadable", io.BytesIO(b"\x00\x01junk" * 300), {}),
        "cut_mp4_moov_last": ("unreadable", truncate_copy(moov_last, root / "cut_last.mp4", 0.6), {}),
        "cut_mp4_faststart": ("truncated", truncate_copy(moov_first, root / "cut_first.mp4", 0.6), {}),
        "cut_mp4_tail": ("truncated", truncate_copy(moov_first, root / "cut_tail.mp4", 0.98), {}),
        "cut_mkv": ("truncated", truncate_copy(mkv, root / "cut.mkv", 0.6), {"limits": TINY}),
        "audio_only_wav": ("no_video_stream", write_test_audio(root / "a.wav", duration_s=3.0), {}),
        "audio_only_m4a": ("no_video_stream", write_test_audio(root / "a.m4a", duration_s=3.0), {}),
        "no_audio": ("no_audio", mute, {}),
        "short_video": ("too_short", write_test_video(root / "short.mp4", n_frames=40, audio_rate=16000), {}),
        "short_sidecar": ("too_short", mute, {"sidecar_audio": write_test_audio(root / "1s.wav", duration_s=1.0)}),
        "short_stream_audio": (
            "too_short",
            write_test_video(root / "short_audio.mp4", n_frames=64, audio_rate=16000, audio_duration_s=1.0),
            {},
        ),
        "fps_90": (
            "bad_fps",
            write_test_video(root / "fast.mp4", n_frames=200, fps=90, size=(64, 64), audio_rate=16000),
            {"limits": TINY},
        ),
        "fps_10": (
            "bad_fps",
            write_test_video(root / "slow.mp4", n_frames=30, fps=10, size=(64, 64), audio_rate=16000),
            {"limits": TINY},
        ),
        "small": ("too_small", write_test_video(root / "small.mp4", size=(320, 192), audio_rate=16000), {}),
        "garbage_sidecar": ("sidecar_unreadable", good, {"sidecar_audio": root / "garbage.mp4"}),
        "missing_sidecar": ("sidecar_unreadable", good, {"sidecar_audio": root / "missing.wav"}),
        "sidecar_without_audio": ("sidecar_unreadable", good, {"sidecar_audio": mute}),
    }


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    return _bad_inputs(tmp_path_factory.mktemp("bad"))


CASES = [
    "garbage", "empty", "missing", "garbage_file_object",
    "cut_mp4_moov_last", "cut_mp4_faststart", "cut_mp4_tail", "cut_mkv",
    "audio_only_wav", "audio_only_m4a",
    "no_audio",
    "short_video", "short_sidecar", "short_stream_audio",
    "fps_90", "fps_10",
    "small",
    "garbage_sidecar", "missing_sidecar", "sidecar_without_audio",
]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_each_bad_file_gets_its_reason(bad_inputs, case):
    reason, source, keywords = bad_inputs[case]
    result = probe_source(source, **keywords)
    assert result.reject_reason == reason, result.detail
    assert not result.ok and result.detail
    json.dumps(result.to_dict())


def test_every_reason_has_a_case_and_nothing_raises(bad_inputs):
    assert sorted(bad_inputs) == sorted(CASES)
    assert {reason for reason, _, _ in bad_inputs.values()} == set(REJECT_REASONS)
    assert probe_source(None).reject_reason == "unreadable"
    assert probe_source(b"bytes are not a file").reject_reason == "unreadable"


def test_checks_run_in_the_documented_order(tmp_path):
    # 1.2 s at 10 fps, 128x96, no audio: fails four checks; loosening one limit at a time exposes the next.
    path = write_test_video(tmp_path / "bad.mp4", n_frames=12, fps=10, size=(128, 96))
    limits = ProbeLimits()
    expected = ["too_short", "bad_fps", "too_small", "no_audio"]
    loosen = [{"min_duration_s": 1.0}, {"min_fps": 5.0}, {"min_short_side": 64}, {}]
    for reason, change in zip(expected, loosen):
        assert probe_source(path, limits=limits).reject_reason == reason
        limits = dataclasses.replace(limits, **change)


# --- rotation -------------------------------------------------------------------------------------------

# Where the top-left marker of the stored frames appears once a frame is turned counter-clockwise.
DISPLAYED_MARKER = {0: ("top", "left"), 90: ("bottom", "left"), 180: ("bottom", "right"), 270: ("top", "right")}


def _marker_corner(image: np.ndarray) -> tuple[str, str]:
    """Which corner of an RGB image holds the white marker."""
    rows, cols = np.nonzero(image[..., 0] > 200)
    height, width = image.shape[:2]
    return ("top" if rows.mean() < height / 2 else "bottom", "left" if cols.mean() < width / 2 else "right")


def _first_frame(path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rotation_is_read_and_applied(tmp_path, rotation):
    path = write_test_video(tmp_path / "rot.mp4", n_frames=50, size=(320, 288), rotation=rotation, audio_rate=16000)
    result = probe_source(path)
    assert result.ok, result.detail
    assert result.rotation == rotation
    assert (result.width, result.height) == ((288, 320) if rotation in (90, 270) else (320, 288))
    upright = apply_rotation(_first_frame(path), result.rotation)
    assert upright.shape == (result.height, result.width, 3)
    assert upright.flags.c_contiguous
    assert _marker_corner(upright) == DISPLAYED_MARKER[rotation]


@pytest.mark.parametrize("rotation", [90, 270])
def test_rotation_matches_an_independent_player(tmp_path, rotation):
    """OpenCV's FFmpeg backend turns frames by the display matrix itself; our upright frame must match it."""
    import cv2

    path = write_test_video(tmp_path / "rot.mp4", n_frames=10, size=(320, 288), rotation=rotation)
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    ok, shown = capture.read()
    capture.release()
    assert ok
    upright = apply_rotation(_first_frame(path), probe_source(path, limits=TINY).rotation)
    assert upright.shape == shown.shape
    assert _marker_corner(upright) == _marker_corner(shown[..., ::-1])


def test_apply_rotation_rejects_other_angles():
    frame = np.zeros((4, 6, 3), np.uint8)
    with pytest.raises(ValueError):
        apply_rotation(frame, 45)
