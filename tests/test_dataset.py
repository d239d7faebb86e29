"""Shards, catalog, lineage and views on a small committed dataset (no video decoding needed)."""

import json
import tarfile

import numpy as np
import pyarrow as pa
import pytest

from filters.profiles import load_profile, profile_from_dict, with_overrides
from shards.catalog import CATALOG_COLUMNS, read_catalog, rebuild_catalog
from shards.clip_store import ClipStore
from shards.lineage import lookup
from shards.publish import ShardLimits, publish_clips
from shards.shard_writer import ShardWriter
from shards.views import ViewError, refilter, select

GOOD = {"source_prior": 0.9, "source_denied": 0.0, "iqa": 0.93, "sharpness": 100.0, "reblur_ratio": 0.15, "face_px": 250.0, "exposure_clip": 0.0, "blockiness": 0.02,
        "sync_scorer": "lip_audio_xcorr", "sync_offset": 0.0, "sync_conf": 0.8, "sync_dist": 0.2, "camera_shake": 0.03,
        "bg_motion": 0.08, "head_motion": 0.005, "pose_range_deg": 5.0, "single_face_ratio": 1.0, "face_mesh_ratio": 1.0,
        "speech_ratio": 0.5, "audio_clip_ratio": 0.0, "snr_db": 50.0}


def _commit_source(store, index, rng):
    source_id = f"{index:02d}" + "ab" * 31
    staging = store.reset_staging(source_id)
    records = []
    for clip in range(4):
        # clip 0 and 1 pass strict; 2 and 3 only lenient (image quality, sync offset and shake get worse)
        scores = {**GOOD, "iqa": [0.95, 0.9, 0.7, 0.6][clip], "sync_offset": [0.0, 1.0, 2.0, -2.0][clip], "camera_shake": [0.1, 0.3, 0.6, 1.5][clip]}
        name = f"c00000_{clip:04d}"
        (staging / f"{name}.mp4").write_bytes(rng.bytes(2000))
        (staging / f"{name}.wav").write_bytes(rng.bytes(500))
        records.append({"source_id": source_id, "chunk_index": 0, "start_s": clip * 4.0, "end_s": clip * 4.0 + 4.0, "n_frames": 100,
                        "fps": 25.0, "status": "ok", "reject_reason": None, "staged_name": name, **scores})
    records.append({"source_id": source_id, "chunk_index": 0, "start_s": 16.0, "end_s": 17.0, "n_frames": 25, "fps": 25.0,
                    "status": "rejected", "reject_reason": "too_short"})
    tag = ["interview", "news", "vlog"][index % 3]
    store.commit_source(source_id, {"source_uri": f"/videos/{index}.mp4", "source_tag": tag}, records)
    return source_id


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    store = ClipStore(tmp_path)
    sources = [_commit_source(store, i, rng) for i in range(3)]
    shards = publish_clips(tmp_path, limits=ShardLimits(max_count=4), code_version="abc123", config_hash="cfg1")
    return tmp_path, sources, shards


def test_shards_hold_every_clip_and_the_catalog_one_row_each(dataset):
    data, sources, shards = dataset
    assert [s.name for s in shards] == [f"clips-{i:06d}.tar" for i in range(4)]  # 15 samples, 4 per shard
    assert not (data / "clips").exists() or not any((data / "clips").iterdir())  # the queue is drained
    catalog = read_catalog(data)
    assert catalog.num_rows == 15 and set(CATALOG_COLUMNS) <= set(catalog.column_names)
    rows = catalog.to_pylist()
    assert sum(r["status"] == "rejected" for r in rows) == 3 and all(r["shard"] is None for r in rows if r["status"] == "rejected")
    with tarfile.open(data / rows[0]["shard"]) as tar:
        names = tar.getnames()
    assert f"{rows[0]['key']}.mp4" in names and f"{rows[0]['key']}.json" in names


def test_rebuilt_catalog_equals_the_original(dataset):
    data, _, _ = dataset
    original = read_catalog(data).sort_by("key").to_pylist()
    rebuild_catalog(data)
    assert read_catalog(data).sort_by("key").to_pylist() == original


def test_lineage_answers_both_directions(dataset):
    data, sources, _ = dataset
    shard = lookup(data, "clips-000001")
    assert shard["kind"] == "shard"
    doc = shard["lineage"]
    assert doc["n_samples"] == 4 and doc["code_version"] == "abc123" and doc["config_hash"] == "cfg1"
    assert {s["source_id"] for s in doc["sources"]} <= set(sources) and doc["sha256"] and doc["size"] > 0
    source = lookup(data, sources[1][:12])
    assert source["kind"] == "source"
    keys = sorted(k for m in source["matches"] for k in m["keys"])
    assert keys == [f"{sources[1][:16]}_{i:05d}" for i in range(5)]
    assert len({m["shard"] for m in source["matches"]}) >= 1
    by_key = lookup(data, keys[2])
    assert by_key["kind"] == "key" and by_key["matches"][0]["source_id"] == sources[1]
    with pytest.raises(LookupError):
        lookup(data, "nothing-like-this")


