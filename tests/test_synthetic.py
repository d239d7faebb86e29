"""Tests of the synthetic talking-head generator: files, determinism, and ground truth checked against
mediapipe and the decoded audio."""

from dataclasses import replace

import av
import numpy as np
import pytest
import soundfile
import yaml

from filters import synthetic
from filters.synthetic import SpeakerSpec, SpeakerTruth, render_sidecar_audio, render_speaker

SMALL = dict(width=320, height=256, duration_s=3.0)


def _render(tmp_path_factory, name: str, **spec_fields):
    spec = SpeakerSpec(**{**SMALL, **spec_fields})
    path = tmp_path_factory.mktemp(name) / f"{name}.mp4"
    return path, render_speaker(spec, path)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return _render(tmp_path_factory, "clean", seed=1)


@pytest.fixture(scope="module")
def late_audio(tmp_path_factory):
    """Audio 5 frames late, and a still head, so that only the mouth moves on the face."""
    return _render(tmp_path_factory, "late", seed=1, audio_offset_frames=5, frozen_head=True)


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory):
    return _render(tmp_path_factory, "pair", seed=2, duration_s=2.0, second_face=True)


@pytest.fixture(scope="module")
def faceless(tmp_path_factory):
    return _render(tmp_path_factory, "noface", seed=3, duration_s=2.0, no_face=True)


@pytest.fixture(scope="module")
def detectors():
    mp = pytest.importorskip("mediapipe")
    models = {m: mp.solutions.face_detection.FaceDetection(model_selection=m, min_detection_confidence=0.5)
              for m in (0, 1)}
    yield models
    for model in models.values():
        model.close()


def decode_frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def decode_audio(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1)


def detect(model, image: np.ndarray) -> list[np.ndarray]:
    """mediapipe face boxes as x0, y0, x1, y1 in pixels."""
    height, width = image.shape[:2]
    boxes = []
    for detection in model.process(image).detections or []:
        box = detection.location_data.relative_bounding_box
        boxes.append(np.array([box.xmin, box.ymin, box.xmin + box.width, box.ymin + box.height])
                     * (width, height, width, height))
    return boxes


def iou(a: np.ndarray, b: np.ndarray) -> float:
    overlap = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    return overlap / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - overlap)


def frame_rms(samples: np.ndarray, rate: int, fps: float, n_frames: int) -> np.ndarray:
    hop = round(rate / fps)
    return np.sqrt([np.mean(samples[f * hop:(f + 1) * hop] ** 2) for f in range(n_frames)])


def best_lag(rms: np.ndarray, mouth: np.ndarray, max_lag: int = 10) -> int:
    """The lag L maximising corr(rms[f + L], mouth[f])."""
    n = len(mouth)

    def corr(lag):
        return np.corrcoef(rms[max(0, lag):n + min(0, lag)], mouth[max(0, -lag):n - max(0, lag)])[0, 1]

    return max(range(-max_lag, max_lag + 1), key=corr)


def face_region(image: np.ndarray, box: np.ndarray, x_share, y_share) -> np.ndarray:
    """The part of `image` between the given shares of the box's width and height."""
    x = (box[0] + np.array(x_share) * (box[2] - box[0])).round().astype(int)
    y = (box[1] + np.array(y_share) * (box[3] - box[1])).round().astype(int)
    return image[y[0]:y[1], x[0]:x[1]].astype(float)


def open_and_shut_frames(truth) -> tuple[int, int]:
    """The widest-open frame and the nearest frame with the mouth shut."""
    opened = int(np.argmax(truth.mouth_open))
    shut = np.flatnonzero(truth.mouth_open < 0.05)
    return opened, int(shut[np.argmin(np.abs(shut - opened))])


# --- Spec -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fields", [dict(duration_s=0.0), dict(width=321), dict(audio_channels=3),
                                    dict(no_face=True, second_face=True), dict(scene_cut_frame=0),
                                    dict(duration_s=2.0, scene_cut_frame=50)])
def test_spec_rejects_impossible_requests(fields):
    with pytest.raises(ValueError):
        SpeakerSpec(**fields)


# --- Files ------------------------------------------------------------------------------------------


def test_video_file_has_expected_streams(clean):
    path, truth = clean
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.pix_fmt == "yuv420p"
        assert (video.width, video.height) == (320, 256)
        assert video.average_rate == 25
        assert video.start_time == 0 and audio.start_time == 0
        assert audio.codec_context.name == "aac"
        assert (audio.rate, audio.channels) == (44100, 2)
        assert float(audio.duration * audio.time_base) == pytest.approx(truth.n_frames / truth.fps, abs=1e-3)
    assert len(decode_frames(path)) == truth.n_frames == 75
    decoded = decode_audio(path)
    assert decoded.shape[0] == 2
    assert 0 <= decoded.shape[1] - 3.0 * 44100 < synthetic.AAC_FRAME_SAMPLES
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left behind


