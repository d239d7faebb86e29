"""Sync scorers: the weight-free default on generator clips with known audio offsets; SyncNet's layout,
shapes, weight loading and an end-to-end run with random weights (the public weights are not available)."""

import dataclasses

import numpy as np
import pytest
import torch

from filters.synthetic import SpeakerSpec
from filters.sync import LipAudioSyncScorer, make_sync_scorer
from filters.syncnet import SyncNetModel, SyncNetScorer, face_crops, load_syncnet, reference_mfcc
from tests.clip_factory import make_clip
from tests.random_weights import random_syncnet

OFFSETS = (-10, -5, 0, 5, 10)
COLUMNS = {"sync_offset", "sync_dist", "sync_conf", "sync_scorer"}


@pytest.fixture(scope="module")
def offset_clips(tmp_path_factory):
    """One ingested 4-s 512² clip per audio offset (frames; + = audio late), same speaker and speech."""
    root = tmp_path_factory.mktemp("sync")
    return {k: make_clip(SpeakerSpec(seed=31, duration_s=4.0, width=512, height=512, audio_offset_frames=k),
                         root / f"offset{k}")[0] for k in OFFSETS}


def _shuffled_audio(clip, seed):
    """The clip with its audio cut into one-frame chunks (640 samples) and put back in random order."""
    hop = clip.audio_rate // int(clip.fps)
    chunks = clip.audio[: clip.n_frames * hop].reshape(clip.n_frames, hop)
    return dataclasses.replace(clip, audio=chunks[np.random.default_rng(seed).permutation(clip.n_frames)].ravel())


@pytest.mark.parametrize("offset", OFFSETS)
def test_default_scorer_recovers_offset(offset_clips, offset):
    scores = LipAudioSyncScorer().score(offset_clips[offset])
    assert set(scores) == COLUMNS and scores["sync_scorer"] == "lip_audio_xcorr"
    assert abs(scores["sync_offset"] - offset) <= 1, scores
    assert scores["sync_dist"] < 0.5, scores


def test_shuffled_audio_has_lower_confidence(offset_clips):
    scorer = LipAudioSyncScorer()
    synced = scorer.score(offset_clips[0])
    for seed in range(3):
        shuffled = scorer.score(_shuffled_audio(offset_clips[0], seed))
        assert synced["sync_conf"] > shuffled["sync_conf"] + 0.2, (synced, shuffled)
        assert synced["sync_dist"] < shuffled["sync_dist"] - 0.2, (synced, shuffled)


def test_default_scorer_says_why_it_cannot_score(offset_clips):
    """Face lost in most frames, silence, too short a clip: ValueError naming the reason, never a guess."""
    clip = offset_clips[0]
    sparse = clip.landmarks.copy()
    sparse[20:] = np.nan
    with pytest.raises(ValueError, match="face lost in 80 of 100 frames"):
        LipAudioSyncScorer().score(dataclasses.replace(clip, landmarks=sparse))
    with pytest.raises(ValueError, match="voiced speech"):
        LipAudioSyncScorer().score(dataclasses.replace(clip, audio=np.zeros_like(clip.audio)))
    with pytest.raises(ValueError, match="usable frames"):
        LipAudioSyncScorer(min_overlap_s=4.0).score(clip)


def test_still_mouth_has_no_sync_evidence(offset_clips):
    """The first frame's landmarks repeated (a frozen face) with the clip's own speech: conf 0, no offset."""
    clip = offset_clips[0]
    frozen = np.repeat(clip.landmarks[:1], clip.n_frames, axis=0)
    scores = LipAudioSyncScorer().score(dataclasses.replace(clip, landmarks=frozen))
    assert scores["sync_conf"] == 0.0 and scores["sync_dist"] == 1.0 and np.isnan(scores["sync_offset"])
    assert LipAudioSyncScorer().score(clip)["sync_conf"] > 0.3


def test_other_speakers_audio_has_lower_confidence(offset_clips, tmp_path):
    """Another generated speaker's speech (a different syllable plan) under this face."""
    other = make_clip(SpeakerSpec(seed=77, duration_s=4.0, width=512, height=512), tmp_path)[0]
    clip = offset_clips[0]
    audio = np.zeros_like(clip.audio)
    audio[: min(len(audio), len(other.audio))] = other.audio[: len(audio)]
    scorer = LipAudioSyncScorer()
    synced, mismatched = scorer.score(clip), scorer.score(dataclasses.replace(clip, audio=audio))
    assert synced["sync_conf"] > mismatched["sync_conf"] + 0.1, (synced, mismatched)
    assert synced["sync_dist"] < mismatched["sync_dist"] - 0.3, (synced, mismatched)


def test_default_scorer_tolerates_missing_landmark_frames(offset_clips):
    clip = offset_clips[5]
    holed = clip.landmarks.copy()
    holed[30:40] = np.nan
    assert abs(LipAudioSyncScorer().score(dataclasses.replace(clip, landmarks=holed))["sync_offset"] - 5) <= 1


# --- SyncNet ----------------------------------------------------------------------------------------

