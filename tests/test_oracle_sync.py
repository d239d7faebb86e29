"""The oracle lip-sync metric (fada.metrics.oracle_sync) on rendered generator speakers: its regressor reads the
mouth of held-out speakers, true video scores far above shuffled audio at lag 0, a late audio track moves the
lag by its offset, and a video whose mouth does not follow the audio scores like shuffled audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fada.metrics.oracle_sync import (OracleSync, audio_envelope, lagged_correlation, load_regressor,
                                      per_window_correlation, predict_opening, r_squared, render_speakers,
                                      save_regressor, shuffled_envelope, train_mouth_regressor)

TRAIN_SEEDS, HELD_OUT_SEEDS = range(100, 103), (200, 201)


@pytest.fixture(scope="module")
def regressor(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        speakers = render_speakers(TRAIN_SEEDS, 2.0, tmp_path_factory.mktemp("train"))
        return train_mouth_regressor(speakers, steps=300, seed=0)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    return render_speakers(HELD_OUT_SEEDS, 4.0, tmp_path_factory.mktemp("held_out"))


def test_regressor_reads_held_out_mouths_at_any_resolution(regressor, held_out):
    truth = np.concatenate([s.mouth_open for s in held_out])
    for size in (128, 32):  # the training clips' source size and the tiny model's codec size
        frames = np.concatenate([torch.nn.functional.interpolate(
            torch.from_numpy(s.frames).permute(0, 3, 1, 2).float(), size=(size, size), mode="area")
            .round().byte().permute(0, 2, 3, 1).numpy() for s in held_out])
        assert r_squared(predict_opening(regressor, frames), truth) > 0.8, size


def test_weights_round_trip_through_safetensors(regressor, held_out, tmp_path):
    path = tmp_path / "mouth.safetensors"
    save_regressor(regressor, path)
    loaded = load_regressor(path)
    frames = held_out[0].frames[:20]
    np.testing.assert_array_equal(predict_opening(loaded, frames), predict_opening(regressor, frames))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a mouth regressor"):
        load_regressor(tmp_path / "other.safetensors")


def test_rendered_video_is_far_above_shuffled_at_lag_0(regressor, held_out):
    oracle = OracleSync(regressor)
    for speaker in held_out:
        scores = oracle.score(speaker.frames, speaker.audio)
        assert scores["oracle_lag"] == 0
        assert scores["oracle_sync"] > 0.8
        assert scores["oracle_sync"] > scores["oracle_shuffled_p95"] + 0.3


@pytest.mark.parametrize("offset", [3, -2])
def test_late_audio_moves_the_lag_by_its_offset(regressor, tmp_path, offset):
    """The renderer delays (+) or advances (−) the audio track against the mouth; the lag follows, sign included."""
    speaker, = render_speakers([HELD_OUT_SEEDS[0]], 4.0, tmp_path, audio_offset_frames=offset)
    scores = OracleSync(regressor).score(speaker.frames, speaker.audio)
    assert scores["oracle_lag"] == offset
    assert scores["oracle_sync"] > scores["oracle_shuffled_p95"]


def test_frozen_video_scores_like_shuffled_audio(regressor, held_out):
    """One frame repeated, with fresh pixel noise per frame (so the read mouth jitters): no more sync than chance."""
    speaker = held_out[0]
    rng = np.random.default_rng(0)
    frozen = np.repeat(speaker.frames[:1], len(speaker.frames), axis=0).astype(np.float32)
    frozen = np.clip(frozen + rng.normal(0, 6, frozen.shape), 0, 255).astype(np.uint8)
    oracle = OracleSync(regressor)
    scores, true_scores = oracle.score(frozen, speaker.audio), oracle.score(speaker.frames, speaker.audio)
    assert scores["oracle_sync"] <= scores["oracle_shuffled_p95"] + 0.05
    assert abs(scores["oracle_sync"] - scores["oracle_shuffled"]) < 0.2
    assert scores["oracle_sync"] < true_scores["oracle_sync"] - 0.5
    exact = oracle.score(np.repeat(speaker.frames[:1], len(speaker.frames), axis=0), speaker.audio)
    assert exact["oracle_sync"] == 0.0 and exact["oracle_lag"] is None and exact["oracle_mouth_std"] < 1e-3


def test_lag_sign_and_shuffle_on_plain_signals():
    rng = np.random.default_rng(1)
    envelope = np.convolve(rng.random(200), np.ones(4) / 4, mode="same")
    mouth = np.roll(envelope, -5)  # mouth[f] = envelope[f + 5]: the sound of frame f is heard 5 frames later
    lags, r = lagged_correlation(mouth, envelope, 8)
    assert lags[np.argmax(r)] == 5 and r.max() == pytest.approx(1.0, abs=1e-6)
    shuffled = shuffled_envelope(envelope, 10, rng)
    assert sorted(shuffled) == sorted(envelope)
    pieces = shuffled.reshape(20, 10)
    assert not any(np.array_equal(pieces[i], envelope[10 * i:10 * i + 10]) for i in range(20))
    assert per_window_correlation(envelope, envelope, 25).tolist() == pytest.approx([1.0] * 8)
    assert per_window_correlation(mouth, envelope, 25, lag=5) == pytest.approx(np.ones(7))


def test_envelope_of_short_audio_is_silence_after_its_end():
    audio = np.full(640 * 10, 0.1, np.float32)
    envelope = audio_envelope(audio, 20)
    assert envelope[:9] == pytest.approx(0.1) and np.all(envelope[11:] == 0)


def test_short_video_is_refused_with_a_reason(regressor):
    with pytest.raises(ValueError, match="at least 40"):
        OracleSync(regressor).score(np.zeros((30, 32, 32, 3), np.uint8), np.zeros(30 * 640, np.float32))


def test_evaluation_reports_the_oracle_when_given_its_weights(regressor, held_out, tmp_path):
    from fada.evaluate import MetricSuite, clip_scores, quality_metrics, table_rows

    save_regressor(regressor, tmp_path / "mouth.safetensors")
    only_oracle = ("fid", "fvd", "sync", "iqa", "expression")
    suite = MetricSuite(skip=only_oracle, device="cpu", oracle_weights=tmp_path / "mouth.safetensors")
    stats = [suite.video_stats(s.frames, s.audio) for s in held_out] + [
        suite.video_stats(held_out[0].frames[:20], held_out[0].audio)]  # too short: a reason, not a failure
    assert [clip_scores(item).get("oracle_lag") for item in stats] == [0, 0, None]
    assert "at least 40" in clip_scores(stats[2])["oracle_error"]
    metrics, _, _ = quality_metrics(["a", "b", "c"], stats, suite.skip)
    assert metrics["oracle_videos"] == 2 and metrics["oracle_sync"] > 0.8 > metrics["oracle_shuffled"]
    report = {"reference": {"metrics": metrics}, "runs": [], "metric_config": suite.config}
    assert table_rows(report)[0]["Oracle sync↑"] == f"{metrics['oracle_sync']:.3f}"
    plain = MetricSuite(skip=only_oracle, device="cpu")
    assert "Oracle sync↑" not in table_rows({**report, "metric_config": plain.config})[0]
