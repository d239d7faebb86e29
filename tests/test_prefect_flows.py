"""The flows against a real Prefect server started here on 127.0.0.1, with a real process worker:
deploy, trigger through the API with parameters as the UI sends them, wait, check views and artifacts."""

import asyncio

import numpy as np
import pytest

from flows.flow_artifacts import asset_key
from shards.clip_store import ClipStore
from shards.publish import ShardLimits, publish_clips
from tests.prefect_server import REPO, deploy, running_prefect
from tests.prefect_server import artifact_keys as _artifact_keys
from tests.prefect_server import asset_events as _asset_events
from tests.prefect_server import run_and_wait as _run_and_wait
from tests.datadir_factory import commit_scored_source

pytestmark = pytest.mark.slow
POOL = "test-cpu-pool"
TRAINING_FLOWS = {"train_teacher_flow": "train-teacher", "distill_student_flow": "distill-student",
                  "generate_flow": "generate", "evaluate_flow": "evaluate"}


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    with running_prefect(tmp_path_factory.mktemp("prefect-home"), pools=[POOL]) as (api, _):
        yield api


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    store = ClipStore(data)
    for i in range(3):
        commit_scored_source(store, i, np.random.default_rng(i))
    publish_clips(data, limits=ShardLimits(max_count=4))
    return data


def _deploy(entrypoint: str, name: str) -> str:
    return deploy(entrypoint, name, POOL)


def test_refilter_deployment_runs_from_the_api_and_publishes_artifacts(prefect_server, data_dir):
    _deploy("flows/prefect_flows.py:refilter_flow", "refilter")
    # Exactly what the UI form sends: JSON values, the enum as its string.
    parameters = {"data_dir": str(data_dir), "name": "ui-strict", "profile": "strict", "overrides": {"image_quality.iqa.min": 0.9}}
    run = asyncio.run(_run_and_wait("refilter/refilter", parameters))
    assert run.state.is_completed(), run.state
    view = (data_dir / "views" / "ui-strict.json").read_text()
    assert '"min": 0.9' in view
    assert {"view-ui-strict", "view-ui-strict-histograms"} <= asyncio.run(_artifact_keys(run.id))
    assert list((data_dir / "views" / "ui-strict.plots").glob("*.png"))


def test_refilter_dry_run_from_the_form_writes_no_view(prefect_server, data_dir):
    _deploy("flows/prefect_flows.py:refilter_flow", "refilter")
    parameters = {"data_dir": str(data_dir), "name": "try-lenient", "profile": "lenient", "dry_run": True}
    run = asyncio.run(_run_and_wait("refilter/refilter", parameters))
    assert run.state.is_completed(), run.state
    assert not (data_dir / "views" / "try-lenient.json").exists()
    assert {"dry-run-try-lenient", "dry-run-try-lenient-histograms"} <= asyncio.run(_artifact_keys(run.id))
    assert list((data_dir / "dry-runs" / "try-lenient").glob("*.png"))


def test_deployment_parameter_schema_is_what_the_ui_needs(prefect_server):
    from prefect import get_client

    _deploy("flows/prefect_flows.py:refilter_flow", "refilter")
    _deploy("flows/prefect_flows.py:dataset_refresh_flow", "dataset-refresh")

    async def schemas():
        async with get_client() as client:
            return {name: (await client.read_deployment_by_name(name)).parameter_openapi_schema for name in ("refilter/refilter", "dataset-refresh/dataset-refresh")}

    refilter_schema, refresh_schema = asyncio.run(schemas()).values()
    assert set(refilter_schema["required"]) == {"data_dir"}  # a run with the form's defaults names the view by digest
    props = refilter_schema["properties"]
    assert props["data_dir"]["type"] == "string" and props["profile"]["default"] == "strict"
    assert {"type": "string"} in props["profile_file"]["anyOf"] and {"type": "string"} in props["alias"]["anyOf"]
    enum = refilter_schema["definitions"]["ProfileName"]["enum"]
    assert enum == ["strict", "lenient"]
    assert set(refresh_schema["required"]) == {"manifest", "data_dir"}
    assert refresh_schema["properties"]["workers"]["default"] is None


