import numpy as np
import pytest
import soundfile

from filters.audio import read_audio_segment
from filters.crop import CropConfig, crop_and_resize, crop_box_for_face
from filters.scenes import SceneCutDetector


def _textured(seed, shape=(120, 160)):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (shape[0] // 8, shape[1] // 8, 3), dtype=np.uint8)
    return np.kron(small, np.ones((8, 8, 1), dtype=np.uint8))


def test_scene_cut_found_at_the_change_and_not_during_steady_motion():
    detector = SceneCutDetector()
    shot_a, shot_b = _textured(1), _textured(2)
    cuts = []
    for i in range(60):
        base = shot_a if i < 37 else shot_b
        frame = np.roll(base, 2 * i, axis=1)  # a steady pan inside each shot
        if detector.push(frame):
            cuts.append(i)
    assert cuts == [37]


def test_min_shot_length_suppresses_flicker():
    detector = SceneCutDetector(min_shot_frames=10)
    frames = [_textured(i % 2) for i in range(6)]  # alternating every frame
    assert sum(detector.push(f) for f in frames) <= 1


def test_crop_is_square_inside_frame_and_scaled_to_face():
    config = CropConfig(size=64, face_scale=2.0, vertical_shift=0.0)
    box = crop_box_for_face(np.array([100, 100, 150, 150]), 640, 480, config)
    assert box[2] - box[0] == box[3] - box[1] == 100
    assert (box[0] + box[2]) / 2 == pytest.approx(125, abs=1)
    edge = crop_box_for_face(np.array([0, 0, 40, 60]), 640, 480, config)  # near the corner: shifted inside
    assert edge[0] == 0 and edge[1] == 0 and edge[2] - edge[0] == 120
    huge = crop_box_for_face(np.array([0, 0, 600, 470]), 640, 480, config)  # larger than the frame: capped
    assert huge[3] - huge[1] == 480 and huge[2] <= 640
    frame = np.zeros((480, 640, 3), np.uint8)
    assert crop_and_resize(frame, box, 64).shape == (64, 64, 3)


def test_audio_segment_is_resampled_mono_and_time_aligned(tmp_path):
    rate = 44100
    t = np.arange(int(3.0 * rate)) / rate
    left = np.where((t >= 1.0) & (t < 1.01), 0.9, 0.0)  # a click at exactly 1.0 s
    soundfile.write(tmp_path / "a.wav", np.stack([left, left], axis=1), rate)
    seg = read_audio_segment(str(tmp_path / "a.wav"), 0.5, 2.5, rate=16000)
    assert seg.samples.dtype == np.float32 and seg.samples.ndim == 1 and len(seg.samples) == 32000
    onset = int(np.argmax(np.abs(seg.samples) > 0.3))
    assert abs(onset - 8000) <= 16  # 1.0 s is 0.5 s into the segment, within 1 ms
    # A sidecar placed at origin 0.2 s on the video timeline: the click is heard at 1.2 s.
    shifted = read_audio_segment(str(tmp_path / "a.wav"), 0.5, 2.5, rate=16000, origin_s=0.2)
    assert abs(int(np.argmax(np.abs(shifted.samples) > 0.3)) - 11200) <= 16
    # Past the end of the file: zero-filled to the requested length.
    tail = read_audio_segment(str(tmp_path / "a.wav"), 2.5, 4.0, rate=16000)
    assert len(tail.samples) == 24000 and np.all(tail.samples[10000:] == 0)
