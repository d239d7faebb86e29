"""Multi-node Ray: a head and a second node started with `ray start` (separate temp dirs, no dashboard) on this
machine, `fada ingest` joining it through RAY_ADDRESS; the second node is killed mid-run. The run finishes on
the head (the lost node's jobs are recorded as failed, not waited for), the rerun ingests what failed, and the
result is what a clean run makes: every source ingested exactly once, the same clip keys.

Ray's CLI replaces 127.0.0.1 by the machine's own address (`ray._private.services.resolve_ip_for_localhost`),
so the nodes listen on that address; the ports are free ones chosen here, and the cluster has its own token
(token auth, as on real machines; Ray would otherwise pick up a ~/.ray/auth_token left by a local run)."""

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from shards.catalog import read_catalog
from shards.ledger import SourceLedger
from tests.prefect_server import free_port, stop

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
SPEAKERS = 3


def _node_ports() -> list[str]:
    """Each node's agents on free ports (two nodes on one machine must not share the defaults)."""
    return ["--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
            "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
            "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port())]


@contextlib.contextmanager
def ray_cluster():
    """Head (1 CPU) + a second node (1 CPU), each a `ray start --block` in its own session and temp dir (short
    paths under /tmp: Ray's socket paths must fit 107 bytes) and the cluster's own auth token; yields the
    environment a driver joins it with (RAY_ADDRESS, the token) and the second node's process."""
    root = Path(tempfile.mkdtemp(prefix="fada-ray-"))
    port = free_port()
    # none of this process's RAY_* variables: a local Ray of an earlier test (ensure_ray) turns multi-node
    # clusters off and leaves its own settings there
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", str(128 * 2**20),
              "--disable-usage-stats", "--block"]
    nodes = []
    try:
        nodes.append(subprocess.Popen([str(BIN / "ray"), "start", "--head", "--port", str(port), "--include-dashboard", "false",
                                       "--temp-dir", str(root / "head"), *common, *_node_ports()], env=env,
                                      stdout=open(root / "head.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True))
        address = f"127.0.0.1:{port}"
        _wait_for_nodes(root / "head.log", address, 1, env)
        nodes.append(subprocess.Popen([str(BIN / "ray"), "start", "--address", address, "--temp-dir", str(root / "node2"),
                                       *common, *_node_ports()], env=env, stdout=open(root / "node2.log", "wb"),
                                      stderr=subprocess.STDOUT, start_new_session=True))
        _wait_for_nodes(root / "head.log", address, 2, env)
        yield {**env, "RAY_ADDRESS": address}, nodes[1]
    finally:
        for node in reversed(nodes):
            if node.poll() is None:
                stop(node, grace_s=40)
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_nodes(head_log: Path, address: str, count: int, env: dict, timeout_s: float = 180) -> None:
    """Return once ``count`` nodes are alive (asked from a short-lived driver)."""
    deadline = time.monotonic() + timeout_s
    probe = "import ray; ray.init(log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))"
    while time.monotonic() < deadline:
        done = subprocess.run([sys.executable, "-c", probe], env={**env, "RAY_ADDRESS": address}, capture_output=True,
                              text=True, timeout=120)
        if done.returncode == 0 and int(done.stdout.split()[-1]) >= count:
            return
        time.sleep(2)
    pytest.fail(f"Ray cluster did not reach {count} node(s) in {timeout_s} s: {head_log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from filters.synthetic import SpeakerSpec, render_speaker

    folder = tmp_path_factory.mktemp("sources")
    for seed in range(SPEAKERS):
        render_speaker(SpeakerSpec(seed=seed + 1, duration_s=2.5, width=384, height=288), folder / f"speaker{seed}.mp4")
    (folder / "manifest.yaml").write_text(yaml.safe_dump([{"uri": f"speaker{i}.mp4", "tag": "talk"} for i in range(SPEAKERS)]))
    return folder / "manifest.yaml"


def _ingest(manifest: Path, data: Path, env: dict, **popen) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "fada"), "ingest", str(manifest), "--out", str(data), "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def _clip_keys(data: Path) -> list[str]:
    return sorted(read_catalog(data, columns=["key"]).column("key").to_pylist())


def test_losing_a_node_mid_ingest_loses_nothing_after_the_rerun(manifest, tmp_path):
    clean = tmp_path / "clean"
    done = subprocess.run([str(BIN / "fada"), "ingest", str(manifest), "--out", str(clean), "--workers", "0", "--quiet"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

    data = tmp_path / "cluster"
    with ray_cluster() as (env, second_node):
        first = _ingest(manifest, data, env)
        staging = data / "staging"
        deadline = time.monotonic() + 300
        # both actors are cutting clips: two sources' staging folders fill at once (an actor gets jobs only once
        # placed and loaded, so the first clip files alone may all be the head's)
        while sum(any(p.is_file() for p in folder.iterdir()) for folder in staging.glob("*") if folder.is_dir()) < 2:
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline, "ingest never started extracting"
            time.sleep(0.2)
        os.killpg(second_node.pid, signal.SIGKILL)  # the node is lost: its raylet, object store and actor with it
        second_node.wait()
        output = first.communicate(timeout=600)[0]
        assert first.returncode == 0, output
        ledger = SourceLedger(data).records()
        assert "failed" in {r["status"] for r in ledger}, output  # the lost node's source, not silently dropped
        assert all(r["status"] in ("done", "failed") for r in ledger) and len(ledger) == SPEAKERS

        rerun = _ingest(manifest, data, env)
        output = rerun.communicate(timeout=600)[0]
        assert rerun.returncode == 0, output

    records = SourceLedger(data).records()
    assert sorted(r["status"] for r in records) == ["done"] * SPEAKERS
    assert sorted(r["source_id"] for r in records) == sorted(r["source_id"] for r in SourceLedger(clean).records())
    keys = _clip_keys(data)
    assert len(keys) == len(set(keys)), "a clip was ingested twice"
    assert keys == _clip_keys(clean)
    lineage_keys = sorted(k for r in records for k in r["clip_keys"])
    assert lineage_keys == sorted(k for r in SourceLedger(clean).records() for k in r["clip_keys"])
    reports = sorted((data / "runs").glob("ingest-*.json"))
    assert json.loads(reports[-1].read_text())["outcomes"].get("ingested", 0) >= 1  # the rerun did the failed ones
