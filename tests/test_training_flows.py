"""The model flows (flows/training_flows.py) and their helpers (flows/flow_artifacts.py): asset keys, config
overrides, cache keys, the loss-curve plot, the GPU dispatch (in-process and as a Ray task), the parameter
schema `prefect deploy` computes, prefect.yaml; and (slow, on a temporary Prefect server) the distill,
generate and evaluate flows calling the library as the CLI does, publishing artifacts, and caching.

The train-teacher flow itself runs for real through a deployment in tests/test_prefect_flows.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fada.training_plots import loss_curve_png, numeric_columns
from flows import training_flows
from flows.flow_artifacts import asset_key, slug
from flows.training_flows import fingerprint, gpu_task_options, run_on_gpu, training_config

REPO = Path(__file__).resolve().parent.parent
FLOWS = ("train_teacher_flow", "distill_student_flow", "generate_flow", "evaluate_flow", "train_sync_expert_flow")


def test_asset_keys_are_valid_prefect_uris():
    from prefect.assets import Asset

    assert asset_key("/data/views/strict.json") == "file:///data/views/strict.json"
    assert asset_key("relative/x.tar") == "file://" + str(Path("relative/x.tar").resolve())
    assert asset_key("s3://bucket/raw/a.mp4") == "s3://bucket/raw/a.mp4"
    assert asset_key("file:///tmp/a b#c%.mp4") == "file:///tmp/a_b_c_.mp4"
    long = asset_key("/data/" + "x" * 700 + "/final")
    assert len(long) <= 512 and long.endswith("/final")
    for key in (asset_key("/tmp/a b#c%.mp4"), long):
        Asset(key=key)  # Prefect's own validation
    assert slug("Teacher_Run 01/") == "teacher-run-01"


def test_config_overrides_nested_or_dotted_and_sd15():
    config = training_config("tiny", {"train": {"num_frames": 2}, "train.batch_size": 1, "codec.size": 32}, "/models/sd15")
    assert config["train"]["num_frames"] == 2 and config["train"]["batch_size"] == 1
    assert config["train"]["learning_rate"] == 1e-3  # the rest of the preset stays
    assert config["model"]["num_motion_frames"] == 2 and config["sd15_dir"] == "/models/sd15"
    from fada.config import ConfigError

    with pytest.raises(ConfigError):
        training_config("no-such-preset", None, None)


def test_cache_key_follows_file_contents_and_code_version(tmp_path, monkeypatch):
    (tmp_path / "views").mkdir()
    view = tmp_path / "views" / "strict.json"
    view.write_text('{"shards": {}}')
    inputs = {"data_dir": str(tmp_path), "view": "strict", "steps": 2}
    key = training_flows._code_and_files_key(None, inputs)
    assert key == training_flows._code_and_files_key(None, dict(inputs))
    view.write_text('{"shards": {"a": []}}')
    changed = training_flows._code_and_files_key(None, inputs)
    assert changed != key
    monkeypatch.setenv("FADA_CODE_VERSION", "v2")
    assert training_flows._code_and_files_key(None, inputs) != changed
    ckpt = tmp_path / "run" / "final"
    ckpt.mkdir(parents=True)
    (ckpt / "fada.json").write_text('{"step": 2}')
    assert fingerprint(tmp_path / "run") == fingerprint(ckpt / "fada.json") != fingerprint(tmp_path / "missing")
    assert fingerprint(tmp_path / "missing") == "missing"


def test_loss_curve_plots_every_numeric_column(tmp_path):
    rows = [{"step": s, "loss": 1.0 / s, "l_distill": 0.5 / s, "l_gt": 0.2, "w_mean": 0.1 * s, "lr": 1e-5, "note": "x"}
            for s in range(1, 6)]
    assert numeric_columns(rows) == ["loss", "l_distill", "l_gt", "w_mean", "lr"]
    png = loss_curve_png(rows, tmp_path / "curve.png", "student")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert loss_curve_png([], tmp_path / "none.png", "empty") is None


def _pid() -> int:
    return os.getpid()


def test_gpu_work_runs_in_process_without_ray_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert run_on_gpu(_pid) == os.getpid()
    monkeypatch.delenv("FADA_RAY_NUM_GPUS", raising=False)
    assert gpu_task_options()["num_gpus"] == 1


def test_gpu_work_is_a_ray_task_when_ray_address_is_set(ray_local, monkeypatch, tmp_path):
    """The Ray path on a CPU machine (FADA_RAY_NUM_GPUS=0), also for a function of a flow file Prefect loaded
    by path (which Ray workers cannot import by name)."""
    from prefect.utilities.importtools import load_script_as_module

    monkeypatch.setenv("RAY_ADDRESS", "auto")  # ray_local is already initialised: ensure_ray keeps it
    monkeypatch.setenv("FADA_RAY_NUM_GPUS", "0")
    assert run_on_gpu(_pid) != os.getpid()
    script = tmp_path / "my_flow_file.py"
    script.write_text("def job(x, *, y):\n    import os\n    return x + y, os.getpid()\n")
    module = load_script_as_module(str(script))
    value, pid = run_on_gpu(module.job, 2, y=3)
    assert value == 5 and pid != os.getpid()


def test_prefect_deploy_computes_the_same_parameter_schema_from_source():
    """`prefect deploy` may read the schema from the source without importing the flow: it must not differ."""
    from prefect.utilities.callables import parameter_schema, parameter_schema_from_entrypoint

    for name in FLOWS:
        from_import = parameter_schema(getattr(training_flows, name)).model_dump()
        assert parameter_schema_from_entrypoint(f"{REPO}/flows/training_flows.py:{name}").model_dump() == from_import
        assert all(p.get("description") for p in from_import["properties"].values()), name


# --- the flows on a temporary Prefect server, with the library calls replaced by stubs ----------------------


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path_factory.mktemp("results")}):
        with prefect_test_harness(server_startup_timeout=120):
            yield


def _fake_distill(calls: list):
    from fada.train_teacher import TrainResult

    def distill_student(data_dir, view, teacher, out_dir, **kwargs):
        calls.append((data_dir, view, teacher, out_dir, kwargs))
        out_dir = Path(out_dir)
        (out_dir / "final").mkdir(parents=True, exist_ok=True)
        rows = [{"step": s, "loss": 1.0 / s, "l_distill": 0.5 / s, "l_gt": 0.3, "r_mean": 0.5, "w_mean": 0.1} for s in (1, 2)]
        (out_dir / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return TrainResult(str(out_dir), kwargs["steps"], 0, 0.5, str(out_dir / "final"))

    return distill_student


async def _artifacts(flow_run_id) -> dict:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in found}


@pytest.mark.slow
def test_distill_flow_calls_the_library_like_the_cli_and_caches(prefect_api, tmp_path, monkeypatch):
    import asyncio

    import fada.distill

    calls = []
    monkeypatch.setattr(fada.distill, "distill_student", _fake_distill(calls))
    params = dict(data_dir=tmp_path / "data", teacher=tmp_path / "teacher", out_dir=tmp_path / "student", steps=2,
                  overrides={"num_frames": 2})
    state = training_flows.distill_student_flow(**params, return_state=True)
    result = state.result()
    (data_dir, view, teacher, out_dir, kwargs), = calls
    assert (data_dir, view, teacher, out_dir) == (str(tmp_path / "data"), "lenient", str(tmp_path / "teacher"), str(tmp_path / "student"))
    assert kwargs == {"config": {"num_frames": 2, "loss_mode": "adaptive", "cfg_variant": "layer-tokens"}, "steps": 2,
                      "device": None, "init_student": None, "progress": False}
    assert Path(result["loss_curve"]).is_file()
    keys = asyncio.run(_artifacts(state.state_details.flow_run_id))
    assert {"student-loss-curve", "student-metrics"} <= set(keys)
    metrics = {row["metric"] for row in json.loads(keys["student-metrics"].data)}
    assert {"last l_distill", "last l_gt", "last r_mean", "last w_mean", "final_loss", "checkpoint"} <= metrics

    training_flows.distill_student_flow(**params)  # the same inputs: cached, the library is not called again
    assert len(calls) == 1
    (tmp_path / "student" / "final").rmdir()  # the cached result's checkpoint is gone: run again
    training_flows.distill_student_flow(**params)
    assert len(calls) == 2


@pytest.mark.slow
def test_generate_and_evaluate_flows_publish_what_they_made(prefect_api, tmp_path, monkeypatch):
    import asyncio

    import fada.evaluate
    import fada.pipeline
    from fada.pipeline import GenerationResult

    seen = {}

    class FakePipeline:
        @classmethod
        def from_checkpoint(cls, ckpt, mode, **kwargs):
            seen["pipeline"] = (ckpt, mode, kwargs)
            return cls()

        def generate(self, image, audio, out, seed=0, progress=True):
            Path(out).write_bytes(b"mp4")
            return GenerationResult(frames=8, clips=2, nfe_total=150, nfe_per_clip=75, seconds=2.0, path=str(out))

    monkeypatch.setattr(fada.pipeline, "FadaPipeline", FakePipeline)
    state = training_flows.generate_flow(ckpt=tmp_path / "teacher", image=tmp_path / "p.png", audio=tmp_path / "a.wav",
                                         out=tmp_path / "out.mp4", steps=10, return_state=True)
    result = state.result()
    assert seen["pipeline"] == (str(tmp_path / "teacher"), "teacher", {"device": None, "output_size": None, "num_inference_steps": 10,
                                                                        "guidance_reference": None, "guidance_audio": None})
    assert result["nfe_per_clip"] == 75 and result["seconds_per_video_second"] == pytest.approx(2.0 / (8 / 25))
    artifact = asyncio.run(_artifacts(state.state_details.flow_run_id))["generate-out"]
    assert str(tmp_path / "out.mp4") in artifact.data and "NFE-D per clip | 75" in artifact.data

    def fake_evaluate(data_dir, runs, out_dir, **kwargs):
        seen["evaluate"] = (data_dir, runs, kwargs)
        report = {"view": kwargs["view"], "clips": ["k"], "frames": 4, "seed": 0, "complete": True, "metric_config": {},
                  "reference": {"metrics": {"iqa": 0.5}}, "runs": [{"name": "teacher", "mode": "teacher", "metrics": {"nfe_d": 75}}]}
        fada.evaluate.write_report(report, out_dir)
        return report

    monkeypatch.setattr(fada.evaluate, "evaluate", fake_evaluate)
    state = training_flows.evaluate_flow(data_dir=tmp_path / "data", runs=[{"ckpt": str(tmp_path / "teacher")}],
                                         out_dir=tmp_path / "eval", skip=["fvd", "fid"], max_clips=2, return_state=True)
    assert state.result()["report"] == str(tmp_path / "eval" / "evaluation.json")
    data_dir, runs, kwargs = seen["evaluate"]
    assert runs == [(str(tmp_path / "teacher"), "teacher")] and kwargs["skip"] == ("fid", "fvd") and kwargs["max_clips"] == 2
    artifacts = asyncio.run(_artifacts(state.state_details.flow_run_id))
    assert "| Real test clips |" in artifacts["evaluation-eval"].data
    assert json.loads(artifacts["evaluation-eval-table"].data)[1]["NFE-D"] == "75"
