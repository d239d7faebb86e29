"""End to end: synthetic speakers and bad files → `flows.ingest.ingest` on a local Ray → clips.

One ingest run over a mixed manifest is shared by the tests of this module (it is the expensive part).
"""

import json
import tarfile
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import yaml

from filters.face_track import box_iou
from filters.synthetic import FACE_BOX_SRC, LIP_PARTING_CENTRE, SpeakerSpec, render_sidecar_audio, render_speaker
from filters.profiles import load_profile
from flows.ingest import ingest
from shards.ingest.config import IngestConfig
from shards.catalog import read_catalog
from shards.reader import ClipWindowDataset
from shards.views import refilter
from shards.ledger import SourceLedger
from tests.media_factory import write_test_video

pytestmark = pytest.mark.slow

SIZE = dict(width=384, height=288)
CUT_FRAME = 90
CONFIG = IngestConfig.from_dict({"clip": {"min_s": 1.0, "max_s": 3.0}, "chunk_s": 60.0})

SPEAKERS = {
    "cut": SpeakerSpec(seed=1, duration_s=8.0, scene_cut_frame=CUT_FRAME, **SIZE),
    "offset5_30fps": SpeakerSpec(seed=2, duration_s=4.0, fps=30.0, audio_offset_frames=5, audio_rate=48000, **SIZE),
    "offset0": SpeakerSpec(seed=3, duration_s=3.0, audio_channels=1, audio_rate=22050, **SIZE),
    "no_face": SpeakerSpec(seed=4, duration_s=3.0, no_face=True, **SIZE),
    "multi_face": SpeakerSpec(seed=5, duration_s=3.0, second_face=True, **SIZE),
    "sidecar": SpeakerSpec(seed=6, duration_s=4.0, with_audio=False, **SIZE),
}