def test_vectorised_selection_agrees_with_profile_decide(dataset):
    data, _, _ = dataset
    table = read_catalog(data)
    kept = {}
    for name in ("strict", "lenient"):
        profile = load_profile(name)
        keep, reasons = select(profile, table)
        expected = [r["status"] == "ok" and profile.decide(r).keep for r in table.to_pylist()]
        assert keep.tolist() == expected
        kept[name] = int(keep.sum())
        assert set(reasons.filter(pa.array(~keep)).to_pylist()) <= {"too_short", "profile:image_quality", "profile:sync", "profile:background"}
    assert kept == {"strict": 6, "lenient": 12}


def test_views_are_named_immutable_and_tighter_is_a_subset(dataset):
    data, _, _ = dataset
    strict = load_profile("strict")
    view, created = refilter(data, strict, "teacher")
    assert created and view["summary"]["kept"] == sum(len(k) for k in view["shards"].values())
    before = (data / "views" / "teacher.json").read_bytes()
    again, created_again = refilter(data, strict, "teacher")
    assert not created_again and (data / "views" / "teacher.json").read_bytes() == before
    tighter = profile_from_dict(with_overrides(strict.raw, {"image_quality.iqa.min": 0.95}))
    with pytest.raises(ViewError, match="other thresholds"):
        refilter(data, tighter, "teacher")
    tight_view, _ = refilter(data, tighter, "teacher-tight")
    flat = lambda v: {k for keys in v["shards"].values() for k in keys}  # noqa: E731
    assert flat(tight_view) < flat(view)
    assert view["profile"]["dimensions"]["image_quality"]["iqa"]["min"] == strict.raw["dimensions"]["image_quality"]["iqa"]["min"] and view["catalog"]["files"]
    assert "too_short" in view["summary"]["per_reason"] and view["summary"]["per_source_tag"]


def test_interrupted_publish_leaves_nothing_visible_and_a_rerun_completes(tmp_path):
    rng = np.random.default_rng(1)
    store = ClipStore(tmp_path)
    sources = [_commit_source(store, i, rng) for i in range(2)]
    victim = store.source_dir(sources[1]) / f"{sources[1][:16]}_00002.mp4"
    payload = victim.read_bytes()
    victim.unlink()  # a member goes missing mid-run: the writer fails on it
    with pytest.raises(FileNotFoundError):
        publish_clips(tmp_path, limits=ShardLimits(max_count=3))
    folder = tmp_path / "shards" / "v1"
    visible = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary shard left
    for name in visible:  # what is visible is complete: every shard has its lineage
        assert name.endswith(".lineage.json") or (folder / name.replace(".tar", ".lineage.json")).exists()
    victim.write_bytes(payload)
    publish_clips(tmp_path, limits=ShardLimits(max_count=3))
    keys = [k for p in sorted(folder.glob("*.lineage.json")) for k in json.loads(p.read_text())["keys"]]
    assert len(keys) == len(set(keys)) == 10  # each clip exactly once
    assert sorted(read_catalog(tmp_path).column("key").to_pylist()) == sorted(keys)


def test_unsafe_keys_are_refused(tmp_path):
    with ShardWriter(str(tmp_path)) as writer:
        for bad in ("../evil", "/abs", "a.b", "x/y", ""):
            with pytest.raises(ValueError, match="unsafe sample key"):
                writer.add(bad, {"json": b"{}"})


def test_sparse_view_is_resharded_with_parents_and_identical_payloads(dataset):
    data, _, _ = dataset
    strict = load_profile("strict")
    plain, _ = refilter(data, strict, "plain")
    dense, _ = refilter(data, strict, "dense", reshard_below=0.75)
    flat = lambda v: sorted(k for keys in v["shards"].values() for k in keys)  # noqa: E731
    assert flat(dense) == flat(plain)
    derived = [s for s in dense["shards"] if s.startswith("shards/view-dense/")]
    assert derived
    lineage = lookup(data, derived[0])["lineage"]
    assert lineage["parents"] and all(p in plain["shards"] for p in lineage["parents"])
    key = dense["shards"][derived[0]][0]
    parent = next(s for s, keys in plain["shards"].items() if key in keys)
    with tarfile.open(data / derived[0]) as new, tarfile.open(data / parent) as old:
        assert new.extractfile(f"{key}.mp4").read() == old.extractfile(f"{key}.mp4").read()
