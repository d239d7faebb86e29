"""Video metrics on generator clips (filters.synthetic via tests.clip_factory) standing in for generated videos:
Sync-C/D, the expression distance and IQA, each against a known degradation."""

import cv2
import numpy as np
import pytest
import torch

from fada.metrics.expression import EXPRESSION_FEATURES, expression_distance, expression_features
from fada.metrics.image_quality_metric import ImageQualityMetric
from fada.metrics.sync_metric import SyncMetric
from filters.clip_data import LandmarkModel
from filters.media_contract import SAMPLES_PER_FRAME as HOP
from filters.synthetic import SpeakerSpec
from tests.clip_factory import make_clip
from tests.random_weights import random_syncnet



def spec(seed: int, **changes) -> SpeakerSpec:
    return SpeakerSpec(seed=seed, duration_s=4.0, width=512, height=512, **changes)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """4-s 512² face crops with 16 kHz audio: two talking speakers and one whose mouth never moves."""
    root = tmp_path_factory.mktemp("generated")
    specs = {"talking": spec(31), "talking_other": spec(32), "frozen": spec(33, silent=True)}
    return {name: make_clip(s, root / name)[0] for name, s in specs.items()}


@pytest.fixture(scope="module")
def landmark_model():
    return LandmarkModel()


@pytest.fixture(scope="module")
def sync_metric(landmark_model):
    return SyncMetric(landmark_model=landmark_model)


def late(audio: np.ndarray, frames: int) -> np.ndarray:
    return np.concatenate([np.zeros(frames * HOP, np.float32), audio[:-frames * HOP]])


def shuffled(audio: np.ndarray, n_frames: int, seed: int) -> np.ndarray:
    """One-frame chunks of the audio in random order."""
    chunks = audio[:n_frames * HOP].reshape(n_frames, HOP)
    return chunks[np.random.default_rng(seed).permutation(n_frames)].ravel()


def test_synced_audio_beats_shuffled_audio(clips, sync_metric):
    clip = clips["talking"]
    synced = sync_metric.score(clip.frames, clip.audio)
    assert synced["sync_scorer"] == "lip_audio_xcorr" and synced["sync_offset"] == 0
    for seed in range(2):
        bad = sync_metric.score(clip.frames, shuffled(clip.audio, clip.n_frames, seed))
        assert synced["sync_d"] < bad["sync_d"] - 0.2 and synced["sync_c"] > bad["sync_c"] + 0.2, (synced, bad)


def test_lagging_audio_shows_in_the_offset_and_the_scores_at_shift_zero(clips, sync_metric):
    clip = clips["talking"]
    synced = sync_metric.score(clip.frames, clip.audio)
    lagging = sync_metric.score(clip.frames, late(clip.audio, 10))
    assert abs(lagging["sync_offset"] - 10) <= 1
    assert synced["sync_d_at_0"] < lagging["sync_d_at_0"] - 0.3 and synced["sync_c_at_0"] > lagging["sync_c_at_0"] + 0.3
    # the reference Sync-C/D are taken at the best shift, so a lag within ±15 frames leaves them as they were
    assert lagging["sync_d"] == pytest.approx(synced["sync_d"], abs=0.05)
    assert synced["sync_d_at_0"] == synced["sync_d"]


def test_syncnet_is_used_when_local_weights_are_given(clips, landmark_model, tmp_path):
    torch.save(random_syncnet(seed=3).state_dict(), tmp_path / "syncnet_v2.model")
    metric = SyncMetric(syncnet_weights=str(tmp_path / "syncnet_v2.model"), landmark_model=landmark_model)
    clip = clips["talking"]
    scores = metric.score(clip.frames[:30], clip.audio[:30 * HOP])
    assert scores["sync_scorer"] == "syncnet" and -15 <= scores["sync_offset"] <= 15
    assert scores["sync_d"] > 0 and scores["sync_c"] >= 0 and scores["sync_d_at_0"] >= scores["sync_d"]


def test_sync_metric_checks_its_input(clips, sync_metric):
    clip = clips["talking"]
    with pytest.raises(ValueError, match="uint8"):
        sync_metric.score(clip.frames.astype(np.float32), clip.audio)
    with pytest.raises(ValueError, match="mono"):
        sync_metric.score(clip.frames, np.stack([clip.audio, clip.audio], axis=1))


def test_expression_features_ignore_face_size_and_rotation(clips):
    landmarks = clips["talking"].landmarks[:10].astype(np.float64)
    angle = np.deg2rad(25)
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])  # yaw
    moved = 1.7 * landmarks @ rotation.T + np.array([40.0, -15.0, 3.0])
    features = expression_features(landmarks)
    assert features.shape == (10, len(EXPRESSION_FEATURES))
    np.testing.assert_allclose(expression_features(moved), features, rtol=1e-9)
    assert np.isnan(expression_features(np.full((2, 468, 3), np.nan))).all()


def test_expression_distance_separates_a_frozen_mouth_from_talking(clips, landmark_model):
    talking, other, frozen = (clips[name].frames for name in ("talking", "talking_other", "frozen"))
    same = expression_distance([talking], [talking], landmark_model)
    assert abs(same["expression_fd"]) < 1e-9 and same["generated_frames"] == same["real_frames"] == 100
    two_speakers = expression_distance([talking], [other], landmark_model)["expression_fd"]
    frozen_vs_talking = expression_distance([frozen], [talking, other], landmark_model)["expression_fd"]
    assert frozen_vs_talking > 10 * two_speakers, (frozen_vs_talking, two_speakers)


def test_frames_without_a_face_are_skipped_and_counted(clips, landmark_model):
    talking = clips["talking"].frames.copy()
    talking[:10] = 128  # ten grey frames: no face to find
    result = expression_distance([talking], [clips["talking_other"].frames], landmark_model)
    assert result["generated_skipped"] == 10 and result["generated_frames"] == 90 and result["real_skipped"] == 0
    with pytest.raises(ValueError, match="generated set has 0 frames with a face"):
        expression_distance([np.full_like(talking, 128)], [talking], landmark_model)


def test_blurred_frames_score_lower_iqa(clips, landmark_model):
    metric = ImageQualityMetric(landmark_model=landmark_model)
    frames = clips["talking"].frames
    sharp = metric.score(frames)
    blurred = metric.score(np.stack([cv2.GaussianBlur(frame, (0, 0), 3.0) for frame in frames]))
    assert set(sharp) == {"iqa", "sharpness", "reblur_ratio", "face_px", "exposure_clip", "noise", "blockiness"}
    assert 100 < sharp["face_px"] < 512 and sharp["iqa"] > 0.85
    assert blurred["iqa"] < sharp["iqa"] - 0.1 and blurred["sharpness"] < 0.5 * sharp["sharpness"]
    no_face = metric.score(np.full_like(frames[:10], 128))
    assert np.isnan(no_face["face_px"]) and np.isnan(no_face["iqa"])
