"""`fada verify` finds each kind of damage and names the file; `fada repair` rebuilds what the shards hold;
readers and writers meeting a damaged catalog part or lineage file stop with an error naming it."""

import json

import pytest

from filters.profiles import load_profile
from shards.catalog import catalog_files, read_catalog
from shards.datadir import DamagedFile
from shards.integrity import verify
from shards.lineage import lineage_path, lookup
from shards.views import refilter
from tests.datadir_factory import catalog_keys, commit_sources, fada, make_data_dir, shard_keys

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir(tmp_path):
    data_dir = make_data_dir(tmp_path / "data")
    commit_sources(data_dir, [3])  # a second ingest's part: the catalog has two parts
    from shards.publish import ShardLimits, publish_clips

    publish_clips(data_dir, limits=ShardLimits(max_count=4))
    refilter(data_dir, load_profile("lenient"), "lenient")
    assert len(catalog_files(data_dir)) == 2 and verify(data_dir) == []
    return data_dir


def kinds(data_dir) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for problem in verify(data_dir):
        found.setdefault(problem.kind, []).append(problem.path)
    return found


def test_a_clean_data_dir_verifies(data_dir):
    result = fada("verify", data_dir)
    assert result.returncode == 0 and "consistent" in result.stdout


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_a_damaged_catalog_part_is_named_and_repair_rebuilds_the_catalog(data_dir, damage):
    keys = catalog_keys(data_dir)
    part = catalog_files(data_dir)[1]
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:4] + bytes(len(data) // 3) + data[4 + len(data) // 3:])
    with pytest.raises(DamagedFile, match=f"{part}.*fada repair"):
        read_catalog(data_dir)
    refused = fada("refilter", data_dir, "--name", "again", "--profile", "strict")
    assert refused.returncode == 2 and str(part) in refused.stderr and "fada repair" in refused.stderr
    assert refused.stderr.count("\n") == 1  # one line, no traceback
    assert "damaged_catalog_part" in kinds(data_dir)
    checked = fada("verify", data_dir)
    assert checked.returncode == 1 and f"damaged_catalog_part: catalog/{part.name}" in checked.stdout
    repaired = fada("repair", data_dir)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "rebuilt the catalog" in repaired.stdout
    assert catalog_keys(data_dir) == keys and verify(data_dir) == []


def test_ingest_stops_before_any_work_on_a_truncated_part(data_dir, tmp_path):
    part = catalog_files(data_dir)[0]
    part.write_bytes(part.read_bytes()[:100])
    (tmp_path / "m.yaml").write_text("- {uri: nowhere.mp4, tag: news}\n")
    refused = fada("ingest", tmp_path / "m.yaml", "--out", data_dir, "--workers", "0", "--quiet")
    assert refused.returncode == 2 and str(part) in refused.stderr and "fada repair" in refused.stderr
    assert not (data_dir / "runs").exists()


def test_a_deleted_lineage_file_is_regenerated(data_dir):
    shard = sorted((data_dir / "shards" / "v1").glob("clips-*.tar"))[1]
    original = json.loads(lineage_path(shard).read_text())
    lineage_path(shard).unlink()
    assert kinds(data_dir) == {"missing_lineage": [str(shard.relative_to(data_dir))], "view_missing_shard": ["views/lenient.json"]}
    with pytest.raises(LookupError):
        lookup(data_dir, original["keys"][0])
    repaired = fada("repair", data_dir)
    assert repaired.returncode == 0 and f"regenerated lineage shards/v1/{lineage_path(shard).name}" in repaired.stdout
    regenerated = json.loads(lineage_path(shard).read_text())
    assert regenerated["regenerated"] is True
    for field in ("shard", "sha256", "size", "keys", "sources", "n_samples"):
        assert regenerated[field] == original[field], field
    assert lookup(data_dir, original["keys"][0])["matches"][0]["shard"] == original["shard"]


def test_a_garbled_lineage_file_is_named_and_regenerated(data_dir):
    shard = sorted((data_dir / "shards" / "v1").glob("clips-*.tar"))[0]
    lineage_path(shard).write_text('{"shard": "shards/v1/clips-0')
    answer = fada("lineage", data_dir, "anything")
    assert answer.returncode == 2 and str(lineage_path(shard)) in answer.stderr and "fada repair" in answer.stderr
    assert "damaged_lineage" in kinds(data_dir)
    assert fada("repair", data_dir).returncode == 0 and verify(data_dir) == []


def test_orphans_stale_copies_and_mismatches_are_reported(data_dir):
    shards = sorted((data_dir / "shards" / "v1").glob("clips-*.tar"))
    orphan = shards[0].with_name("clips-000099.lineage.json")
    orphan.write_text(lineage_path(shards[0]).read_text())  # lineage of a shard that never got renamed
    stale = data_dir / "shards" / "view-gone"
    stale.mkdir()
    (stale / "clips-000000.tar").write_bytes(shards[0].read_bytes())
    (stale / "clips-000000.lineage.json").write_text(lineage_path(shards[0]).read_text().replace("shards/v1/clips-000000", "shards/view-gone/clips-000000"))
    with open(shards[2], "r+b") as fh:  # flip a byte inside a member: same members, other bytes
        fh.seek(1024)
        byte = fh.read(1)
        fh.seek(1024)
        fh.write(bytes([byte[0] ^ 0xFF]))
    found = kinds(data_dir)
    assert found["orphan_lineage"] == [str(orphan.relative_to(data_dir))]
    assert found["orphan_view_shards"] == ["shards/view-gone"]
    assert found["shard_hash_mismatch"] == [str(shards[2].relative_to(data_dir))]
    repaired = fada("repair", data_dir)
    assert repaired.returncode == 1  # the changed shard cannot be rebuilt: reported, not hidden
    assert "not repaired: shard_hash_mismatch" in repaired.stdout
    assert not orphan.exists() and not stale.exists()
    assert set(kinds(data_dir)) == {"shard_hash_mismatch"}


def test_catalog_rows_lost_or_duplicated_are_found_and_rebuilt(data_dir):
    import pyarrow.parquet as pq

    keys = catalog_keys(data_dir)
    first, second = catalog_files(data_dir)
    pq.write_table(pq.read_table(first), second)  # second part replaced by a copy of the first
    found = kinds(data_dir)
    assert {"catalog_duplicate_key", "catalog_missing_key", "ledger_key_not_catalogued"} <= set(found)
    assert fada("repair", data_dir).returncode == 0
    assert catalog_keys(data_dir) == keys == sorted(shard_keys(data_dir)) and verify(data_dir) == []
