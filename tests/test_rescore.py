"""`fada rescore`: one scorer's columns recomputed from the shards, appended as a column part.

Two generated speakers are ingested once; the source videos are then deleted, so a rescore that opened them
would fail. Rescoring the source prior with other priors (``--set scoring.source_priors=…``) gives values
that differ from ingest's by construction, and the sync scorer rescored from the stored crops must agree
with ingest's offsets.
"""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
import yaml

from filters.profiles import load_profile
from filters.synthetic import SpeakerSpec, render_speaker
from flows.cli import main as fada
from flows.ingest import ingest
from shards.ingest.config import IngestConfig
from shards.catalog import catalog_files, column_part_info, read_catalog
from shards.tar_members import SkippedSampleWarning
from shards.rescore import RescoreError, rescore
from shards.views import refilter, snapshot_files

pytestmark = pytest.mark.slow

CONFIG = IngestConfig.from_dict({"clip": {"min_s": 1.0, "max_s": 3.0}, "chunk_s": 60.0})


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    sources = tmp_path_factory.mktemp("sources")
    rows = []
    for seed in (1, 2):
        render_speaker(SpeakerSpec(seed=seed, duration_s=3.0, width=384, height=288), sources / f"s{seed}.mp4")
        rows.append({"uri": f"s{seed}.mp4", "tag": "interview"})
    (sources / "manifest.yaml").write_text(yaml.safe_dump(rows))
    data = tmp_path_factory.mktemp("data")
    ingest(sources / "manifest.yaml", data, CONFIG, workers=0, progress=False)
    shutil.rmtree(sources)  # rescoring must read the shards only
    return data


@pytest.fixture
def data(ingested, tmp_path):
    return shutil.copytree(ingested, tmp_path / "data")


def test_rescore_appends_a_part_the_catalog_reads_and_old_views_keep_their_snapshot(data, capsys):
    before = read_catalog(data)
    ok = before.filter(before.column("status").to_numpy(zero_copy_only=False) == "ok")
    assert ok.num_rows >= 2 and ok.column("source_prior").to_pylist() == [pytest.approx(0.9)] * ok.num_rows
    old_view, _ = refilter(data, load_profile("lenient"), "before")
    old_view_text = (data / "views" / "before.json").read_text()
    assert old_view["summary"]["kept"] > 0

    code = fada(["rescore", str(data), "--scorer", "source_prior", "--set", "scoring.source_priors={priors: {interview: 0.3}}"])
    out = capsys.readouterr().out
    assert code == 0 and f"rescored {ok.num_rows} clip(s) with source_prior" in out
    part = catalog_files(data)[-1]
    assert part.name.endswith("-rescore-source_prior.parquet")
    assert pq.read_schema(part).names == ["key", "source_prior", "source_denied"]  # key + that scorer's columns only
    info = column_part_info(part)
    assert info["scorer"] == "source_prior" and info["scorer_version"] and info["columns"] == ["source_prior", "source_denied"]
    lineage = json.loads((data / "lineage" / f"rescore-{info['run_id']}.json").read_text())
    assert lineage["part"] == part.name and lineage["clips"] == ok.num_rows and lineage["scorer"] == "source_prior"
    assert lineage["scoring_config"]["source_priors"] == {"priors": {"interview": 0.3}} and not lineage["skipped"]["keys"]

    after = read_catalog(data)
    new = {r["key"]: r for r in after.to_pylist()}
    for row in before.to_pylist():  # rescored keys get the new prior; everything else is untouched
        expected = {**row, "source_prior": pytest.approx(0.3)} if row["status"] == "ok" else row
        assert new[row["key"]] == expected
    assert (data / "views" / "before.json").read_text() == old_view_text
    assert read_catalog(data, files=snapshot_files(data, old_view["catalog"])).to_pylist() == before.to_pylist()
    new_view, _ = refilter(data, load_profile("lenient"), "after")  # lenient needs source_prior >= 0.5
    assert new_view["summary"]["kept"] == 0 and new_view["summary"]["per_reason"]["profile:source"]["clips"] == ok.num_rows


def test_rescored_sync_agrees_with_ingest_and_unreadable_shards_keep_old_values(data):
    before = {r["key"]: r for r in read_catalog(data).to_pylist() if r["status"] == "ok"}
    lost_shard = sorted({r["shard"] for r in before.values()})[-1]
    lost = {k for k, r in before.items() if r["shard"] == lost_shard}
    (data / lost_shard).unlink()
    with pytest.warns(SkippedSampleWarning, match="unreadable_tar"):
        record = rescore(data, "sync", CONFIG.scoring)
    assert record["scorer"] == "lip_audio_xcorr" and record["columns"] == ["sync_offset", "sync_conf", "sync_dist", "sync_scorer"]
    assert set(record["skipped"]["keys"]) == lost and record["skipped"]["reasons"].get("unreadable_tar") == 1
    part = pq.read_table(data / "catalog" / record["part"])
    assert set(part.column("key").to_pylist()) == set(before) - lost
    after = {r["key"]: r for r in read_catalog(data).to_pylist()}
    for key, row in before.items():
        if key in lost:
            assert after[key] == row
        else:  # decoded from the stored H.264 crops instead of the crops in memory: the same offset
            assert after[key]["sync_offset"] == row["sync_offset"] and after[key]["sync_scorer"] == "lip_audio_xcorr"
            assert after[key]["sync_conf"] == pytest.approx(row["sync_conf"], abs=0.1)


def test_unknown_scorer_is_a_user_error(data, capsys):
    assert fada(["rescore", str(data), "--scorer", "nonsense"]) == 2
    assert "unknown scorer 'nonsense'" in capsys.readouterr().err
    with pytest.raises(RescoreError, match="builds no scorer 'iqa_learned'"):
        rescore(data, "iqa_learned")