# Weight shapes of the public syncnet_v2.model (syncnet_python's SyncNetModel.S): Sequential positions of
# every convolution / linear layer and its batch norm.
PUBLIC_WEIGHT_SHAPES = {
    "netcnnaud.0.weight": (64, 1, 3, 3), "netcnnaud.4.weight": (192, 64, 3, 3),
    "netcnnaud.8.weight": (384, 192, 3, 3), "netcnnaud.11.weight": (256, 384, 3, 3),
    "netcnnaud.14.weight": (256, 256, 3, 3), "netcnnaud.18.weight": (512, 256, 5, 4),
    "netcnnlip.0.weight": (96, 3, 5, 7, 7), "netcnnlip.4.weight": (256, 96, 1, 5, 5),
    "netcnnlip.8.weight": (256, 256, 1, 3, 3), "netcnnlip.11.weight": (256, 256, 1, 3, 3),
    "netcnnlip.14.weight": (256, 256, 1, 3, 3), "netcnnlip.18.weight": (512, 256, 1, 6, 6),
    "netfcaud.0.weight": (512, 512), "netfcaud.3.weight": (1024, 512),
    "netfclip.0.weight": (512, 512), "netfclip.3.weight": (1024, 512),
}
BATCH_NORMS = [f"{stream}.{i}" for stream in ("netcnnaud", "netcnnlip") for i in (1, 5, 9, 12, 15, 19)] \
    + ["netfcaud.1", "netfclip.1"]


def _inputs():
    generator = torch.Generator().manual_seed(0)
    return (torch.randn(2, 1, 13, 20, generator=generator),
            torch.rand(2, 3, 5, 224, 224, generator=generator) * 255)


def _outputs(model):
    audio, video = _inputs()
    with torch.inference_mode():
        return model.audio_embedding(audio), model.video_embedding(video)


def test_syncnet_layout_matches_public_checkpoint():
    state = SyncNetModel().state_dict()
    for key, shape in PUBLIC_WEIGHT_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    for prefix in BATCH_NORMS:
        assert {f"{prefix}.{name}" for name in ("weight", "bias", "running_mean", "running_var")} <= set(state)
    # 16 weighted layers (weight + bias) and 14 batch norms (weight, bias, 2 statistics, batch counter)
    assert len(state) == 16 * 2 + 14 * 5


def test_syncnet_shapes():
    audio, video = _outputs(SyncNetModel().eval())
    assert audio.shape == (2, 1024) and video.shape == (2, 1024)


@pytest.mark.parametrize("suffix", [".model", ".safetensors"])
def test_syncnet_weights_round_trip(tmp_path, suffix):
    model = random_syncnet(seed=1)
    path = tmp_path / f"syncnet_v2{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(model.state_dict(), str(path))
    else:
        torch.save(model.state_dict(), path)
    expected, loaded = _outputs(model), _outputs(load_syncnet(path))
    assert all(torch.equal(a, b) for a, b in zip(expected, loaded))
    assert not torch.allclose(expected[0], _outputs(random_syncnet(seed=2))[0])


def test_syncnet_loads_old_checkpoints_and_rejects_others(tmp_path):
    state = random_syncnet(seed=1).state_dict()
    old = {key: value for key, value in state.items() if not key.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "old.model")
    assert torch.equal(_outputs(load_syncnet(tmp_path / "old.model"))[1], _outputs(random_syncnet(seed=1))[1])
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "other.model")
    with pytest.raises(ValueError, match="extra.weight"):
        load_syncnet(tmp_path / "other.model")


def test_missing_weights_name_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "syncnet_v2.model"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        SyncNetScorer(missing)


def test_reference_mfcc_grid():
    """python_speech_features' framing: 25 ms frames every 10 ms, the last one padded; 13 coefficients."""
    audio = np.random.default_rng(0).uniform(-0.1, 0.1, 16000).astype(np.float32)
    mfcc = reference_mfcc(audio)
    assert mfcc.shape == (13, 1 + int(np.ceil((16000 - 400) / 160))) and np.isfinite(mfcc).all()


def test_face_crops_follow_reference_geometry():
    """Box centre lands at column 112, row 224 / 2.8 = 80 of the 224² crop; channels come out BGR."""
    frame = np.zeros((512, 512, 3), np.uint8)
    frame[42:59, 42:59] = (255, 0, 0)  # red square at (50, 50), RGB
    crop = face_crops(frame[None], np.array([[0.0, 0.0, 100.0, 100.0]]))[0]  # crop reaches past the left edge
    rows, cols = np.nonzero(crop[..., 2] > 128)
    assert abs(rows.mean() - 80) < 1.5 and abs(cols.mean() - 112) < 1.5
    assert crop[rows, cols, 0].max() == 0  # no blue there: the red went to channel 2
    assert (crop[0, 0] == 110).all()  # outside the frame: the reference's grey padding


def test_syncnet_scorer_end_to_end(tmp_path, offset_clips):
    torch.save(random_syncnet(seed=3).state_dict(), tmp_path / "syncnet_v2.model")
    scorer = make_sync_scorer(str(tmp_path / "syncnet_v2.model"))
    assert isinstance(scorer, SyncNetScorer) and (scorer.name, scorer.version) == ("syncnet", "v2")
    clip = offset_clips[0]
    short = dataclasses.replace(clip, frames=clip.frames[:30], landmarks=clip.landmarks[:30],
                                audio=clip.audio[:30 * 640])
    video, audio = scorer.embeddings(short)
    assert video.shape == audio.shape == (25, 1024)
    scores = scorer.score(short)
    assert set(scores) == COLUMNS and scores["sync_scorer"] == "syncnet"
    assert -15 <= scores["sync_offset"] <= 15 and scores["sync_dist"] > 0 and scores["sync_conf"] >= 0


def test_factory_defaults_to_weight_free_scorer():
    assert isinstance(make_sync_scorer(None), LipAudioSyncScorer)
