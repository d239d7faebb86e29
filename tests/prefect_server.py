"""Real services for the slow tests, on 127.0.0.1 only: a Prefect server (SQLite, or PostgreSQL from the
Debian package) with process workers, and helpers to deploy, run and inspect flows through its API."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).with_name("prefect"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM, then SIGKILL to the whole session (its own children too) if it is still there after ``grace_s``:
    a worker busy finishing a flow run on a loaded machine can take longer to shut down."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def postgres_bin() -> Path | None:
    """The directory of the Debian package's initdb/pg_ctl (not on PATH), or None when not installed."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent  # the package's bin/ (createdb is there too), not a symlink's folder
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


@contextlib.contextmanager
def running_postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (free port, temp data dir, trust auth for the local user);
    yields the asyncpg URL of its ``prefect`` database. As root the server runs as the ``postgres`` user
    (PostgreSQL refuses root), which the Debian package creates."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run installs it)")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    user = "postgres" if as_user else pwd.getpwuid(os.geteuid()).pw_name
    root = Path(tempfile.mkdtemp(prefix="fada-pg-"))
    if as_user:
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    quiet = dict(check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8"], **quiet)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c max_connections=100 -c fsync=off"
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options,
                    "-w", "start"], **quiet)
    try:
        subprocess.run([*as_user, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, "prefect"], **quiet)
        yield f"postgresql+asyncpg://{user}@127.0.0.1:{port}/prefect"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def running_prefect(home: Path, pools: list[str], database_url: str | None = None, cwd: Path = REPO):
    """A Prefect server on a free port of 127.0.0.1 (its database: ``database_url``, else SQLite under ``home``),
    one process pool and worker per name in ``pools``; sets PREFECT_API_URL/PREFECT_HOME in this process while
    it runs and yields ``(api_url, env)``."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": api,
           "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port), "FADA_HOME": str(REPO),
           "PREFECT_UI_API_URL": api}  # else the UI calls 127.0.0.1:4200
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    log = open(home / "server.log", "wb")
    server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    workers = []
    old = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME")}
    stack = contextlib.ExitStack()
    try:
        for _ in range(180):
            if server.poll() is not None:
                pytest.fail(f"Prefect server exited: {(home / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(1)
        else:
            pytest.fail("Prefect server did not start within 180 s")
        os.environ.update(PREFECT_API_URL=api, PREFECT_HOME=str(home))
        # this process's Prefect settings were resolved when an earlier server ran: point them here too
        from prefect.settings import PREFECT_API_URL, temporary_settings

        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: api}))
        for pool in pools:
            subprocess.run([PREFECT, "work-pool", "create", pool, "--type", "process"], env=env, check=True, capture_output=True)
            workers.append(subprocess.Popen([PREFECT, "worker", "start", "--pool", pool, "--type", "process"], env=env,
                                            cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            start_new_session=True))
        yield api, env
    finally:
        stack.close()
        for worker in workers:
            stop(worker)
        for key, value in old.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        stop(server)
        log.close()


def deploy(entrypoint: str, name: str, pool: str) -> str:
    from prefect import flow

    deployable = flow.from_source(source=str(REPO), entrypoint=entrypoint)
    return str(deployable.deploy(name=name, work_pool_name=pool, print_next_steps=False))


async def wait_for_run(flow_run_id, timeout_s: float = 300):
    """The flow run once it reached a final state."""
    from prefect import get_client

    async with get_client() as client:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = await client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return run
            await asyncio.sleep(2)
    pytest.fail(f"flow run {flow_run_id} did not finish in {timeout_s} s (state {run.state})")


async def run_and_wait(deployment_name: str, parameters: dict, timeout_s: float = 300):
    from prefect.deployments import run_deployment

    run = await run_deployment(deployment_name, parameters=parameters, timeout=0)
    return await wait_for_run(run.id, timeout_s)


async def artifact_keys(flow_run_id) -> set[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key for a in artifacts}


async def asset_events(key: str, timeout_s: float = 60) -> list[dict]:
    """The ``prefect.asset.materialization.succeeded`` events of asset ``key``."""
    return await events("prefect.asset.materialization.succeeded", resource_id=key, timeout_s=timeout_s)


async def events(name: str, resource_id: str | None = None, timeout_s: float = 60) -> list[dict]:
    """The stored events called ``name`` (of resource ``resource_id``), once there is one (events are stored
    asynchronously)."""
    from prefect import get_client

    body = {"filter": {"event": {"name": [name]}}, "limit": 50}
    if resource_id is not None:
        body["filter"]["resource"] = {"id": [resource_id]}
    deadline = time.monotonic() + timeout_s
    async with get_client() as client:
        while True:
            events = (await client.request("POST", "/events/filter", json=body)).json()["events"]
            if events or time.monotonic() > deadline:
                return events
            await asyncio.sleep(2)
