import dataclasses
import itertools

import numpy as np
import pytest

from filters import synthetic_speech
from filters.face_audio import FRAME_S, FaceAudioScorer, detect_speech
from filters.synthetic import SpeakerSpec
from tests.clip_factory import make_clip

SPEC = SpeakerSpec(seed=1, duration_s=3.0, width=512, height=512)
TRUTH_VOICED_RMS = 0.1  # a frame whose speech envelope RMS (peak 1) exceeds this is speech in the truth


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(SPEC, tmp_path_factory.mktemp("speech"))[0]


def with_audio(clip, audio):
    return dataclasses.replace(clip, audio=audio.astype(np.float32))


def test_speech_frames_follow_the_generator_truth(clip):
    plan = synthetic_speech.plan_syllables(SPEC.seed, 0.0, SPEC.duration_s + 1.0)
    _, envelope = synthetic_speech.render_speech(plan, clip.audio_rate, clip.record["start_s"], len(clip.audio), SPEC.seed)
    length = int(round(FRAME_S * clip.audio_rate))
    n_frames = len(envelope) // length
    truth = np.sqrt(np.mean(envelope[: n_frames * length].reshape(n_frames, length) ** 2, axis=1)) > TRUTH_VOICED_RMS
    detected = detect_speech(clip.audio, clip.audio_rate).voiced
    assert np.mean(detected == truth) > 0.85
    scores = FaceAudioScorer().score(clip)
    assert scores["speech_ratio"] == pytest.approx(truth.mean(), abs=0.12) and scores["speech_ratio"] > 0.35
    assert scores["snr_db"] > 40 and scores["audio_clip_ratio"] == 0.0


def test_silent_clip_has_no_speech(tmp_path):
    silent = make_clip(dataclasses.replace(SPEC, silent=True), tmp_path)[0]
    scores = FaceAudioScorer().score(silent)
    assert scores["speech_ratio"] < 0.02 and scores["snr_db"] == 0.0


def test_loud_noise_bursts_are_not_speech(clip):
    """Energy alone would call these speech; flatness and zero crossings do not."""
    rng = np.random.default_rng(0)
    gain = np.repeat(rng.choice([0.003, 0.3], size=len(clip.audio) // 1600 + 1), 1600)[: len(clip.audio)]
    scores = FaceAudioScorer().score(with_audio(clip, rng.standard_normal(len(clip.audio)) * gain))
    assert scores["speech_ratio"] < 0.02


def test_clipping_is_measured(clip):
    clipped = np.clip(clip.audio * 10.0, -1.0, 1.0)
    assert FaceAudioScorer().score(with_audio(clip, clipped))["audio_clip_ratio"] > 0.05


def test_snr_falls_as_noise_is_added(clip):
    rng = np.random.default_rng(1)
    noise = rng.standard_normal(len(clip.audio))
    snr = [FaceAudioScorer().score(with_audio(clip, clip.audio + std * noise))["snr_db"] for std in (0.0, 0.003, 0.01, 0.03)]
    assert all(a > b + 5 for a, b in itertools.pairwise(snr)), snr


def test_face_columns(clip):
    landmarks = clip.landmarks.copy()
    landmarks[: clip.n_frames // 4] = np.nan
    record = {**clip.record, "single_face_ratio": 0.6}
    scores = FaceAudioScorer().score(dataclasses.replace(clip, landmarks=landmarks, record=record))
    assert scores["single_face_ratio"] == 0.6
    assert scores["face_mesh_ratio"] == pytest.approx(1 - (clip.n_frames // 4) / clip.n_frames)
    assert FaceAudioScorer().score(clip)["face_mesh_ratio"] == 1.0


def test_empty_and_digitally_silent_audio(clip):
    for audio in (np.zeros(0), np.zeros(len(clip.audio))):
        scores = FaceAudioScorer().score(with_audio(clip, audio))
        assert scores["speech_ratio"] == scores["snr_db"] == scores["audio_clip_ratio"] == 0.0
