"""A writer killed at any step boundary of ingest and publish leaves a data dir the next run completes: the
same keys as a clean run, no key twice in the shards or the catalog, and `verify` finds nothing.

Each crash is real: ``FADA_CRASH_AT=<step>`` makes the real ``fada ingest`` process end with ``os._exit`` at
that boundary (`shards.crashpoints`: no cleanup runs, as with ``kill -9``); the rerun is a new process.
Publish-stage crashes start from a copy of a data dir whose ingest was killed after committing every source,
so they do not extract again.
"""

import json
import shutil

import pytest
import yaml

from filters.synthetic import SpeakerSpec, render_speaker
from shards.crashpoints import CRASH_ENV, CRASH_EXIT_CODE
from shards.integrity import verify
from shards.ledger import SourceLedger
from tests.datadir_factory import catalog_keys, fada, shard_keys

pytestmark = pytest.mark.slow

INGEST_STEPS = ["staged", "committed", "ledger_written"]  # before anything is published
PUBLISH_STEPS = ["shard_member_written", "shard_closed", "shard_before_rename", "shard_renamed",
                 "catalog_part_written", "queue_removed", "published"]
OPTIONS = ["--workers", "0", "--quiet", "--set", "clip.min_s=1.0", "--set", "clip.max_s=1.0", "--set", "shards.max_count=1"]


def ingest(manifest, data_dir, crash_at: str | None = None):
    return fada("ingest", manifest, "--out", data_dir, *OPTIONS, env={CRASH_ENV: crash_at or ""})


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sources")
    render_speaker(SpeakerSpec(seed=21, duration_s=2.2, width=320, height=256), folder / "a.mp4")
    (folder / "manifest.yaml").write_text(yaml.safe_dump([{"uri": "a.mp4", "tag": "interview"}]))
    return folder / "manifest.yaml"


@pytest.fixture(scope="module")
def clean(sources, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("clean") / "data"
    result = ingest(sources, data_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    keys = catalog_keys(data_dir)
    assert len(keys) >= 2 and len(shard_keys(data_dir)) >= 2  # at least two shards: crashes fall between them
    return keys


@pytest.fixture(scope="module")
def committed(sources, tmp_path_factory):
    """A data dir whose ingest was killed after committing every source, before publishing."""
    data_dir = tmp_path_factory.mktemp("committed") / "data"
    result = ingest(sources, data_dir, "all_committed")
    assert result.returncode == CRASH_EXIT_CODE, result.stderr[-2000:]
    assert not (data_dir / "shards").exists() and any((data_dir / "clips").iterdir())
    return data_dir


def check_recovered(data_dir, clean_keys):
    keys = shard_keys(data_dir)
    assert sorted(keys) == clean_keys and len(keys) == len(set(keys))
    assert catalog_keys(data_dir) == clean_keys  # one row per key
    assert verify(data_dir) == []
    assert [r["status"] for r in SourceLedger(data_dir).records()] == ["done"]


@pytest.mark.parametrize("step", INGEST_STEPS)
def test_a_crash_during_ingest_is_completed_by_the_rerun(sources, clean, tmp_path, step):
    data_dir = tmp_path / "data"
    crashed = ingest(sources, data_dir, step)
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr[-2000:]
    rerun = ingest(sources, data_dir)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    check_recovered(data_dir, clean)


@pytest.mark.parametrize("step", PUBLISH_STEPS)
def test_a_crash_during_publish_is_completed_by_the_rerun(sources, clean, committed, tmp_path, step):
    data_dir = tmp_path / "data"
    shutil.copytree(committed, data_dir)
    crashed = ingest(sources, data_dir, step)
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr[-2000:]
    shards = sorted((data_dir / "shards" / "v1").glob("clips-*.tar"))
    assert all(shard.with_name(shard.stem + ".lineage.json").exists() for shard in shards)  # never a shard without lineage
    rerun = ingest(sources, data_dir)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    check_recovered(data_dir, clean)
    if step in ("shard_member_written", "shard_closed", "shard_before_rename"):
        assert not list((data_dir / "shards" / "v1").glob(".clips-*.tmp"))  # the killed write's temp file is gone
    if step == "published":
        report = json.loads(next((data_dir / "runs").glob("ingest-*.json")).read_text())
        assert report["outcomes"] == {"skipped": 1}  # the rerun published nothing new
