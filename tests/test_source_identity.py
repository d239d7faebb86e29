"""A source is (video bytes, sidecar bytes or none): a video rejected for its audio is probed again when listed
with another sidecar, so it can be fixed; a missing sidecar file is ``sidecar_unreadable`` naming it."""

import hashlib

import pytest
import yaml

from filters.synthetic import SpeakerSpec, render_sidecar_audio, render_speaker
from flows.ingest import ingest
from shards.ingest.config import IngestConfig
from shards.ledger import SourceLedger

pytestmark = pytest.mark.slow

CONFIG = IngestConfig.from_dict({"clip": {"min_s": 1.0, "max_s": 2.0}})


def run(folder, data_dir, row: dict):
    (folder / "manifest.yaml").write_text(yaml.safe_dump([{"uri": "silent.mp4", "tag": "interview", **row}]))
    report = ingest(folder / "manifest.yaml", data_dir, CONFIG, workers=0, progress=False)
    source, = report.sources
    return source


def test_an_audio_rejection_is_probed_again_when_the_sidecar_changes(tmp_path):
    spec = SpeakerSpec(seed=3, duration_s=2.5, with_audio=False, width=320, height=256)
    render_speaker(spec, tmp_path / "silent.mp4")
    data_dir = tmp_path / "data"
    ledger = SourceLedger(data_dir)

    first = run(tmp_path, data_dir, {})
    assert (first["outcome"], first["reason"]) == ("rejected", "no_audio")
    assert ledger.get(first["source_id"])["audio_sha256"] is None
    assert run(tmp_path, data_dir, {})["reason"] == "already_ingested"

    missing = run(tmp_path, data_dir, {"audio_uri": "speech.wav"})  # listed, but the file is not there
    assert (missing["outcome"], missing["reason"]) == ("rejected", "sidecar_unreadable")
    assert str(tmp_path / "speech.wav") in missing["detail"]

    render_sidecar_audio(spec, tmp_path / "speech.wav", rate=16000, channels=1)
    fixed = run(tmp_path, data_dir, {"audio_uri": "speech.wav"})
    assert fixed["outcome"] == "ingested" and fixed["clips"] >= 1 and fixed["source_id"] == first["source_id"]
    record = ledger.get(fixed["source_id"])
    assert record["status"] == "done"
    assert record["audio_sha256"] == hashlib.sha256((tmp_path / "speech.wav").read_bytes()).hexdigest()
    assert run(tmp_path, data_dir, {"audio_uri": "speech.wav"})["reason"] == "already_ingested"


def test_ledger_records_without_a_sidecar_hash_still_read(tmp_path):
    ledger = SourceLedger(tmp_path)
    ledger.write({"source_id": "a" * 64, "status": "rejected", "reject_reason": "no_audio"})  # written before audio_sha256
    ledger.write({"source_id": "b" * 64, "status": "done", "reject_reason": None})
    ledger.write({"source_id": "c" * 64, "status": "rejected", "reject_reason": "too_small"})
    assert ledger.is_final("a" * 64) and not ledger.is_final("a" * 64, "f" * 64, True)
    assert not ledger.is_final("a" * 64, None, True)  # a sidecar listed now, even an unreadable one
    assert ledger.is_final("b" * 64, "f" * 64, True)  # done: its clips exist, keyed by the video
    assert ledger.is_final("c" * 64, "f" * 64, True)  # a video fault no sidecar changes
