"""A user's mistake in a manifest, a configuration or a weights file: exit code 2 and one line naming the
file and the line, row or key — never a traceback, and never after work has started."""

import pytest
import yaml

from shards.sources import ManifestError, load_manifest
from tests.datadir_factory import fada

pytestmark = pytest.mark.slow


def one_line_error(result, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("name, content, needles", [
    ("bad.csv", b"uri,tag\nok.mp4,news\ncaf\xe9.mp4,news\n", ["bad.csv", "line 3", "UTF-8"]),
    ("fields.csv", b"uri,tag\na.mp4,news\nb.mp4,news,extra\n", ["fields.csv", "line 3"]),
    ("bad.yaml", b"- uri: a.mp4\n  tag: news\n- uri: [b.mp4\n  tag: news\n", ["bad.yaml", "line", "invalid YAML"]),
    ("latin.yaml", b"- {uri: caf\xe9.mp4, tag: news}\n", ["latin.yaml", "line 1", "UTF-8"]),
    ("dict_tag.yaml", b"- {uri: a.mp4, tag: news}\n- {uri: b.mp4, tag: {a: 1}}\n", ["dict_tag.yaml", "row 2", "'tag'", "dict"]),
    ("list_uri.yaml", b"- {uri: [a.mp4], tag: news}\n", ["list_uri.yaml", "row 1", "'uri'"]),
])
def test_bad_manifests_exit_2_naming_file_and_line(tmp_path, name, content, needles):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ManifestError):
        load_manifest(tmp_path / name)
    result = fada("ingest", tmp_path / name, "--out", tmp_path / "data", "--workers", "0", "--quiet")
    one_line_error(result, *needles)
    assert not (tmp_path / "data").exists()


def test_numbers_stay_allowed_for_tags_and_licences(tmp_path):
    (tmp_path / "m.yaml").write_text(yaml.safe_dump([{"uri": "a.mp4", "tag": 2024, "license": 1.0}]))
    spec, = load_manifest(tmp_path / "m.yaml")
    assert (spec.tag, spec.license) == ("2024", "1.0")


@pytest.mark.parametrize("content, needles", [
    (b"clip:\n  min_s: [1\n", ["config.yaml", "line", "invalid YAML"]),
    (b"clip:\n  min_s: \xff\n", ["config.yaml", "line 2", "UTF-8"]),
    (b"clip:\n  no_such_key: 1\n", ["config.yaml", "no_such_key"]),
])
def test_bad_ingest_configs_exit_2(tmp_path, content, needles):
    (tmp_path / "config.yaml").write_bytes(content)
    (tmp_path / "m.yaml").write_text("- {uri: a.mp4, tag: news}\n")
    result = fada("ingest", tmp_path / "m.yaml", "--out", tmp_path / "data", "--config", tmp_path / "config.yaml", "--quiet")
    one_line_error(result, *needles)


@pytest.mark.parametrize("key", ["iqa_weights", "syncnet_weights"])
def test_unreadable_scorer_weights_are_refused_once_before_any_work(tmp_path, key):
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"\x80\x02 not a checkpoint")
    (tmp_path / "m.yaml").write_text("- {uri: a.mp4, tag: news}\n- {uri: b.mp4, tag: news}\n")
    result = fada("ingest", tmp_path / "m.yaml", "--out", tmp_path / "data", "--set", f"scoring.{key}={weights}", "--quiet")
    one_line_error(result, str(weights), f"scoring.{key}")
    assert not (tmp_path / "data").exists()  # no ledger record, no source marked failed


def test_training_config_errors_exit_2(tmp_path):
    (tmp_path / "teacher.yaml").write_bytes(b"train:\n  lr: [0.1\n")
    one_line_error(fada("train-teacher", "--data", tmp_path, "--config", tmp_path / "teacher.yaml", "--steps", "1", "--out", tmp_path / "o"),
                   "teacher.yaml", "line", "invalid YAML")
    (tmp_path / "sections.yaml").write_text("trian:\n  lr: 0.1\n")
    one_line_error(fada("train-teacher", "--data", tmp_path, "--config", tmp_path / "sections.yaml", "--steps", "1", "--out", tmp_path / "o"),
                   "sections.yaml", "trian")
    one_line_error(fada("distill", "--data", tmp_path, "--teacher", tmp_path / "none", "--set", "novalue", "--steps", "1", "--out", tmp_path / "o"),
                   "--set")
    one_line_error(fada("distill", "--data", tmp_path, "--teacher", tmp_path / "none", "--steps", "1", "--out", tmp_path / "o"),
                   str(tmp_path / "none"))
