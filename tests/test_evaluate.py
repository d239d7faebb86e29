"""The evaluation runner (`fada.evaluate`): reading a view's test clips, the in-memory audio source, the weight
checks that come before any generation, the report and table with skipped metrics, same seeds for every run,
and (slow) an end-to-end evaluation of a tiny trained teacher with FID/FVD on random-initialised feature nets.

The report test generates for real with an untrained tiny teacher (a few seconds); the slow test evaluates a
trained one with FID/FVD.
"""

import io
import json
import shutil
import tarfile
import warnings

import numpy as np
import pytest
import torch

from fada.evaluate import (
    NOT_COMPUTED,
    REPORT_FILE,
    TABLE_FILE,
    EvaluationWarning,
    clip_seed,
    evaluate,
    format_table,
    pair_runs,
    read_test_clips,
    table_rows,
)
from fada.metrics import MissingWeightsError, inception, video_features
from fada.metrics.inception import FIDInceptionV3
from fada.metrics.video_features import R3D18
from tests.random_weights import kaiming_init

N_FRAMES = 6  # frames evaluated per clip in the fast tests (max_frames)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from shards.synthetic_dataset import make_speaker_data_dir

    return make_speaker_data_dir(tmp_path_factory.mktemp("evaldata") / "data", n_clips=2, size=48, duration_s=1.5,
                                 view="test")


def _tiny_config():
    from fada.config import load_config

    config = load_config("tiny")
    config["train"].update(num_frames=4, batch_size=1, windows_per_clip=1, shuffle_buffer=0, checkpoint_every=1000)
    return config


@pytest.fixture(scope="module")
def untrained_ckpt(tmp_path_factory):
    """An inference checkpoint of a fresh tiny teacher (no training: it generates noise, in 4-frame clips); its
    ``sample`` section makes it sample in 5 DDIM steps (15 NFE per clip) to keep the tests short."""
    from fada.checkpoint import save_inference_checkpoint
    from fada.train_teacher import build_model

    config = _tiny_config()
    config["sample"]["num_inference_steps"] = 5
    torch.manual_seed(0)
    model, codec = build_model(config)
    return save_inference_checkpoint(tmp_path_factory.mktemp("ckpt") / "fresh", model, codec,
                                     {"kind": "teacher", "step": 0, "config": config})


@pytest.fixture(scope="module")
def feature_weights(tmp_path_factory):
    """(FID Inception, R3D-18) random-initialised, saved as the published files would be."""
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    torch.save(kaiming_init(FIDInceptionV3()).state_dict(), root / inception.WEIGHTS_FILE)
    torch.save(kaiming_init(R3D18()).state_dict(), root / video_features.WEIGHTS_FILE)
    return root / inception.WEIGHTS_FILE, root / video_features.WEIGHTS_FILE


@pytest.fixture()
def no_generation(monkeypatch):
    import fada.pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("the pipeline was loaded")

    monkeypatch.setattr(fada.pipeline.FadaPipeline, "from_checkpoint", refuse)


def _frames(path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def _video_info(path):
    """(number of video frames, frame size, audio rate, audio samples) of an mp4."""
    import av

    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(audio=0))
        rate = stream.rate
    return len(frames), frames[0].shape[:2], rate, samples


# --- reading clips ------------------------------------------------------------------------------------------


def test_read_test_clips_in_key_order_with_exact_audio(data_dir):
    clips = read_test_clips(data_dir, "test")
    assert [key for key, _, _ in clips] == ["speaker000", "speaker001"]
    for _, frames, audio in clips:
        assert frames.dtype == np.uint8 and frames.shape[1:] == (48, 48, 3) and len(frames) >= 30
        assert audio.dtype == np.float32 and len(audio) == len(frames) * 640 and np.abs(audio).max() > 0.01
    (key, frames, audio), = read_test_clips(data_dir, "test", max_clips=1, max_frames=5)
    assert key == "speaker000" and len(frames) == 5 and len(audio) == 5 * 640
    np.testing.assert_array_equal(frames, clips[0][1][:5])


