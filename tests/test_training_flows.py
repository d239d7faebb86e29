"""The model flows (flows/training_flows.py) and their helpers (flows/flow_artifacts.py): asset keys, config
overrides, cache keys, the loss-curve plot, the GPU dispatch (in-process and as a Ray task), the parameter
schema `prefect deploy` computes, prefect.yaml; and (slow, on a temporary Prefect server) the distill,
generate and evaluate flows running the library on tiny real runs (NFE as counted: 75 / 18 / 6), publishing
artifacts, and caching.

The train-teacher flow itself runs for real through a deployment in tests/test_prefect_flows.py."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from fada import training
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


# --- the flows on a temporary Prefect server, running the library on tiny real runs ----------------------


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: tmp_path_factory.mktemp("results")}):
        with prefect_test_harness(server_startup_timeout=120):
            yield


TINY_DISTILL = {"num_frames": 2, "solver_steps_per_window": 1, "windows_per_clip": 1, "shuffle_buffer": 4}


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """A generated speaker view, a tiny teacher trained 1 step on it, and a student distilled from it for 1 step
    without CFG conditioning (so it runs in both student modes): seconds on a CPU."""
    from fada.config import load_config
    from fada.distill import distill_student
    from fada.train_teacher import train_teacher
    from shards.synthetic_dataset import make_speaker_data_dir

    root = tmp_path_factory.mktemp("tiny-runs")
    data_dir = make_speaker_data_dir(root / "data", n_clips=2, size=32, duration_s=1.0, view="lenient")
    config = load_config("tiny")
    config["train"].update(num_frames=2, batch_size=1, windows_per_clip=1, shuffle_buffer=4)
    train_teacher(data_dir, "lenient", config, 1, root / "teacher", device="cpu", progress=False)
    distill_student(data_dir, "lenient", root / "teacher", root / "student", steps=1, device="cpu", progress=False,
                    config={**TINY_DISTILL, "cfg_variant": "none"})
    return {"data_dir": data_dir, "teacher": root / "teacher", "student": root / "student"}


@pytest.fixture(scope="module")
def speech_inputs(tmp_path_factory):
    """A portrait PNG (a face, as generation needs) and 0.2 s of speech-like audio (5 frames: clips of 2, 2, 1)."""
    import numpy as np
    import soundfile
    from PIL import Image
    from skimage import data as sample_images

    root = tmp_path_factory.mktemp("inputs")
    Image.fromarray(sample_images.astronaut()).save(root / "portrait.png")
    t = np.arange(3200) / 16_000
    soundfile.write(root / "speech.wav", (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))), 16_000)
    return root / "portrait.png", root / "speech.wav"


async def _artifacts(flow_run_id) -> dict:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        found = await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a for a in found}


@pytest.mark.slow
def test_distill_flow_runs_the_library_like_the_cli_and_caches(prefect_api, tiny_runs, tmp_path):
    import asyncio

    out = tmp_path / "student"
    params = dict(data_dir=tiny_runs["data_dir"], teacher=tiny_runs["teacher"], out_dir=out, steps=2,
                  overrides=TINY_DISTILL)
    state = training_flows.distill_student_flow(**params, return_state=True)
    result = state.result()
    assert result["steps"] == 2 and result["resumed_from"] == 0 and result["checkpoint"] == str(out / "final")
    meta = json.loads((out / "final" / "fada.json").read_text())
    assert meta["kind"] == "student" and meta["step"] == 2 and meta["view"] == "lenient"  # the flow's default view
    assert meta["teacher"]["path"] == str((tiny_runs["teacher"] / "final").resolve())
    train = meta["config"]["train"]
    assert (train["num_frames"], train["loss_mode"], train["cfg_variant"]) == (2, "adaptive", "layer-tokens")
    assert [row["step"] for row in training.read_log(out)] == [1, 2]
    assert Path(result["loss_curve"]).is_file()
    keys = asyncio.run(_artifacts(state.state_details.flow_run_id))
    assert {"student-loss-curve", "student-metrics"} <= set(keys)
    metrics = {row["metric"] for row in json.loads(keys["student-metrics"].data)}
    assert {"last l_distill", "last l_gt", "last r_mean", "last w_mean", "final_loss", "checkpoint"} <= metrics

    exported = (out / "final" / "fada.json").stat().st_mtime_ns
    training_flows.distill_student_flow(**params)  # the same inputs: cached, the library does not run again
    assert (out / "final" / "fada.json").stat().st_mtime_ns == exported
    shutil.rmtree(out)  # the cached result's checkpoint is gone: it runs again
    again = training_flows.distill_student_flow(**params)
    assert again["resumed_from"] == 0 and (out / "final" / "fada.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("run, mode, nfe", [("teacher", "teacher", 75), ("student", "balanced", 18), ("student", "fast", 6)])
def test_generate_flow_writes_the_video_and_publishes_its_nfe(prefect_api, tiny_runs, speech_inputs, tmp_path, run, mode, nfe):
    import asyncio

    import av

    portrait, speech = speech_inputs
    state = training_flows.generate_flow(ckpt=tiny_runs[run], image=portrait, audio=speech, out=tmp_path / "out.mp4",
                                         mode=mode, size=48, device="cpu", return_state=True)
    result = state.result()
    assert result["clips"] == 3 and result["nfe_per_clip"] == nfe and result["nfe_total"] == 3 * nfe
    with av.open(str(tmp_path / "out.mp4")) as container:
        video = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(video) == 5 == result["frames"] and video[0].shape == (48, 48, 3)
    assert result["seconds_per_video_second"] == pytest.approx(result["seconds"] / (5 / 25))
    artifact = asyncio.run(_artifacts(state.state_details.flow_run_id))["generate-out"]
    assert str(tmp_path / "out.mp4") in artifact.data and f"NFE-D per clip | {nfe:g}" in artifact.data


@pytest.mark.slow
def test_evaluate_flow_publishes_the_table_of_real_runs(prefect_api, tiny_runs, tmp_path):
    import asyncio

    runs = [{"ckpt": str(tiny_runs["teacher"])}, {"ckpt": str(tiny_runs["student"]), "mode": "fast"}]
    state = training_flows.evaluate_flow(data_dir=tiny_runs["data_dir"], runs=runs, out_dir=tmp_path / "eval",
                                         view="lenient", skip=["fvd", "fid"], max_clips=1, max_frames=4, device="cpu",
                                         return_state=True)
    assert state.result()["report"] == str(tmp_path / "eval" / "evaluation.json")
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert report["complete"] and report["max_clips"] == 1 and len(report["clips"]) == 1
    assert [(run["mode"], run["metrics"]["nfe_d"], run["metrics"]["frames_generated"]) for run in report["runs"]] == [
        ("teacher", 75, 4), ("fast", 6, 4)]
    assert all(set(run["not_computed"]) == {"fid", "fvd"} for run in report["runs"])
    artifacts = asyncio.run(_artifacts(state.state_details.flow_run_id))
    assert "| Real test clips |" in artifacts["evaluation-eval"].data
    table = json.loads(artifacts["evaluation-eval-table"].data)
    assert [row["NFE-D"] for row in table] == ["—", "75", "6"] and table[1]["FID↓"] == "not computed"