def test_video_without_audio_has_no_audio_stream(tmp_path):
    spec = SpeakerSpec(**{**SMALL, "duration_s": 1.0, "with_audio": False})
    render_speaker(spec, tmp_path / "mute.mp4")
    with av.open(str(tmp_path / "mute.mp4")) as container:
        assert not container.streams.audio
        assert container.streams.video[0].frames == 25


def test_audio_rate_and_channels_follow_the_spec(tmp_path):
    spec = SpeakerSpec(**{**SMALL, "duration_s": 1.0, "audio_rate": 16000, "audio_channels": 1})
    render_speaker(spec, tmp_path / "mono.mp4")
    with av.open(str(tmp_path / "mono.mp4")) as container:
        audio = container.streams.audio[0]
        assert (audio.rate, audio.channels) == (16000, 1)


def test_sidecar_wav_has_its_own_rate_length_and_the_same_speech(tmp_path, clean):
    _, truth = clean
    render_sidecar_audio(truth.spec, tmp_path / "side.wav", rate=48000, channels=2, duration_s=2.0)
    samples, rate = soundfile.read(tmp_path / "side.wav")
    assert rate == 48000 and samples.shape == (96000, 2)
    n_frames = 50
    rms = frame_rms(samples[:, 0], rate, truth.fps, n_frames)
    assert best_lag(rms, truth.mouth_open[:n_frames]) == 0


def test_truth_round_trips_through_json(tmp_path, faceless):
    _, truth = faceless
    truth.to_json(tmp_path / "truth.json")
    loaded = SpeakerTruth.from_json(tmp_path / "truth.json")
    assert loaded.spec == truth.spec
    assert loaded.n_frames == truth.n_frames and loaded.scene_cut_frame is None
    for name in ("face_boxes", "mouth_open", "head_roll_deg", "camera_shift"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(truth, name))
    assert np.isnan(loaded.face_boxes).all()
    assert "NaN" not in (tmp_path / "truth.json").read_text()


# --- Determinism ------------------------------------------------------------------------------------


def test_same_spec_gives_same_truth_and_pixels(tmp_path):
    spec = SpeakerSpec(**{**SMALL, "duration_s": 1.0, "seed": 4, "camera_shake_px": 3.0,
                          "moving_background": True, "noise_std": 4.0})
    first, second = (render_speaker(spec, tmp_path / f"{name}.mp4") for name in ("a", "b"))
    for name in ("face_boxes", "mouth_open", "head_roll_deg", "camera_shift"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    np.testing.assert_array_equal(decode_frames(tmp_path / "a.mp4")[0], decode_frames(tmp_path / "b.mp4")[0])


def test_different_seeds_give_different_audio(tmp_path):
    for seed in (0, 1):
        render_sidecar_audio(SpeakerSpec(seed=seed, duration_s=2.0), tmp_path / f"{seed}.wav")
    a, b = (soundfile.read(tmp_path / f"{seed}.wav")[0] for seed in (0, 1))
    assert np.abs(a - b).max() > 0.05


# --- Ground truth against mediapipe -----------------------------------------------------------------


def test_one_face_where_the_truth_says(clean, detectors):
    path, truth = clean
    frames = decode_frames(path)
    for f in (0, 20, 40, 60, 74):
        assert len(detect(detectors[1], frames[f])) == 1
        (box,) = detect(detectors[0], frames[f])
        assert iou(box, truth.face_boxes[f]) >= 0.8, f


def test_two_faces_where_the_truth_says(two_faces, detectors):
    path, truth = two_faces
    frames = decode_frames(path)
    for f in (0, 25, 49):
        assert len(detect(detectors[1], frames[f])) == 2
        boxes = detect(detectors[0], frames[f])
        assert len(boxes) == 2
        for expected in (truth.face_boxes[f], truth.second_face_boxes[f]):
            assert max(iou(box, expected) for box in boxes) >= 0.8, f


def test_no_face_anywhere(faceless, detectors):
    path, truth = faceless
    assert np.isnan(truth.face_boxes).all() and truth.second_face_boxes is None
    for frame in decode_frames(path)[::10]:
        assert detect(detectors[0], frame) == [] and detect(detectors[1], frame) == []


# --- Mouth and audio --------------------------------------------------------------------------------


@pytest.mark.parametrize("video", ["clean", "late_audio"])
def test_audio_envelope_matches_mouth_at_the_stated_offset(video, request):
    path, truth = request.getfixturevalue(video)
    rms = frame_rms(decode_audio(path)[0], truth.spec.audio_rate, truth.fps, truth.n_frames)
    assert truth.mouth_open.max() > 0.5 and truth.mouth_open.min() < 0.05
    assert best_lag(rms, truth.mouth_open) == truth.audio_offset_frames


def test_audio_offset_moves_the_audio_not_the_mouth(clean, late_audio):
    np.testing.assert_array_equal(clean[1].mouth_open, late_audio[1].mouth_open)


def test_open_mouth_changes_the_mouth_not_the_eyes(late_audio):
    path, truth = late_audio
    frames = decode_frames(path)
    opened, closed = open_and_shut_frames(truth)

    def change(x_share, y_share):
        box = truth.face_boxes[closed]  # the head is still, so one box frames both
        regions = [face_region(frames[f], box, x_share, y_share) for f in (opened, closed)]
        return np.abs(regions[0] - regions[1]).mean()

    mouth_change, eyes_change = change((0.3, 0.7), (0.62, 0.9)), change((0.15, 0.85), (0.2, 0.4))
    assert mouth_change > 25 and eyes_change < 2


def test_face_mesh_sees_the_lips_part(clean):
    mp = pytest.importorskip("mediapipe")
    path, truth = clean
    frames = decode_frames(path)
    opened, closed = open_and_shut_frames(truth)
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True) as mesh:
        gaps = []
        for f in (opened, closed):
            landmarks = mesh.process(frames[f]).multi_face_landmarks[0].landmark
            gaps.append((landmarks[14].y - landmarks[13].y) * truth.spec.height)
    face_height = truth.face_boxes[closed, 3] - truth.face_boxes[closed, 1]
    assert gaps[0] - gaps[1] > 0.03 * face_height