def test_read_test_clips_reads_safe_names_only(data_dir, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(data_dir / "shards", copy / "shards")
    shard = next((copy / "shards").rglob("*.tar"))
    with tarfile.open(shard, "a") as tar:  # members whose keys have a dot or a path: never read
        for name in ("speaker000.evil.wav", "../speaker001.json", "sub/speaker000.mp4"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"bad"))
    view = json.loads((data_dir / "views" / "test.json").read_text())
    shard_name = next(iter(view["shards"]))
    view["shards"][shard_name] = view["shards"][shard_name] + ["../escape", "missing007"]
    (copy / "views").mkdir()
    (copy / "views" / "test.json").write_text(json.dumps(view))
    with pytest.warns(EvaluationWarning) as caught:
        clips = read_test_clips(copy, "test", max_frames=3)
    messages = " ".join(str(w.message) for w in caught)
    assert "unsafe" in messages and "missing007" in messages and "missing member" in messages
    reference = read_test_clips(data_dir, "test", max_frames=3)
    assert [c[0] for c in clips] == [c[0] for c in reference] == ["speaker000", "speaker001"]
    for (_, frames, audio), (_, ref_frames, ref_audio) in zip(clips, reference):
        np.testing.assert_array_equal(frames, ref_frames)
        np.testing.assert_array_equal(audio, ref_audio)


def test_array_audio_stream_matches_the_file_stream(tmp_path):
    import soundfile

    from fada.media import ArrayAudioStream, AudioStream

    audio = (0.3 * np.sin(np.arange(16_000 + 333) / 7)).astype(np.float32)
    soundfile.write(tmp_path / "a.wav", audio, 16_000, subtype="FLOAT")
    from_file, in_memory = AudioStream(tmp_path / "a.wav", block_s=0.3), ArrayAudioStream(audio, "clip", block_s=0.3)
    assert in_memory.n_frames == from_file.n_frames == 26 and in_memory.n_samples == len(audio)
    for (first_a, a), (first_b, b) in zip(from_file.frames_audio(2, 4), in_memory.frames_audio(2, 4), strict=True):
        assert first_a == first_b
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_array_equal(in_memory.read_all(), audio)


def test_clip_seed_depends_on_key_and_base_seed_only():
    assert clip_seed(0, "speaker000") == clip_seed(0, "speaker000")
    assert len({clip_seed(0, "speaker000"), clip_seed(0, "speaker001"), clip_seed(1, "speaker000")}) == 3
    assert 0 <= clip_seed(5, "x") < 2**31


def test_pair_runs():
    assert pair_runs(["a"], None) == [("a", "teacher")]
    assert pair_runs(["a", "b"], ["fast"]) == [("a", "fast"), ("b", "fast")]
    assert pair_runs(["s"], ["balanced,fast"]) == [("s", "balanced"), ("s", "fast")]
    assert pair_runs(["t", "s"], ["teacher", "fast"]) == [("t", "teacher"), ("s", "fast")]
    with pytest.raises(ValueError):
        pair_runs(["a", "b", "c"], ["teacher", "fast"])


# --- checks before generation -------------------------------------------------------------------------------


def test_missing_fid_weights_raise_naming_the_file_before_generation(data_dir, untrained_ckpt, feature_weights,
                                                                     tmp_path, no_generation):
    fid, fvd = feature_weights
    out = tmp_path / "out"
    with pytest.raises(MissingWeightsError) as error:
        evaluate(data_dir, [(str(untrained_ckpt), "teacher")], out, fvd_weights=fvd)
    assert inception.WEIGHTS_FILE in str(error.value) and "skip" in str(error.value)
    with pytest.raises(MissingWeightsError) as error:
        evaluate(data_dir, [(str(untrained_ckpt), "teacher")], out, fid_weights=fid, fvd_weights=tmp_path / "absent.pth")
    assert video_features.WEIGHTS_FILE in str(error.value) and "absent.pth" in str(error.value)
    assert not out.exists()


def test_student_mode_on_a_teacher_is_refused_before_generation(data_dir, untrained_ckpt, tmp_path, no_generation):
    with pytest.raises(ValueError, match="distilled student"):
        evaluate(data_dir, [(str(untrained_ckpt), "fast")], tmp_path / "out", skip=("fid", "fvd"))
    with pytest.raises(ValueError, match="mode 'turbo'"):
        evaluate(data_dir, [(str(untrained_ckpt), "turbo")], tmp_path / "out", skip=("fid", "fvd"))
    with pytest.raises(ValueError, match="skippable"):
        evaluate(data_dir, [(str(untrained_ckpt), "teacher")], tmp_path / "out", skip=("lpips",))


# --- report and table (an untrained teacher) -----------------------------------------------------------------


