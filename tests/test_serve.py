"""`make serve` (infra/prefect/serve-local.sh): one Ctrl-C stops the server and both workers, nothing outlives it."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _prefect_processes(home: Path) -> list[int]:
    """Pids of Prefect servers and workers started for this PREFECT_HOME (read from /proc environ)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if ("prefect server" in cmdline or "prefect worker" in cmdline) and f"PREFECT_HOME={home}".encode() in environ:
            pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_one_ctrl_c_stops_the_server_and_both_workers(tmp_path):
    home = tmp_path / "prefect-home"
    log = tmp_path / "serve.log"
    env = {**os.environ, "PREFECT_HOME": str(home)}
    with open(log, "w") as out:
        serve = subprocess.Popen(["bash", "infra/prefect/serve-local.sh"], cwd=REPO, env=env, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while log.read_text().count("Worker '") < 2:
            assert serve.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        assert len(_prefect_processes(home)) == 3  # the server and one worker per pool
        assert (home / "server.log").is_file() and (home / "deploy.log").is_file()  # state where the README says

        os.killpg(serve.pid, signal.SIGINT)  # what the terminal sends on Ctrl-C
        serve.wait(timeout=120)  # a hang guard: on 2 loaded CI cores the server and workers took > 45 s to stop
        deadline = time.monotonic() + 10
        while _prefect_processes(home) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _prefect_processes(home), log.read_text()[-3000:]
        assert "stopped." in log.read_text()
    finally:
        for pid in _prefect_processes(home):
            os.kill(pid, signal.SIGKILL)
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
