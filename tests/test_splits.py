"""The held-out test split: deterministic, stable as the catalog grows, readable as a view, kept out of training."""

import hashlib

import numpy as np
import pyarrow as pa
import pytest

from filters.profiles import load_profile
from shards import splits
from shards.catalog import read_catalog
from shards.clip_store import ClipStore
from shards.publish import ShardLimits, publish_clips
from shards.reader import ClipWindowDataset, load_view
from shards.splits import write_test_view
from shards.views import ViewError, format_view_summary, refilter
from tests.datadir_factory import commit_scored_source

# With fraction 0.2 and seed 3 the rule holds out sources 1 and 5 of the first eight and 11 of the next
# eight (`commit_scored_source` ids are f"{i:02d}" + "ab" * 31), so growing the catalog adds a test source.
FRACTION, SEED = 0.2, 3


def catalog_of(source_ids, status: str = "ok") -> pa.Table:
    source_ids = list(source_ids)
    return pa.table({"source_id": pa.array(source_ids, pa.string()), "status": pa.array([status] * len(source_ids))})


def test_sources_without_a_usable_clip_are_never_held_out():
    usable = [f"ok{i}" for i in range(20)]
    rejected = [f"bad{i}" for i in range(200)]
    catalog = pa.concat_tables([catalog_of(usable), catalog_of(rejected, status="rejected")])
    held = splits.test_sources(catalog, fraction=0.5)
    assert held and held <= set(usable)
    assert held == splits.test_sources(catalog_of(usable), fraction=0.5)


def sha_ids(indices) -> list[str]:
    return [hashlib.sha256(str(i).encode()).hexdigest() for i in indices]


def test_split_is_deterministic_and_about_the_fraction():
    ids = sha_ids(range(400))
    held = splits.test_sources(catalog_of(ids))
    assert held == splits.test_sources(catalog_of(reversed(ids + ids[:50])))  # order and clip count do not matter
    assert 0.05 < len(held) / len(ids) < 0.15
    assert splits.test_sources(catalog_of(ids), seed=1) != held


def test_membership_never_changes_as_sources_are_added():
    ids = sha_ids(range(600))
    small = splits.test_sources(catalog_of(ids[:100]))
    grown = splits.test_sources(catalog_of(ids))
    assert small and grown & set(ids[:100]) == small and len(grown) > len(small)


def test_small_catalogs_hold_out_at_least_one_source_and_never_all():
    for seed in range(20):
        assert len(splits.test_sources(catalog_of(sha_ids(range(2))), seed=seed)) == 1
        assert len(splits.test_sources(catalog_of(sha_ids(range(3))), fraction=0.99, seed=seed)) == 2
    assert splits.test_sources(catalog_of(sha_ids(range(1)))) == set()
    assert splits.test_sources(catalog_of([None, None])) == set()
    with pytest.raises(ValueError, match="fraction"):
        splits.test_sources(catalog_of(sha_ids(range(3))), fraction=1.0)


def add_sources(data_dir, indices):
    rng = np.random.default_rng(indices[0])
    store = ClipStore(data_dir)
    for index in indices:
        commit_scored_source(store, index, rng)
    publish_clips(data_dir, limits=ShardLimits(max_count=6))


def sources_of(view, catalog) -> set[str]:
    source_of_key = dict(zip(catalog.column("key").to_pylist(), catalog.column("source_id").to_pylist()))
    return {source_of_key[key] for keys in view["shards"].values() for key in keys}


@pytest.fixture
def data_dir(tmp_path):
    add_sources(tmp_path, list(range(8)))
    return tmp_path


def test_test_view_holds_the_ok_clips_of_the_held_out_sources_and_reads_like_any_view(data_dir):
    view, created = write_test_view(data_dir, fraction=FRACTION, seed=SEED)
    catalog = read_catalog(data_dir)
    held = splits.test_sources(catalog, FRACTION, SEED)
    assert created and view["split"] == {"fraction": FRACTION, "seed": SEED, "sources": sorted(held)}
    assert [s[:2] for s in sorted(held)] == ["01", "05"]
    expected = {row["key"] for row in catalog.to_pylist() if row["source_id"] in held and row["status"] == "ok"}
    keys = {key for keys in view["shards"].values() for key in keys}
    assert keys == expected and len(keys) == 8  # 4 ok clips per source, the rejected one left out
    assert load_view(data_dir, "test")["shards"] == view["shards"]
    dataset = ClipWindowDataset(data_dir, "test")
    assert set().union(*dataset.keys_by_url.values()) == keys
    assert view["summary"]["kept"] == 8 and view["summary"]["per_reason"]["split:training_source"]["clips"] == 24
    assert "test split: fraction 0.2, seed 3, 2 source(s)" in format_view_summary(view)


