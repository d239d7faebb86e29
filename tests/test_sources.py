import csv

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from shards.ledger import SourceLedger
from shards.sources import ManifestError, load_manifest, source_sha256

ROWS = [
    {"uri": "videos/a.mp4", "tag": "news"},
    {"uri": "/abs/b.mp4", "tag": "vlog", "audio_uri": "b.wav", "license": "cc-by"},
    {"uri": "s3://bucket/c.mp4", "tag": "interview"},
]


def _check(specs, base):
    assert [s.tag for s in specs] == ["news", "vlog", "interview"]
    assert specs[0].uri == str((base / "videos/a.mp4").resolve())  # relative to the manifest's folder
    assert specs[1].uri == "/abs/b.mp4" and specs[1].audio_uri == str((base / "b.wav").resolve())
    assert specs[1].license == "cc-by" and specs[0].license is None and specs[0].audio_uri is None
    assert specs[2].uri == "s3://bucket/c.mp4"  # URLs untouched


def test_yaml_csv_parquet_manifests_agree(tmp_path):
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"sources": ROWS}))
    _check(load_manifest(tmp_path / "m.yaml"), tmp_path)
    with open(tmp_path / "m.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["uri", "tag", "audio_uri", "license"])
        writer.writeheader()
        writer.writerows(ROWS)
    _check(load_manifest(tmp_path / "m.csv"), tmp_path)
    pq.write_table(pa.Table.from_pylist([{**{"audio_uri": None, "license": None}, **r} for r in ROWS]), tmp_path / "m.parquet")
    _check(load_manifest(tmp_path / "m.parquet"), tmp_path)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"uri": "a.mp4"}], "missing required column 'tag'"),
        ([{"uri": "a.mp4", "tag": "x", "colour": "red"}], "unknown column"),
        (["just-a-string"], "expected a mapping"),
        ({"not": "a list"}, "expected a list"),
    ],
)
def test_bad_manifests_name_the_problem(tmp_path, rows, message):
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(rows))
    with pytest.raises(ManifestError, match=message):
        load_manifest(tmp_path / "m.yaml")


def test_manifest_yaml_is_loaded_safely(tmp_path):
    (tmp_path / "m.yaml").write_text("- !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(Exception) as info:
        load_manifest(tmp_path / "m.yaml")
    assert "python/object" in str(info.value) or "constructor" in str(info.value)


def test_source_identity_is_content_hash(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"same bytes")
    (tmp_path / "renamed.mp4").write_bytes(b"same bytes")
    (tmp_path / "other.mp4").write_bytes(b"other bytes")
    assert source_sha256(str(tmp_path / "a.mp4")) == source_sha256(str(tmp_path / "renamed.mp4"))
    assert source_sha256(str(tmp_path / "a.mp4")) != source_sha256(str(tmp_path / "other.mp4"))
    assert source_sha256("file://" + str(tmp_path / "a.mp4")) == source_sha256(str(tmp_path / "a.mp4"))


def test_ledger_final_statuses_and_aliases(tmp_path):
    ledger = SourceLedger(tmp_path)
    assert not ledger.is_final("abc")
    ledger.write({"source_id": "abc", "uri": "/a.mp4", "status": "failed"})
    assert not ledger.is_final("abc")  # failed sources are retried
    ledger.write({"source_id": "abc", "uri": "/a.mp4", "status": "done"})
    assert ledger.is_final("abc")
    assert ledger.add_alias("abc", "/copy.mp4") and not ledger.add_alias("abc", "/copy.mp4")
    assert ledger.get("abc")["aliases"] == ["/copy.mp4"]
    assert not list(ledger.root.glob(".*"))  # no temporary files left behind
