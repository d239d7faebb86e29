"""Ingest scores each kept clip from the crops it has just encoded, in a frame buffer reused clip after clip.

These tests check that every clip is handed its own crops (the buffer is not mixed up between clips),
that the scores agree with scoring the stored files, and that decoding stored clips copes with containers
that do not declare their frame count.
"""

from dataclasses import replace

import av
import numpy as np
import pytest
import soundfile

from filters.clip_data import read_clip_frames
from filters.extract import ChunkJob, ExtractConfig, extract_chunk
from filters.face_track import FaceDetector
from filters.probe import probe_source
from filters.scoring import ClipScorer
from filters.synthetic import SpeakerSpec, render_speaker


@pytest.fixture(scope="module")
def speaker(tmp_path_factory):
    path = tmp_path_factory.mktemp("speaker") / "speaker.mp4"
    render_speaker(SpeakerSpec(seed=11, duration_s=4.0, width=384, height=288), path)
    return path


@pytest.fixture(scope="module")
def detector():
    model = FaceDetector()
    yield model
    model.close()


def _job(path, stage):
    start, end = probe_source(str(path)).usable_span_s
    return ChunkJob("s" * 64, str(path), start, end, 0, str(stage))


def _psnr(a, b):
    return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def test_each_clip_is_handed_its_own_crops_and_audio(speaker, detector, tmp_path):
    config = replace(ExtractConfig(), clip=replace(ExtractConfig().clip, max_s=1.5, min_s=0.5))
    handed = []

    def keep(frames, audio, rate, record):
        handed.append((frames.copy(), audio.copy(), rate, record["start_s"]))
        return {"handed_frames": len(frames)}

    result = extract_chunk(_job(speaker, tmp_path / "stage"), detector, config, score=keep)
    kept = [r for r in result.clips if r["status"] == "ok"]
    assert len(kept) >= 2 and len(handed) == len(kept)
    for record, (frames, audio, rate, start_s) in zip(kept, handed):
        assert record["handed_frames"] == record["n_frames"] == len(frames) and start_s == record["start_s"]
        stem = tmp_path / "stage" / record["staged_name"]
        stored = read_clip_frames(f"{stem}.mp4")
        assert stored.shape == frames.shape
        assert _psnr(stored, frames) > 35  # the stored clip is these crops, encoded at crf 18
        others = [f for f, *_ in handed if f is not frames and len(f) == len(frames)]
        assert all(_psnr(stored, other) < _psnr(stored, frames) for other in others)
        wav, wav_rate = soundfile.read(f"{stem}.wav", dtype="float32")
        assert rate == wav_rate and audio.dtype == np.float32
        np.testing.assert_allclose(audio, wav, atol=1 / 32768 + 1e-6)  # the wav holds them as 16-bit PCM


def test_in_memory_scores_agree_with_scoring_the_stored_files(speaker, detector, tmp_path):
    scorer = ClipScorer()
    result = extract_chunk(_job(speaker, tmp_path / "stage"), detector, ExtractConfig(), score=scorer.score_frames)
    kept = [r for r in result.clips if r["status"] == "ok"]
    assert kept
    for record in kept:
        stem = tmp_path / "stage" / record["staged_name"]
        from_files = scorer.score_files(f"{stem}.mp4", f"{stem}.wav", record)
        assert record["scorers"] == from_files["scorers"] and record["score_errors"] == {} == from_files["score_errors"]
        assert record["sync_offset"] == from_files["sync_offset"]
        for column, tolerance in {"iqa": 0.02, "bg_share": 0.02, "pose_range_deg": 0.5, "speech_ratio": 0.01,
                                  "single_face_ratio": 0.0, "face_px": 0.0}.items():
            assert record[column] == pytest.approx(from_files[column], abs=tolerance), column
        # The background is still in the source: both ways find (almost) no shake; the encoder's own
        # artefacts add a little jitter to the stored clip.
        assert record["camera_shake"] < 0.1 and from_files["camera_shake"] < 0.1


def test_clip_frames_decode_without_a_declared_frame_count(tmp_path):
    path = tmp_path / "clip.ts"  # MPEG-TS declares no frame count
    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for index in range(7):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 30 * index, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0
    frames = read_clip_frames(path)
    assert frames.shape == (7, 64, 64, 3)
    np.testing.assert_allclose(frames[:, 32, 32].mean(axis=1), 30 * np.arange(7), atol=3)