def test_dataset_refresh_twice_adds_nothing_the_second_time_and_records_a_corrupt_source(prefect_server, tmp_path):
    import json

    import yaml

    from filters.synthetic import SpeakerSpec, render_speaker

    for seed in (1, 2):
        render_speaker(SpeakerSpec(seed=seed, duration_s=2.5, width=384, height=288), tmp_path / f"speaker{seed}.mp4")
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00not a video" * 1000)
    rows = [{"uri": "speaker1.mp4", "tag": "interview"}, {"uri": "speaker2.mp4", "tag": "news"}, {"uri": "corrupt.mp4", "tag": "vlog"}]
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(rows))
    data = tmp_path / "data"
    _deploy("flows/prefect_flows.py:dataset_refresh_flow", "dataset-refresh")
    parameters = {"manifest": str(tmp_path / "manifest.yaml"), "data_dir": str(data), "workers": 0}

    first = asyncio.run(_run_and_wait("dataset-refresh/dataset-refresh", parameters))
    assert first.state.is_completed(), first.state
    shards = sorted(p.name for p in (data / "shards" / "v1").glob("*.tar"))
    assert shards and sorted(p.stem.split("-")[0] for p in (data / "views").glob("*.json")) == ["lenient", "strict", "test"]
    split = json.loads((data / "views" / "test.json").read_text())
    held_out = set(split["split"]["sources"])
    assert len(held_out) == 1 and split["summary"]["kept"] > 0  # two good sources: one held out
    held_out_keys = {key for keys in split["shards"].values() for key in keys}
    for view_file in (data / "views").glob("[sl]*-*.json"):  # the default views leave the split's sources out
        view = json.loads(view_file.read_text())
        assert view["excluded_split"]["view"] == "test" and view["excluded_split"]["sources"] == sorted(held_out)
        assert not held_out_keys & {key for keys in view["shards"].values() for key in keys}
    ledger = [json.loads(p.read_text()) for p in (data / "sources").glob("*.json")]
    assert sorted(r["status"] for r in ledger) == ["done", "done", "rejected"]
    assert [r["reject_reason"] for r in ledger if r["status"] == "rejected"] == ["unreadable"]
    lineage = json.loads(next((data / "shards" / "v1").glob("*.lineage.json")).read_text())
    assert lineage["flow_run_id"] == str(first.id)
    assert {"dataset-refresh-added", "split-test", "view-aliases"} <= asyncio.run(_artifact_keys(first.id))
    aliases = {p.stem: json.loads(p.read_text())["view"] for p in (data / "views" / "aliases").glob("*.json")}
    assert aliases == {p.stem.split("-")[0]: p.stem for p in (data / "views").glob("[sl]*-*.json")}  # strict → strict-<digest>
    shard_key = asset_key(data / "shards" / "v1" / shards[0])
    upstream_of_views = set()
    for view_file in (data / "views").glob("*.json"):  # each view ← the shards it reads
        shards_read = {asset_key(data / shard) for shard in json.loads(view_file.read_text())["shards"]}
        view_event = asyncio.run(_asset_events(asset_key(view_file)))[0]
        assert shards_read == {r["prefect.resource.id"] for r in view_event["related"] if r["prefect.resource.role"] == "asset"}
        upstream_of_views |= shards_read
    assert shard_key in upstream_of_views
    shard_event = asyncio.run(_asset_events(shard_key))[0]
    assert {asset_key(tmp_path / "speaker1.mp4"), asset_key(tmp_path / "speaker2.mp4")} & {r["prefect.resource.id"] for r in shard_event["related"]}

    catalog_parts = sorted(p.name for p in (data / "catalog").glob("*.parquet"))
    second = asyncio.run(_run_and_wait("dataset-refresh/dataset-refresh", parameters))
    assert second.state.is_completed(), second.state
    assert sorted(p.name for p in (data / "shards" / "v1").glob("*.tar")) == shards
    assert sorted(p.name for p in (data / "catalog").glob("*.parquet")) == catalog_parts
    assert len(list((data / "views").glob("*.json"))) == 3  # same snapshot: the same split and two views, unchanged


def test_prefect_yaml_declares_the_deployments_with_a_daily_refresh():
    import importlib

    import yaml

    doc = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in doc["deployments"]}
    gpu = {*TRAINING_FLOWS.values(), "train-sync-expert"}
    assert set(deployments) == {"dataset-refresh", "refilter", "rescore", *gpu}
    assert deployments["dataset-refresh"]["schedules"][0]["cron"] == "0 3 * * *"
    for deployment in deployments.values():
        path, function = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert getattr(module, function).name == deployment["name"]
        assert deployment["work_pool"]["name"] == ("gpu-pool" if deployment["name"] in gpu else "cpu-pool")


