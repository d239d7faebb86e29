"""The per-chunk stage run in-process on synthetic speakers: rotation, huge frames, bounded memory."""

import av
import numpy as np
import pytest

from filters.extract import ChunkJob, ExtractConfig, extract_chunk
from filters.face_track import FaceDetector, FaceTrackConfig, ShotTracker, box_iou
from filters.frames import iter_frames
from filters.probe import probe_source
from filters.synthetic import SpeakerSpec, render_speaker

SPEC = SpeakerSpec(seed=11, duration_s=3.0, width=384, height=288)


@pytest.fixture(scope="module")
def speaker(tmp_path_factory):
    path = tmp_path_factory.mktemp("speaker") / "speaker.mp4"
    return path, render_speaker(SPEC, path)


@pytest.fixture(scope="module")
def detector():
    model = FaceDetector()
    yield model
    model.close()


def _run(path, tmp_path, detector, config=ExtractConfig()):
    probe = probe_source(str(path))
    assert probe.ok, probe.detail
    start, end = probe.usable_span_s
    job = ChunkJob("s" * 64, str(path), start, end, 0, str(tmp_path / "stage"), rotation=probe.rotation)
    return extract_chunk(job, detector, config)


def _ious(result, truth):
    return [
        box_iou(np.array(box), truth.face_boxes[int(round((clip["start_s"] + j / 25) * 25))])
        for clip in result.clips
        for j, box in enumerate(clip["face_boxes"])
    ]


def test_rotated_source_is_turned_upright(speaker, tmp_path, detector):
    """Frames stored turned clockwise with a 90° display rotation: the stage must undo it."""
    path, truth = speaker
    rotated = tmp_path / "rotated.mp4"
    with av.open(str(path)) as src, av.open(str(rotated), "w") as dst:
        audio_in = src.streams.audio[0]
        video = dst.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = SPEC.height, SPEC.width, "yuv420p"
        video.set_display_rotation(90)
        audio = dst.add_stream("aac", rate=audio_in.rate, layout="stereo")
        for frame in src.decode(src.streams.video[0]):
            turned = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), k=-1))
            dst.mux(video.encode(av.VideoFrame.from_ndarray(turned, format="rgb24")))
        dst.mux(video.encode())
        src.seek(0)
        for frame in src.decode(audio_in):
            frame.pts = None
            dst.mux(audio.encode(frame))
        dst.mux(audio.encode())
    result = _run(rotated, tmp_path, detector)
    assert [c["status"] for c in result.clips] == ["ok"]
    assert np.median(_ious(result, truth)) >= 0.8


def test_huge_frames_are_shrunk_and_boxes_stay_in_source_pixels(speaker, tmp_path, detector):
    path, truth = speaker
    frames = list(iter_frames(str(path), start_s=0.0, end_s=0.2, max_side=192))
    assert frames[0].rgb.shape == (144, 192, 3) and frames[0].scale == pytest.approx(0.5)
    result = _run(path, tmp_path, detector, ExtractConfig(max_frame_side=192))
    assert [c["status"] for c in result.clips] == ["ok"]
    assert np.median(_ious(result, truth)) >= 0.8
    crop = result.clips[0]["crop_boxes"][0]
    assert crop[2] <= SPEC.width and crop[3] <= SPEC.height and crop[2] - crop[0] > 96  # source pixels


def test_tracker_holds_a_bounded_number_of_frames(speaker, detector):
    path, _ = speaker
    config = FaceTrackConfig(detect_stride=5, smooth_sigma_s=0.3)
    tracker = ShotTracker(detector, config, fps=25)
    released, most_pending = [], 0
    for frame in iter_frames(str(path), start_s=0.0, end_s=3.0):
        released += tracker.push(frame)
        most_pending = max(most_pending, len(tracker._pending))
    released += tracker.flush()
    assert most_pending <= tracker.radius + config.detect_stride + 1
    assert [t.frame.index for t in released] == list(range(75))  # every frame, in order
    assert sum(t.is_keyframe for t in released) == 15
