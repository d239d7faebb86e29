"""Aliases: stable names for immutable views; training resolves them once and records the view it read;
the Prefect-side policies around them (retries only for transient I/O, per-scorer histograms, artifact keys)."""

import numpy as np
import pytest

from filters.profiles import load_profile
from flows.cli import main as fada
from flows.flow_artifacts import artifact_key
from flows.retry_policy import is_user_error
from shards.clip_store import ClipStore
from shards.publish import ShardLimits, publish_clips
from shards.reader import load_view
from shards.view_aliases import default_view_name, list_aliases, read_alias, refilter_aliased, resolve_view_name, set_alias
from shards.view_plots import score_histograms
from shards.views import ViewError, refilter
from tests.datadir_factory import commit_scored_source


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    store = ClipStore(tmp_path)
    for i in range(2):
        commit_scored_source(store, i, rng)
    publish_clips(tmp_path, limits=ShardLimits(max_count=4), code_version="abc", config_hash="cfg")
    return tmp_path


def _grow(data, index):
    commit_scored_source(ClipStore(data), index, np.random.default_rng(index))
    publish_clips(data, limits=ShardLimits(max_count=4), code_version="abc", config_hash="cfg")


def test_alias_follows_the_newest_snapshot_and_old_views_stay(data):
    first, created, alias = refilter_aliased(data, load_profile("strict"), alias="strict")
    assert created and first["name"] == default_view_name(data, load_profile("strict")) and first["name"].startswith("strict-")
    assert alias["view"] == first["name"] and resolve_view_name(data, "strict") == first["name"]
    assert load_view(data, "strict")["name"] == first["name"]
    _grow(data, 2)
    second, _, alias = refilter_aliased(data, load_profile("strict"), alias="strict")
    assert second["name"] != first["name"] and second["summary"]["clips"] > first["summary"]["clips"]
    assert load_view(data, "strict")["name"] == second["name"]
    assert load_view(data, first["name"])["summary"] == first["summary"]  # the old immutable view is untouched
    assert [h["view"] for h in read_alias(data, "strict")["history"]] == [first["name"], second["name"]]
    assert list_aliases(data) == {"strict": second["name"]}


def test_a_rerun_is_a_no_op_and_custom_thresholds_get_their_own_name(data):
    view, _, _ = refilter_aliased(data, load_profile("lenient"), alias="lenient")
    again, created, alias = refilter_aliased(data, load_profile("lenient"), alias="lenient")
    assert not created and again["name"] == view["name"] and len(alias["history"]) == 1
    tighter = load_profile("lenient", {"image_quality.iqa.min": 0.9})
    assert default_view_name(data, tighter).startswith(view["name"] + "-")


def test_a_real_view_wins_and_cannot_become_an_alias(data):
    refilter(data, load_profile("strict"), "strict")
    other, _, _ = refilter_aliased(data, load_profile("lenient"))
    with pytest.raises(ViewError, match="immutable view"):
        set_alias(data, "strict", other["name"])
    assert resolve_view_name(data, "strict") == "strict"
    with pytest.raises(ViewError, match="no view"):
        set_alias(data, "lenient", "does-not-exist")


def test_training_records_the_immutable_view_behind_an_alias(data):
    from fada.train_teacher import view_lineage

    view, _, _ = refilter_aliased(data, load_profile("lenient"), alias="lenient")
    lineage = view_lineage(data, "lenient")
    assert lineage["view"] == view["name"] and lineage["view_alias"] == "lenient"
    assert "view_alias" not in view_lineage(data, view["name"])


def test_cli_refilter_without_a_name_and_with_an_alias(data, capsys):
    assert fada(["refilter", str(data), "--profile", "strict", "--alias", "strict"]) == 0
    out = capsys.readouterr().out
    name = resolve_view_name(data, "strict")
    assert name.startswith("strict-") and f"alias 'strict' → {name}" in out
    assert fada(["refilter", str(data), "--profile", "lenient", "--name", "bad.name"]) == 2


def test_user_errors_are_not_retried_but_transient_io_is():
    from fada.checkpoint import CheckpointError
    from fada.config import ConfigError
    from filters.profiles import ProfileError

    for exc in (ViewError("taken"), ProfileError("typo"), ConfigError("key"), CheckpointError("kind"),
                FileNotFoundError("catalog"), PermissionError("denied"), KeyError("x")):
        assert is_user_error(exc), exc
    for exc in (TimeoutError("slow disk"), ConnectionResetError("peer"), OSError(116, "Stale file handle"), RuntimeError("worker died")):
        assert not is_user_error(exc), exc


def test_one_histogram_per_sync_scorer_with_its_own_thresholds(data, tmp_path):
    view, _, _ = refilter_aliased(data, load_profile("strict"))
    images = score_histograms(data, view, tmp_path / "plots")
    names = {p.name for p in images}
    # the fixture's clips are all scored by lip_audio_xcorr: its sync bounds get files, syncnet's none
    assert {"sync-lip_audio_xcorr-sync_conf.png", "sync-lip_audio_xcorr-abs_sync_offset.png"} <= names
    assert not any(n.startswith("sync-syncnet") for n in names) and len(names) == len(images)
    assert "image_quality-iqa.png" in names


def test_artifact_keys_do_not_repeat_the_kind():
    assert artifact_key("student", "student") == "student"
    assert artifact_key("student", "student-v2") == "student-v2"
    assert artifact_key("teacher", "Run 01") == "teacher-run-01"
    assert artifact_key("evaluation", "evaluation") == "evaluation"