def test_skipped_fid_fvd_are_labelled_not_computed(data_dir, untrained_ckpt, tmp_path):
    out = tmp_path / "out"
    runs = [(str(untrained_ckpt), "teacher"), (str(untrained_ckpt), "teacher")]
    report = evaluate(data_dir, runs, out, skip=("fid", "fvd"), max_frames=N_FRAMES, warmup=False, progress=False)

    assert json.loads((out / REPORT_FILE).read_text()) == report and report["complete"]
    assert [run["name"] for run in report["runs"]] == ["fresh-teacher", "fresh-teacher-2"]
    for run in report["runs"]:
        assert run["metrics"]["fid"] is None and run["metrics"]["fvd"] is None
        assert set(run["not_computed"]) == {"fid", "fvd"}
        assert run["metrics"]["nfe_d"] == 15 and run["metrics"]["frames_generated"] == 2 * N_FRAMES  # 5 steps × 3 passes
        assert [clip["nfe_d"] for clip in run["per_clip"]] == [15, 15]
        for clip in run["per_clip"]:
            frames, size, rate, samples = _video_info(out / clip["video"])
            assert frames == N_FRAMES and size == (48, 48) and rate == 16_000 and samples >= N_FRAMES * 640 - 1024
    # the same seed per clip for every run (so the same checkpoint makes the same video), different between clips
    first, second = report["runs"]
    assert [clip["seed"] for clip in first["per_clip"]] == [clip_seed(0, key) for key in ("speaker000", "speaker001")]
    assert [clip["seed"] for clip in second["per_clip"]] == [clip["seed"] for clip in first["per_clip"]]
    videos = [[_frames(out / clip["video"]) for clip in run["per_clip"]] for run in (first, second)]
    for video, again in zip(*videos):
        np.testing.assert_array_equal(video, again)
    assert not np.array_equal(videos[0][0], videos[0][1])

    table = (out / TABLE_FILE).read_text()
    assert table == format_table(report)
    header, _, reference, *rows = [line for line in table.splitlines() if line.startswith("|")]
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns == ["Method", "Mode", "IQA↑", "Sync-C↑", "Sync-D↓", "FID↓", "FVD↓", "E-FD↓", "NFE-D", "s per video-s"]
    assert "Real test clips" in reference and len(rows) == 2
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[columns.index("FID↓")] == NOT_COMPUTED and cells[columns.index("FVD↓")] == NOT_COMPUTED
        assert cells[columns.index("NFE-D")] == "15"
    assert table_rows(report)[1]["FID↓"] == NOT_COMPUTED and table_rows(report)[0]["Method"] == "Real test clips"


# --- end to end (real pipeline, FID/FVD on random-initialised nets) -----------------------------------------


@pytest.mark.slow
def test_evaluate_a_trained_teacher_end_to_end(data_dir, feature_weights, tmp_path):
    from fada.train_teacher import train_teacher

    result = train_teacher(data_dir, "test", _tiny_config(), 2, tmp_path / "teacher", device="cpu", progress=False)
    fid, fvd = feature_weights
    out = tmp_path / "eval"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = evaluate(data_dir, [(str(tmp_path / "teacher"), "teacher")], out, fid_weights=fid, fvd_weights=fvd,
                          max_frames=4, device="cpu", warmup=False, progress=False)

    (run,) = report["runs"]
    assert run["checkpoint"] == str((tmp_path / "teacher" / "final").resolve()) and run["kind"] == "teacher"
    metrics = run["metrics"]
    assert metrics["nfe_d"] == 75 and [clip["nfe_d"] for clip in run["per_clip"]] == [75, 75]
    assert metrics["frames_generated"] == 8 and metrics["videos"] == 2
    assert np.isfinite(metrics["fid"]) and np.isfinite(metrics["fvd"]) and metrics["fid_frames"] == {"real": 8, "generated": 8}
    assert metrics["seconds_per_video_second"] > 0 and run["not_computed"] == {}
    for clip in run["per_clip"]:
        frames, size, rate, samples = _video_info(out / clip["video"])
        assert frames == 4 and size == (48, 48) and rate == 16_000 and samples >= 4 * 640 - 1024
    assert json.loads((out / REPORT_FILE).read_text()) == report
    table = (out / TABLE_FILE).read_text()
    assert f"{metrics['fid']:.2f}" in table and "| 75 |" in table and result.steps == 2
