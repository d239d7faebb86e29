"""The streaming re-filter, the versioned catalog read and the dry run, against straightforward references.

A random catalog of a few thousand rows (two ingest parts, missing and NaN scores, both sync scorers and
rows with none, rejected rows) is re-filtered with every shipped profile and a custom one; the view must
equal a reference computed row by row with ``Profile.decide`` and plain Python.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pytest

from filters.profiles import PROFILE_DIR, load_profile
from flows.cli import main as fada
from shards.catalog import CATALOG_SCHEMA, append_column_part, append_part, catalog_files, iter_catalog, read_catalog
from shards.splits import test_sources, write_test_view
from shards.views import KeysByShard, ViewError, catalog_snapshot, refilter, scan_selection, snapshot_files, write_view

PROFILES = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def random_rows(rng: np.random.Generator, first: int, n: int) -> pa.Table:
    ok = rng.random(n) > 0.1
    scorer = rng.choice(np.array(["lip_audio_xcorr", "syncnet", None], dtype=object), n, p=[0.6, 0.3, 0.1])

    def score(values):  # ~3 % missing, ~1 % NaN
        values = values.astype(float)
        values[rng.random(n) < 0.01] = np.nan
        return pa.array(values, pa.float32(), mask=rng.random(n) < 0.03)

    columns = {
        "key": [f"k{first + i:07d}" for i in range(n)],
        "shard": [f"shards/v1/clips-{(first + i) // 50:06d}.tar" if o else None for i, o in enumerate(ok)],
        "source_id": [f"{(first + i) // 20:064x}" for i in range(n)],
        "source_tag": rng.choice(np.array(["interview", "news", "vlog", None], dtype=object), n),
        "n_frames": rng.integers(25, 250, n).astype(np.int32), "fps": np.full(n, 25.0, np.float32),
        "status": np.where(ok, "ok", "rejected"), "reject_reason": np.where(ok, None, rng.choice(["no_face", "too_short"], n)),
        "source_prior": score(rng.choice([0.9, 0.85, 0.7, 0.5, 0.4], n)), "source_denied": score(rng.random(n) < 0.02),
        "iqa": score(rng.beta(8, 2, n)), "sharpness": score(rng.normal(60, 25, n)), "reblur_ratio": score(rng.beta(2, 10, n)), "face_px": score(rng.normal(220, 60, n)), "exposure_clip": score(rng.exponential(0.01, n)),
        "blockiness": score(rng.exponential(0.15, n)), "sync_offset": score(np.round(rng.normal(0, 2, n))),
        "sync_conf": score(np.where(scorer == "syncnet", rng.normal(5, 2, n), rng.normal(0.6, 0.15, n))),
        "sync_dist": score(rng.uniform(0.1, 0.6, n)), "sync_scorer": pa.array(scorer, pa.string()),
        "camera_shake": score(rng.exponential(0.3, n)), "bg_motion": score(rng.exponential(0.3, n)),
        "head_motion": score(rng.lognormal(np.log(0.006), 0.6, n)), "pose_range_deg": score(rng.gamma(3, 4, n)),
        "single_face_ratio": score(np.clip(rng.normal(0.97, 0.05, n), 0, 1)), "face_mesh_ratio": score(np.clip(rng.normal(0.98, 0.04, n), 0, 1)),
        "speech_ratio": score(rng.beta(5, 3, n)), "audio_clip_ratio": score(rng.exponential(0.001, n)), "snr_db": score(rng.normal(30, 10, n)),
    }
    arrays = {name: pa.array(columns[name], CATALOG_SCHEMA.field(name).type) if name in columns else pa.nulls(n, CATALOG_SCHEMA.field(name).type)
              for name in CATALOG_SCHEMA.names}
    return pa.table(arrays, schema=CATALOG_SCHEMA)


@pytest.fixture
def catalog(tmp_path):
    rng = np.random.default_rng(7)
    append_part(tmp_path, random_rows(rng, 0, 1800))
    append_part(tmp_path, random_rows(rng, 1800, 1400))
    return tmp_path


def reference(rows: list[dict], profile, held: set[str] = frozenset(), split: str = "") -> dict:
    """Keys per shard and the summary, row by row with ``Profile.decide``."""
    shards, per_tag, per_reason, kept_hours = defaultdict(list), {}, {}, 0.0
    for row in rows:
        clean = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        decision = profile.decide(clean)
        hours = row["n_frames"] / (row["fps"] * 3600)
        if row["status"] != "ok":
            keep, reason = False, row["reject_reason"]
        elif not decision.keep:
            keep, reason = False, f"profile:{decision.failed_dimensions[0]}"
        elif row["source_id"] in held:
            keep, reason = False, f"split:{split}"
        else:
            keep, reason = True, None
        tag = per_tag.setdefault(row["source_tag"] or "(none)", {"kept": 0, "kept_hours": 0.0, "rejected": 0})
        if keep:
            shards[row["shard"]].append(row["key"])
            tag["kept"] += 1
            tag["kept_hours"] += hours
            kept_hours += hours
        else:
            tag["rejected"] += 1
            entry = per_reason.setdefault(str(reason), {"clips": 0, "hours": 0.0})
            entry["clips"] += 1
            entry["hours"] += hours
    return {"shards": {s: sorted(k) for s, k in sorted(shards.items())}, "summary": {
        "clips": len(rows), "kept": sum(len(k) for k in shards.values()), "kept_hours": kept_hours,
        "per_source_tag": per_tag, "per_reason": per_reason}}


def assert_same_summary(summary: dict, expected: dict) -> None:
    """Equal counts; hours equal up to float summation order."""
    assert summary.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, dict):
            assert_same_summary(summary[key], value)
        else:
            assert summary[key] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), key


@pytest.mark.parametrize("profile_name", [*PROFILES, "custom"])
def test_refilter_equals_a_row_by_row_reference(catalog, profile_name):
    overrides = {"image_quality.iqa.min": 0.7, "sync.syncnet.sync_conf.min": 4.0} if profile_name == "custom" else {}
    profile = load_profile("lenient" if profile_name == "custom" else profile_name, overrides)
    expected = reference(read_catalog(catalog).to_pylist(), profile)
    view, created = refilter(catalog, profile, f"v-{profile_name}")
    assert created and 0 < view["summary"]["kept"] < view["summary"]["clips"]
    written = json.loads((catalog / "views" / f"v-{profile_name}.json").read_text())  # the streamed JSON parses
    assert written["shards"] == expected["shards"] and dict(view["shards"].items()) == expected["shards"]
    assert_same_summary(view["summary"], expected["summary"])
    assert_same_summary(written["summary"], expected["summary"])
    assert written["catalog"] == catalog_snapshot(catalog) and written["profile"]["name"] == profile.name
    again, created = refilter(catalog, profile, f"v-{profile_name}")  # identical → no-op, from the file
    assert not created and again["shards"] == expected["shards"]
    # many small batches give the same selection as one
    batched = scan_selection(catalog, profile, catalog_files(catalog), batch_rows=97)
    assert dict(KeysByShard(batched["kept"]).items()) == expected["shards"]
    assert_same_summary(batched["summary"], expected["summary"])


def test_refilter_without_a_test_split_equals_the_reference(catalog):
    split, _ = write_test_view(catalog, "test", fraction=0.2)
    table = read_catalog(catalog)
    held = set(split["split"]["sources"]) | test_sources(table, 0.2, 0)
    profile = load_profile("lenient")
    view, _ = refilter(catalog, profile, "train", exclude_split="test")
    expected = reference(table.to_pylist(), profile, held, "test")
    assert view["summary"]["per_reason"]["split:test"]["clips"] > 0
    assert dict(view["shards"].items()) == expected["shards"]
    assert_same_summary(view["summary"], expected["summary"])


def test_keys_needing_json_escapes_are_written_correctly(tmp_path):
    kept = pa.table({"shard": ["s/a.tar", "s/a.tar", "s/b.tar"], "key": ['q"uote', "back\\slash", "plain"]})
    write_view(tmp_path / "v.json", {"name": "v", "shards": KeysByShard(kept)})
    assert json.loads((tmp_path / "v.json").read_text())["shards"] == {"s/a.tar": ['q"uote', "back\\slash"], "s/b.tar": ["plain"]}
    write_view(tmp_path / "w.json", {"name": "w", "shards": KeysByShard(kept.slice(2))})
    assert json.loads((tmp_path / "w.json").read_text()) == {"name": "w", "shards": {"s/b.tar": ["plain"]}}


def rows(table: pa.Table) -> list[dict]:
    """Rows with NaN spelled "nan", so that equal tables compare equal."""
    return [{k: "nan" if isinstance(v, float) and np.isnan(v) else v for k, v in row.items()} for row in table.to_pylist()]


def _sync_part(table: pa.Table, conf: float) -> pa.Table:
    return pa.table({"key": table.column("key"), "sync_conf": pa.array(np.full(table.num_rows, conf), pa.float32()),
                     "sync_offset": pa.array(np.zeros(table.num_rows), pa.float32())})


def test_column_parts_newest_value_per_key_and_snapshots(catalog):
    before = read_catalog(catalog)
    view, _ = refilter(catalog, load_profile("lenient"), "before")
    old_view_text = (catalog / "views" / "before.json").read_text()
    keys = before.column("key")
    first = pa.table({"key": keys.take(pa.array(range(0, 3000, 2)))})  # every second key
    second = pa.table({"key": keys.take(pa.array(range(0, 3000, 3)))})  # every third key
    append_column_part(catalog, _sync_part(first, 0.11), "sync", {"scorer_version": "1", "run_id": "a"})
    append_column_part(catalog, _sync_part(second, 0.22).select(["key", "sync_conf"]), "sync", {"scorer_version": "2", "run_id": "b"})
    # a later ingest part: its keys are in no column part and keep their own values
    append_part(catalog, random_rows(np.random.default_rng(3), 3200, 300))
    after = read_catalog(catalog)
    assert after.num_rows == 3500 and after.column("key").to_pylist() == keys.to_pylist() + [f"k{i:07d}" for i in range(3200, 3500)]
    old, new = rows(before), rows(after)
    for index, (was, now) in enumerate(zip(old, new)):
        rescored = index < 3000  # keys 3000.. are in neither column part
        conf = 0.22 if rescored and index % 3 == 0 else 0.11 if rescored and index % 2 == 0 else was["sync_conf"]
        offset = 0.0 if rescored and index % 2 == 0 else was["sync_offset"]
        assert now["sync_conf"] == (pytest.approx(conf) if isinstance(conf, float) else conf) and now["sync_offset"] == offset
        assert {k: v for k, v in now.items() if k not in ("sync_conf", "sync_offset")} == {k: v for k, v in was.items() if k not in ("sync_conf", "sync_offset")}
    assert rows(pa.concat_tables(iter_catalog(catalog, ["key", "sync_conf"], batch_rows=333))) == rows(after.select(["key", "sync_conf"]))
    assert rows(read_catalog(catalog, ["iqa", "key"])) == rows(after.select(["iqa", "key"]))
    # the old view keeps its snapshot: same file, and its parts still read as they were
    assert (catalog / "views" / "before.json").read_text() == old_view_text
    assert rows(read_catalog(catalog, files=snapshot_files(catalog, view["catalog"]))) == old
    with pytest.raises(ViewError, match="older catalog snapshot"):
        refilter(catalog, load_profile("lenient"), "before")
    # a new view sees the rescored values: sync_conf 0.11 / 0.22 < lenient's 0.4 for lip_audio_xcorr rows
    new, _ = refilter(catalog, load_profile("lenient"), "after")
    assert new["summary"]["per_reason"]["profile:sync"]["clips"] > view["summary"]["per_reason"]["profile:sync"]["clips"]
    expected = reference(after.to_pylist(), load_profile("lenient"))
    assert dict(new["shards"].items()) == expected["shards"]


def test_dry_run_prints_counts_writes_plots_and_no_view(catalog, capsys):
    plots = catalog / "plots"
    code = fada(["refilter", str(catalog), "--profile", "strict", "--name", "try", "--dry-run", "--plots", str(plots)])
    out = capsys.readouterr().out
    assert code == 0 and not (catalog / "views").exists()
    expected = reference(read_catalog(catalog).to_pylist(), load_profile("strict"))
    assert f"would keep {expected['summary']['kept']} of 3200 clips" in out
    for dimension in ("source", "image_quality", "sync", "background", "movement", "face_audio"):
        assert f"  {dimension:<22}" in out
    for reason, entry in expected["summary"]["per_reason"].items():
        assert f"  {reason:<22}{entry['clips']:>8}" in out
    for tag, entry in expected["summary"]["per_source_tag"].items():
        assert f"  {tag:<22}{entry['kept']:>8}" in out
    pngs = sorted(p.name for p in plots.glob("*.png"))
    assert "image_quality-iqa.png" in pngs and str(plots) in out
    assert {"sync-lip_audio_xcorr-abs_sync_offset.png", "sync-syncnet-sync_conf.png"} <= set(pngs)  # one per scorer
    # per dimension: status-ok clips failing that dimension on its own
    table = read_catalog(catalog).to_pylist()
    profile = load_profile("strict")
    iqa_failed = sum(1 for r in table if r["status"] == "ok" and "image_quality" in profile.decide(
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}).failed_dimensions)
    ok = sum(1 for r in table if r["status"] == "ok")
    assert f"  {'image_quality':<22}{ok - iqa_failed:>8}{iqa_failed:>10}" in out


def test_snapshot_remembers_part_digests_and_rehashes_a_changed_part(catalog):
    import hashlib

    first = catalog_snapshot(catalog)
    part = catalog_files(catalog)[0]
    assert first["files"][0]["sha256"] == hashlib.sha256(part.read_bytes()).hexdigest()
    assert catalog_snapshot(catalog) == first  # from the remembered digests
    part.write_bytes(part.read_bytes() + b"tampered")
    changed = catalog_snapshot(catalog)
    assert changed["files"][0]["sha256"] == hashlib.sha256(part.read_bytes()).hexdigest() != first["files"][0]["sha256"]
    assert changed["digest"] != first["digest"]


def test_float32_scores_at_and_next_to_the_bounds_are_judged_as_by_profile_decide(tmp_path):
    """Bounds are compared in the stored float32 precision: values at a bound and one float32 step either
    side must be kept or rejected exactly as ``Profile.decide`` (float64) does."""
    # 0.7 rounds down in float32, 0.3 rounds up: a plain float32 comparison would judge the stored bound value wrongly
    profile = load_profile("strict", {"image_quality.iqa.min": 0.7, "image_quality.blockiness.max": 0.3, "face_audio.snr_db.min": 20})
    base = random_rows(np.random.default_rng(1), 0, 1)
    row = {**base.to_pylist()[0], "status": "ok", "shard": "s.tar", "source_prior": 0.9, "source_denied": 0.0, "face_px": 300.0,
           "exposure_clip": 0.0, "sync_scorer": "lip_audio_xcorr", "sync_offset": 0.0, "sync_conf": 0.9, "camera_shake": 0.1,
           "bg_motion": 0.1, "head_motion": 0.005, "pose_range_deg": 5.0, "single_face_ratio": 1.0, "face_mesh_ratio": 1.0,
           "speech_ratio": 0.5, "audio_clip_ratio": 0.0, "snr_db": 30.0, "iqa": 0.9, "blockiness": 0.1}
    rows = []
    for column, bound in (("iqa", 0.7), ("blockiness", 0.3), ("snr_db", 20.0)):
        exact = np.float32(bound)
        for value in (np.nextafter(exact, np.float32(-1)), exact, np.nextafter(exact, np.float32(2e9))):
            rows.append({**row, "key": f"k{len(rows):03d}", column: float(value)})
    table = pa.Table.from_pylist(rows, schema=CATALOG_SCHEMA)
    append_part(tmp_path, table)
    expected = reference(read_catalog(tmp_path).to_pylist(), profile)
    view, _ = refilter(tmp_path, profile, "edges")
    assert dict(view["shards"].items()) == expected["shards"] and 0 < view["summary"]["kept"] < len(rows)