def test_test_view_is_immutable(data_dir):
    write_test_view(data_dir, fraction=FRACTION, seed=SEED)
    before = (data_dir / "views" / "test.json").read_bytes()
    again, created = write_test_view(data_dir, fraction=FRACTION, seed=SEED)
    assert not created and (data_dir / "views" / "test.json").read_bytes() == before
    for other in ({"fraction": 0.3, "seed": SEED}, {"fraction": FRACTION, "seed": 4}):
        with pytest.raises(ViewError, match="another selection"):
            write_test_view(data_dir, **other)
    refilter(data_dir, load_profile("strict"), "teacher")
    with pytest.raises(ViewError, match="another selection"):
        write_test_view(data_dir, "teacher", fraction=FRACTION, seed=SEED)
    add_sources(data_dir, [8])
    with pytest.raises(ViewError, match="older catalog snapshot"):
        write_test_view(data_dir, fraction=FRACTION, seed=SEED)


def test_training_views_share_no_source_with_the_test_split(data_dir):
    test_view, _ = write_test_view(data_dir, fraction=FRACTION, seed=SEED)
    catalog = read_catalog(data_dir)
    test_set = set(test_view["split"]["sources"])
    for profile in ("strict", "lenient"):
        full, _ = refilter(data_dir, load_profile(profile), f"{profile}-all")
        train, _ = refilter(data_dir, load_profile(profile), profile, exclude_split="test")
        assert sources_of(full, catalog) & test_set  # without the exclusion the profile would keep test clips
        assert not sources_of(train, catalog) & test_set
        assert sources_of(train, catalog) == sources_of(full, catalog) - test_set
        assert train["excluded_split"]["view"] == "test" and train["summary"]["per_reason"]["split:test"]["clips"] > 0
    with pytest.raises(ViewError, match="test-split exclusion"):
        refilter(data_dir, load_profile("strict"), "strict-all", exclude_split="test")
    with pytest.raises(ViewError, match="no test split"):
        refilter(data_dir, load_profile("strict"), "other", exclude_split="missing")


def test_growth_keeps_old_test_sources_and_training_views_exclude_new_ones(data_dir):
    old, _ = write_test_view(data_dir, fraction=FRACTION, seed=SEED)
    add_sources(data_dir, list(range(8, 16)))
    grown, _ = write_test_view(data_dir, "test-grown", fraction=FRACTION, seed=SEED)
    assert set(old["split"]["sources"]) < set(grown["split"]["sources"])
    assert [s[:2] for s in grown["split"]["sources"]] == ["01", "05", "11"]
    # a training view of the grown catalog that excludes the *old* split also leaves out the new test source
    train, _ = refilter(data_dir, load_profile("lenient"), "student", exclude_split="test")
    assert not sources_of(train, read_catalog(data_dir)) & set(grown["split"]["sources"])


def test_fada_split_and_dataset_refresh_share_one_policy(tmp_path):
    """Same data, same rule: the CLI and the flow's task hold out the same sources, and both keep the split
    when the catalog grows (it was made from an older snapshot; training views still exclude new test sources)."""
    from prefect.logging import disable_run_logger

    from flows.cli import main as fada
    from flows.prefect_flows import write_test_split
    from shards.reader import load_view

    by_cli, by_flow = tmp_path / "cli", tmp_path / "flow"
    rule = ["--fraction", str(FRACTION), "--seed", str(SEED)]
    for grow in (range(8), range(8, 16)):
        for data in (by_cli, by_flow):
            add_sources(data, list(grow))
        assert fada(["split", str(by_cli), *rule]) == 0
        with disable_run_logger():
            flow_view = write_test_split.fn(str(by_flow), "test", FRACTION, SEED)
        cli_view = load_view(by_cli, "test")
        assert cli_view["split"] == flow_view["split"] and cli_view["shards"] == flow_view["shards"]
        assert [s[:2] for s in cli_view["split"]["sources"]] == ["01", "05"]  # kept after growing, not rewritten
    assert fada(["split", str(by_cli), "--fraction", "0.3", "--seed", str(SEED)]) == 2  # another rule: the name is taken


def test_no_split_until_two_sources_have_usable_clips(tmp_path):
    assert splits.ensure_test_split(tmp_path) == (None, "no_catalog")
    add_sources(tmp_path, [0])
    assert splits.ensure_test_split(tmp_path) == (None, "too_few_sources")
    add_sources(tmp_path, [1, 2])
    view, outcome = splits.ensure_test_split(tmp_path)
    assert outcome == "written" and splits.ensure_test_split(tmp_path) == (view, "kept")