def test_silent_spec_keeps_the_mouth_shut(tmp_path):
    spec = SpeakerSpec(**{**SMALL, "duration_s": 1.0, "silent": True})
    truth = render_speaker(spec, tmp_path / "silent.mp4")
    assert not truth.mouth_open.any()
    assert np.sqrt(np.mean(decode_audio(tmp_path / "silent.mp4") ** 2)) < 1e-3


# --- Scene cut and camera -----------------------------------------------------------------------------


def test_scene_cut_is_the_only_jump(tmp_path):
    spec = SpeakerSpec(**{**SMALL, "duration_s": 2.4, "seed": 5, "scene_cut_frame": 30,
                          "camera_shake_px": 2.0})
    truth = render_speaker(spec, tmp_path / "cut.mp4")
    frames = np.array(decode_frames(tmp_path / "cut.mp4"), dtype=np.float32)
    jumps = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))  # jumps[i]: frame i -> i + 1
    assert int(np.argmax(jumps)) + 1 == truth.scene_cut_frame == 30
    assert jumps[29] > 4 * np.delete(jumps, 29).max()
    assert np.abs(truth.camera_shift).max() == pytest.approx(2.0)


# --- Demo set ---------------------------------------------------------------------------------------


def _check_demo(out_dir, rows):
    assert yaml.safe_load((out_dir / "manifest.yaml").read_text()) == rows
    assert {row["tag"] for row in rows} == {"interview", "news", "vlog"}
    sidecars = [row for row in rows if "audio_uri" in row]
    assert len(sidecars) == 1
    info = soundfile.info(sidecars[0]["audio_uri"])
    assert (info.samplerate, info.channels) == (48000, 2)
    with av.open(sidecars[0]["uri"]) as container:
        assert not container.streams.audio
        assert info.duration < float(container.duration / av.time_base)
    with pytest.raises(av.error.FFmpegError):
        av.open(rows[-1]["uri"]).close()
    for row in rows[:-1]:
        truth = SpeakerTruth.from_json(row["uri"].replace(".mp4", ".truth.json"))
        with av.open(row["uri"]) as container:
            assert container.streams.video[0].frames == truth.n_frames


def test_demo_sources_writes_manifest_and_files(tmp_path, monkeypatch):
    def shrink(spec):
        cut = None if spec.scene_cut_frame is None else 8
        return replace(spec, width=160, height=128, duration_s=0.6, scene_cut_frame=cut)

    tiny = tuple((stem, tag, shrink(spec), sidecar_s and 0.4)
                 for stem, tag, spec, sidecar_s in synthetic.DEMO_SPEAKERS)
    monkeypatch.setattr(synthetic, "DEMO_SPEAKERS", tiny)
    rows = synthetic.demo_sources(tmp_path)
    assert len(rows) == len(tiny) + 1
    _check_demo(tmp_path, rows)


@pytest.mark.slow
def test_full_demo_set(tmp_path):
    rows = synthetic.demo_sources(tmp_path)
    _check_demo(tmp_path, rows)
    assert all(4.0 <= spec.duration_s <= 12.0 for _, _, spec, _ in synthetic.DEMO_SPEAKERS)
