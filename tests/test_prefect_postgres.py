"""Production shape: PostgreSQL (the Debian package) as the Prefect server's database, the deployments of
prefect.yaml created by `prefect deploy --all` (as `make serve` does) with process workers on cpu-pool and
gpu-pool, and event-driven retraining: a dataset-refresh that adds enough lenient hours emits
``fada.dataset.grown``, and the distill-student trigger of prefect.yaml starts a student on that refresh's
lenient view through the server's automation."""

import asyncio
import json
import subprocess
import time

import pytest
import yaml

from tests.prefect_server import PREFECT, REPO, events, running_postgres, running_prefect, run_and_wait, wait_for_run

STUDENT_SETTINGS = {"num_frames": 2, "batch_size": 1, "windows_per_clip": 1, "shuffle_buffer": 4, "solver_steps_per_window": 1}


def _test_prefect_yaml(root) -> dict:
    """prefect.yaml with its demo-data paths moved under ``root``, no schedules, and a 1-step tiny student."""
    text = (REPO / "prefect.yaml").read_text().replace("demo-data/", f"{root}/demo-data/")
    doc = yaml.safe_load(text)
    for deployment in doc["deployments"]:
        deployment.pop("schedules", None)
        if deployment["name"] == "distill-student":
            deployment["parameters"].update(steps=1, overrides=STUDENT_SETTINGS, device="cpu")
    return doc


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """Postgres → Prefect server → `prefect deploy --all` of prefect.yaml → a worker per pool; the teacher the
    distill-student deployment names, trained here (1 step, tiny)."""
    from fada.config import load_config
    from fada.train_teacher import train_teacher
    from shards.synthetic_dataset import make_speaker_data_dir

    root = tmp_path_factory.mktemp("prod")
    doc = _test_prefect_yaml(root)
    (root / "prefect.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    student = next(d for d in doc["deployments"] if d["name"] == "distill-student")
    config = load_config("tiny")
    config["train"].update(num_frames=2, batch_size=1, windows_per_clip=1, shuffle_buffer=4)
    teacher_data = make_speaker_data_dir(root / "teacher-data", n_clips=1, size=32, duration_s=1.0, view="lenient")
    train_teacher(teacher_data, "lenient", config, 1, student["parameters"]["teacher"], device="cpu", progress=False)

    (root / "prefect-home").mkdir()
    with running_postgres() as database_url, \
            running_prefect(root / "prefect-home", pools=["cpu-pool", "gpu-pool"], database_url=database_url) as (api, env):
        subprocess.run([PREFECT, "--no-prompt", "deploy", "--all", "--prefect-file", str(root / "prefect.yaml")],
                       cwd=REPO, env=env, check=True, capture_output=True)
        yield {"root": root, "database_url": database_url, "doc": doc}


@pytest.fixture(scope="module")
def sources(deployed):
    from filters.synthetic import SpeakerSpec, render_speaker

    folder = deployed["root"] / "sources"
    folder.mkdir()
    for seed in (1, 2):
        render_speaker(SpeakerSpec(seed=seed, duration_s=3.5, width=384, height=288), folder / f"speaker{seed}.mp4")
    rows = [{"uri": "speaker1.mp4", "tag": "interview"}, {"uri": "speaker2.mp4", "tag": "news"}]
    (folder / "manifest.yaml").write_text(yaml.safe_dump(rows))
    return folder / "manifest.yaml"


async def _flow_runs(deployment_name: str) -> list:
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    async with get_client() as client:
        deployment = await client.read_deployment_by_name(deployment_name)
        return await client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))


def _wait_for_student_run(timeout_s: float = 240):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = asyncio.run(_flow_runs("distill-student/distill-student"))
        if runs:
            return asyncio.run(wait_for_run(runs[0].id, timeout_s))
        time.sleep(2)
    pytest.fail(f"the automation started no distill-student run within {timeout_s} s")


@pytest.mark.slow
def test_refresh_that_adds_enough_hours_retrains_the_student_through_the_automation(deployed, sources):
    data = deployed["root"] / "data"
    parameters = {"manifest": str(sources), "data_dir": str(data), "workers": 0, "retrain_min_hours": 0.0001}
    refresh = asyncio.run(run_and_wait("dataset-refresh/dataset-refresh", parameters))
    assert refresh.state.is_completed(), refresh.state
    (event,) = asyncio.run(events("fada.dataset.grown"))
    lenient = event["payload"]["view"]
    assert lenient.startswith("lenient-") and (data / "views" / f"{lenient}.json").is_file()
    assert event["payload"]["added_hours"] >= 0.0001 and event["payload"]["data_dir"] == str(data.resolve())

    student_run = _wait_for_student_run()
    assert student_run.state.is_completed(), student_run.state
    assert student_run.parameters["view"] == lenient and student_run.parameters["data_dir"] == str(data.resolve())
    out = deployed["root"] / "demo-data" / "students" / lenient
    assert student_run.parameters["out_dir"] == str(out)
    meta = json.loads((out / "final" / "fada.json").read_text())
    assert meta["kind"] == "student" and meta["view"] == lenient and meta["step"] == 1
    assert "init_student" not in meta  # the first retraining starts from the teacher

    second = asyncio.run(run_and_wait("dataset-refresh/dataset-refresh", parameters))  # nothing new: no event
    assert second.state.is_completed(), second.state
    grown = asyncio.run(events("fada.dataset.grown"))
    assert [e["payload"]["view"] for e in grown] == [lenient]
    assert len(asyncio.run(_flow_runs("distill-student/distill-student"))) == 1


@pytest.mark.slow
def test_refilter_runs_on_the_postgres_backed_server_and_its_state_is_in_postgres(deployed, sources):
    import asyncpg

    data = deployed["root"] / "data"
    if not (data / "catalog").is_dir():
        refresh = asyncio.run(run_and_wait("dataset-refresh/dataset-refresh", {"manifest": str(sources), "data_dir": str(data), "workers": 0}))
        assert refresh.state.is_completed(), refresh.state
    run = asyncio.run(run_and_wait("refilter/refilter", {"data_dir": str(data), "name": "pg-lenient", "profile": "lenient"}))
    assert run.state.is_completed(), run.state
    assert json.loads((data / "views" / "pg-lenient.json").read_text())["profile"]["name"] == "lenient"

    async def stored_run_names() -> set[str]:
        connection = await asyncpg.connect(deployed["database_url"].replace("+asyncpg", ""))
        try:
            return {row["name"] for row in await connection.fetch(
                "SELECT d.name FROM flow_run r JOIN deployment d ON r.deployment_id = d.id")}
        finally:
            await connection.close()

    assert {"dataset-refresh", "refilter"} <= asyncio.run(stored_run_names())


def test_the_retraining_trigger_listens_for_the_refresh_event_and_fills_distill_parameters():
    import inspect

    from flows.prefect_flows import GROWN_EVENT
    from flows.training_flows import distill_student_flow

    doc = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (trigger,) = next(d for d in doc["deployments"] if d["name"] == "distill-student")["triggers"]
    assert trigger["expect"] == [GROWN_EVENT] and trigger["enabled"]
    assert set(trigger["parameters"]) <= set(inspect.signature(distill_student_flow.fn).parameters)
    assert trigger["parameters"]["view"] == "{{ event.payload.view }}"  # the refresh's immutable lenient view