def test_model_deployment_parameter_schemas_are_what_the_ui_needs(prefect_server):
    from prefect import get_client

    for function, name in TRAINING_FLOWS.items():
        _deploy(f"flows/training_flows.py:{function}", name)

    async def schemas():
        async with get_client() as client:
            return {name: (await client.read_deployment_by_name(f"{name}/{name}")).parameter_openapi_schema for name in TRAINING_FLOWS.values()}

    schema = asyncio.run(schemas())
    teacher, student, generate, evaluate = (schema[n] for n in TRAINING_FLOWS.values())
    for s in schema.values():
        assert all(prop.get("description") for prop in s["properties"].values())  # the form explains each field

    assert set(teacher["required"]) == {"data_dir", "out_dir", "steps"}
    props = teacher["properties"]
    assert props["data_dir"] == {**props["data_dir"], "type": "string", "format": "path"}
    assert props["steps"]["type"] == "integer" and props["steps"]["exclusiveMinimum"] == 0
    assert (props["view"]["default"], props["config"]["default"], props["refresh_cache"]["default"]) == ("strict", "tiny", False)
    assert props["config_overrides"]["anyOf"][0]["type"] == "object" and props["config_overrides"]["default"] is None

    assert set(student["required"]) == {"data_dir", "teacher", "out_dir", "steps"}
    props, defs = student["properties"], student["definitions"]
    assert props["view"]["default"] == "lenient"
    assert props["loss"] == {**props["loss"], "$ref": "#/definitions/LossMode", "default": "adaptive"}
    assert defs["LossMode"]["enum"] == ["none", "fixed", "adaptive-unlimited", "adaptive"]
    assert props["cfg"]["default"] == "layer-tokens" and defs["CfgVariant"]["enum"] == ["none", "time-embed", "layer", "layer-tokens"]

    assert set(generate["required"]) == {"ckpt", "image", "audio", "out"}
    props = generate["properties"]
    assert props["mode"]["default"] == "teacher" and generate["definitions"]["GenerationMode"]["enum"] == ["teacher", "balanced", "fast"]
    assert props["seed"] == {**props["seed"], "type": "integer", "default": 0}
    assert {"type": "number"} in props["guidance_audio"]["anyOf"]

    assert set(evaluate["required"]) == {"data_dir", "runs", "out_dir"}
    props, defs = evaluate["properties"], evaluate["definitions"]
    assert props["view"]["default"] == "test" and props["runs"]["items"] == {"$ref": "#/definitions/EvaluationRun"}
    run = defs["EvaluationRun"]
    assert run["required"] == ["ckpt"] and run["properties"]["mode"]["default"] == "teacher"
    assert defs["SkipMetric"]["enum"] == ["fid", "fvd"]


def test_train_teacher_deployment_trains_and_publishes_the_loss_curve_and_the_checkpoint_asset(prefect_server, tmp_path):
    from shards.synthetic_dataset import make_speaker_data_dir

    data = make_speaker_data_dir(tmp_path / "data", n_clips=2, size=32, duration_s=1.2, view="strict")
    _deploy("flows/training_flows.py:train_teacher_flow", "train-teacher")
    out = tmp_path / "teacher"
    parameters = {"data_dir": str(data), "out_dir": str(out), "steps": 2,
                  "config_overrides": {"train": {"num_frames": 2, "batch_size": 1, "windows_per_clip": 1, "shuffle_buffer": 4}}}
    run = asyncio.run(_run_and_wait("train-teacher/train-teacher", parameters))
    assert run.state.is_completed(), run.state
    import json

    meta = json.loads((out / "final" / "fada.json").read_text())
    assert meta["kind"] == "teacher" and meta["step"] == 2 and meta["view"] == "strict"
    assert meta["config"]["train"]["num_frames"] == 2
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert {"teacher-loss-curve", "teacher-metrics"} <= asyncio.run(_artifact_keys(run.id))
    event = asyncio.run(_asset_events(asset_key(out / "final")))[0]  # checkpoint ← view
    assert asset_key(data / "views" / "strict.json") in {r["prefect.resource.id"] for r in event["related"]}
    assert event["payload"]["step"] == 2


def test_refilter_user_errors_fail_at_once_without_retries(prefect_server, tmp_path):
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    _deploy("flows/prefect_flows.py:refilter_flow", "refilter")
    run = asyncio.run(_run_and_wait("refilter/refilter", {"data_dir": str(tmp_path / "no-catalog-here")}))
    assert run.state.is_failed(), run.state

    async def task_runs():
        async with get_client() as client:
            return await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))

    refilter_runs = [t for t in asyncio.run(task_runs()) if t.name.startswith("refilter-")]
    assert len(refilter_runs) == 1 and refilter_runs[0].run_count == 1  # ViewError: no "Retry 1/2"


def test_deployment_defaults_point_at_what_make_demo_writes():
    import yaml

    from flows.cli import DEMO_LAYOUT

    demo = {name: f"demo-data/{relative}" for name, relative in DEMO_LAYOUT.items()}
    parameters = {d["name"]: d.get("parameters", {}) for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}
    assert parameters["dataset-refresh"]["manifest"] == demo["manifest"]
    for name in ("dataset-refresh", "refilter", "train-teacher", "distill-student", "evaluate"):
        assert parameters[name]["data_dir"] == demo["data"], name
    assert parameters["distill-student"]["teacher"] == demo["teacher"]
    assert parameters["generate"]["ckpt"] == demo["teacher"] and parameters["evaluate"]["runs"][0]["ckpt"] == demo["teacher"]
    assert (parameters["generate"]["image"], parameters["generate"]["audio"]) == (demo["portrait"], demo["speech"])