def _bad_inputs(folder: Path) -> dict[str, dict]:
    """One file per probe rejection reason, each with the reason it must get."""
    (folder / "garbage.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    good = write_test_video(folder / "full.mp4", n_frames=75, audio_rate=16000, faststart=True)  # index first, data cut
    (folder / "truncated.mp4").write_bytes(good.read_bytes()[: int(good.stat().st_size * 0.6)])
    soundfile.write(folder / "audio_only.wav", np.zeros(32000, np.float32), 16000)
    write_test_video(folder / "silent_film.mp4", n_frames=75)  # no audio stream, no sidecar
    write_test_video(folder / "short.mp4", n_frames=30, audio_rate=16000)
    write_test_video(folder / "fast.mp4", n_frames=200, fps=90, audio_rate=16000)
    write_test_video(folder / "tiny.mp4", n_frames=75, size=(200, 160), audio_rate=16000)
    return {
        "garbage.mp4": {"reason": "unreadable"},
        "truncated.mp4": {"reason": "truncated"},
        "audio_only.wav": {"reason": "no_video_stream"},
        "silent_film.mp4": {"reason": "no_audio"},
        "short.mp4": {"reason": "too_short"},
        "fast.mp4": {"reason": "bad_fps"},
        "tiny.mp4": {"reason": "too_small"},
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory, ray_local):
    folder = tmp_path_factory.mktemp("sources")
    truths, rows = {}, []
    for name, spec in SPEAKERS.items():
        truths[name] = render_speaker(spec, folder / f"{name}.mp4")
        row = {"uri": f"{name}.mp4", "tag": "interview"}
        if name == "sidecar":  # 48 kHz stereo, shorter than the video
            render_sidecar_audio(spec, folder / "sidecar.wav", rate=48000, channels=2, duration_s=3.2)
            row["audio_uri"] = "sidecar.wav"
        rows.append(row)
    bad = _bad_inputs(folder)
    rows += [{"uri": name, "tag": "news"} for name in bad]
    (folder / "manifest.yaml").write_text(yaml.safe_dump(rows))
    data = tmp_path_factory.mktemp("data")
    report = ingest(folder / "manifest.yaml", data, CONFIG, workers=2, progress=False)
    records = {}
    media = tmp_path_factory.mktemp("media")  # the shards' members, unpacked for inspection
    for shard in sorted(data.glob("shards/v1/clips-*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                payload = tar.extractfile(member).read()
                (media / member.name).write_bytes(payload)
                if member.name.endswith(".json"):
                    record = json.loads(payload)
                    records.setdefault(Path(record["source_uri"]).stem, []).append(record)
    return {"folder": folder, "data": data, "media": media, "report": report, "truths": truths, "records": records, "bad": bad}


def _frame_index(record, j, source_fps):
    return int(round((record["start_s"] + j / record["fps"]) * source_fps))


def test_every_bad_input_gets_its_own_reason_and_the_rest_finish(run):
    outcomes = {Path(row["uri"]).name: row for row in run["report"].sources}
    for name, expected in run["bad"].items():
        assert outcomes[name]["outcome"] == "rejected", outcomes[name]
        assert outcomes[name]["reason"] == expected["reason"], (name, outcomes[name])
    for name in SPEAKERS:
        assert outcomes[f"{name}.mp4"]["outcome"] == "ingested", outcomes[f"{name}.mp4"]
    ledger = SourceLedger(run["data"])
    rejected = [r for r in ledger.records() if r["status"] == "rejected"]
    assert sorted(r["reject_reason"] for r in rejected) == sorted(e["reason"] for e in run["bad"].values())


def test_scene_cut_found_and_no_clip_crosses_it(run):
    records = run["records"]["cut"]
    boundaries = sorted({_frame_index(r, 0, 25) for r in records} | {_frame_index(r, r["n_frames"], 25) for r in records})
    assert min(abs(b - CUT_FRAME) for b in boundaries) <= 2
    for record in records:
        first, end = _frame_index(record, 0, 25), _frame_index(record, record["n_frames"], 25)
        assert not (first < CUT_FRAME - 2 and end > CUT_FRAME + 2), record["key"]


def test_clip_lengths_follow_the_documented_rule(run):
    # max 3 s, min 1 s: shot 1 (90 frames) → 75 + 15 (too short); shot 2 (110 frames) → 75 + 35.
    records = sorted(run["records"]["cut"], key=lambda r: r["start_s"])
    assert [(r["n_frames"], r["status"]) for r in records] == [(75, "ok"), (15, "rejected"), (75, "ok"), (35, "ok")]
    assert records[1]["reject_reason"] == "too_short"
    keys = [r["key"] for r in records]
    assert keys == sorted(keys) and all("." not in k for k in keys)
    for record in records:
        if record["status"] == "ok":
            with av.open(str(run["media"] / f"{record['key']}.mp4")) as container:
                stream = container.streams.video[0]
                frames = list(container.decode(stream))
                assert (stream.width, stream.height, stream.codec_context.pix_fmt) == (512, 512, "yuv420p")
                assert len(frames) == record["n_frames"]


def test_face_boxes_match_the_generator(run):
    truth = run["truths"]["cut"]
    ious = []
    for record in run["records"]["cut"]:
        for j, box in enumerate(record["face_boxes"]):
            ious.append(box_iou(np.array(box), truth.face_boxes[_frame_index(record, j, 25)]))
    assert np.median(ious) >= 0.85 and np.percentile(ious, 5) >= 0.8, np.percentile(ious, [0, 5, 50])


def _mouth_darkness(record, clip_path, source_fps, truth):
    """Per clip frame: darkness of the mouth region, located from the generator's face box."""
    u = (LIP_PARTING_CENTRE[0] - FACE_BOX_SRC[0]) / (FACE_BOX_SRC[2] - FACE_BOX_SRC[0])
    v = (LIP_PARTING_CENTRE[1] - FACE_BOX_SRC[1]) / (FACE_BOX_SRC[3] - FACE_BOX_SRC[1])
    values = []
    with av.open(str(clip_path)) as container:
        for j, frame in enumerate(container.decode(video=0)):
            rgb = frame.to_ndarray(format="rgb24").astype(np.float32)
            x0, y0, x1, y1 = truth.face_boxes[_frame_index(record, j, source_fps)]
            cx0, cy0, cx1, _ = record["crop_boxes"][j]
            scale = 512 / (cx1 - cx0)
            mx, my = (x0 + u * (x1 - x0) - cx0) * scale, (y0 + v * (y1 - y0) - cy0) * scale
            half_w, half_h = 0.15 * (x1 - x0) * scale, 0.12 * (y1 - y0) * scale
            patch = rgb[int(my - half_h * 0.3) : int(my + half_h), int(mx - half_w) : int(mx + half_w)]
            values.append(255.0 - patch.mean())
    return np.array(values)


def _best_lag(reference, signal, max_lag=4):
    """Lag (in frames) by which ``signal`` follows ``reference``, by correlation."""
    def corr(lag):
        a, b = (reference[: len(reference) - lag], signal[lag:]) if lag >= 0 else (reference[-lag:], signal[: len(signal) + lag])
        return np.corrcoef(a, b)[0, 1]

    return max(range(-max_lag, max_lag + 1), key=corr)


@pytest.mark.parametrize("name", ["offset0", "offset5_30fps", "sidecar"])
def test_audio_and_video_stay_aligned_through_crop_and_resample(run, name):
    truth, spec = run["truths"][name], SPEAKERS[name]
    reference_path = run["folder"] / f"{name}_reference16k.wav"
    render_sidecar_audio(spec, reference_path, rate=16000, channels=1)
    reference, _ = soundfile.read(reference_path, dtype="float32")
    kept = [r for r in run["records"][name] if r["status"] == "ok"]
    assert kept
    for record in kept:
        clip = run["media"] / record["key"]
        # Video: the mouth seen in clip frame j is the generator's mouth at the source frame for that time.
        darkness = _mouth_darkness(record, f"{clip}.mp4", spec.fps, truth)
        mouth = np.array([truth.mouth_open[_frame_index(record, j, spec.fps)] for j in range(record["n_frames"])])
        assert _best_lag(mouth, darkness) == 0
        # Audio: the clip's samples are the source's sound at the clip's times (640 samples = 1 frame).
        audio, rate = soundfile.read(f"{clip}.wav", dtype="float32")
        assert rate == 16000 and len(audio) == record["n_frames"] * 640
        lo = int(round(record["start_s"] * 16000))
        expected = reference[lo : lo + len(audio)]
        lags = np.arange(-640, 641, 8)
        scores = [np.dot(audio[max(0, l) : len(audio) + min(0, l)], expected[max(0, -l) : len(expected) - max(0, l)]) for l in lags]
        assert abs(lags[int(np.argmax(scores))]) <= 640 // 4


def test_kept_clips_carry_every_score_and_the_scorer_versions(run):
    columns = ("source_prior", "iqa", "sharpness", "face_px", "exposure_clip", "sync_offset", "sync_conf", "sync_dist",
               "sync_scorer", "bg_motion", "camera_shake", "head_motion", "pose_range_deg", "single_face_ratio", "speech_ratio")
    for name in ("offset0", "offset5_30fps", "sidecar"):
        for record in run["records"][name]:
            if record["status"] == "ok" and record["n_frames"] >= 55:  # sync needs ≥ 1 s of frames shared by all ±15 shifts
                assert all(record.get(c) is not None for c in columns), [c for c in columns if record.get(c) is None]
                assert record["score_errors"] == {}
            elif record["status"] == "ok":  # too short to sync-score: the reason is recorded, the rest scored
                assert "lip_audio_xcorr" in record["score_errors"] and record["iqa"] is not None
                assert set(record["scorers"]) >= {"iqa", "lip_audio_xcorr", "background", "movement", "face_audio", "source_prior"}
    late = [r for r in run["records"]["offset5_30fps"] if r["status"] == "ok" and r["n_frames"] >= 55]
    assert late
    assert all(abs(r["sync_offset"] - 4) <= 1 for r in late)  # 5 frames at 30 fps = 4.2 output frames at 25 fps
    ledger = SourceLedger(run["data"]).get(run["records"]["offset0"][0]["source_id"])
    assert ledger["scorers"]["lip_audio_xcorr"] == "3"


def test_sidecar_span_is_where_both_exist(run):
    records = run["records"]["sidecar"]
    assert max(r["end_s"] for r in records) <= 3.2 + 1e-6
    assert all(r["audio_source"] == "sidecar" and r["source_audio_rate"] == 48000 for r in records)


def test_faceless_and_two_face_clips_are_rejected_with_reasons(run):
    assert {r["reject_reason"] for r in run["records"]["no_face"]} == {"no_face"}
    assert {r["reject_reason"] for r in run["records"]["multi_face"]} == {"multi_face"}


def test_second_run_processes_nothing_and_renamed_copy_is_recognised(run, tmp_path):
    folder, data = run["folder"], run["data"]
    before = sorted(p.relative_to(data) for p in data.rglob("*") if "runs" not in p.parts)
    again = ingest(folder / "manifest.yaml", data, CONFIG, workers=2, progress=False)
    assert again.frames_read == 0 and again.clips_ok == 0
    assert {row["outcome"] for row in again.sources} == {"skipped"}
    renamed = tmp_path / "renamed-copy.mp4"
    renamed.write_bytes((folder / "offset0.mp4").read_bytes())
    (tmp_path / "m.yaml").write_text(yaml.safe_dump([{"uri": str(renamed), "tag": "vlog"}]))
    third = ingest(tmp_path / "m.yaml", data, CONFIG, workers=2, progress=False)
    assert [row["outcome"] for row in third.sources] == ["skipped"] and third.frames_read == 0
    after = sorted(p.relative_to(data) for p in data.rglob("*") if "runs" not in p.parts)
    assert before == after


def test_round_trip_shards_catalog_view_reader(run):
    """ingest → shards + catalog → lenient view → reader yields exactly the selected clips, payloads intact."""
    view, _ = refilter(run["data"], load_profile("lenient"), "round-trip")
    selected = {key for keys in view["shards"].values() for key in keys}
    catalog = read_catalog(run["data"]).to_pylist()
    assert selected == {r["key"] for r in catalog if r["status"] == "ok" and load_profile("lenient").decide(r).keep}
    dataset = ClipWindowDataset(run["data"], "round-trip", n_frames=8, n_motion_frames=2, shuffle_buffer=0)
    items = list(dataset)
    assert sorted(item["key"] for item in items) == sorted(selected)
    for item in items:
        media = run["media"] / item["key"]
        assert item["record"] == json.loads(Path(f"{media}.json").read_text())
        wav, _ = soundfile.read(f"{media}.wav", dtype="float32")
        start = item["start_frame"]
        np.testing.assert_allclose(item["audio"], wav[start * 640 : (start + 8) * 640], atol=1e-6)
        with av.open(f"{media}.mp4") as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][start : start + 8]
        frames = ((item["frames"].permute(0, 2, 3, 1).numpy() + 1) * 127.5)
        assert np.abs(frames - np.stack(decoded)).mean() < 2.0
