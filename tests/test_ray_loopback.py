"""A local Ray listens on loopback only: every TCP listening socket of this process and its descendants
(GCS, raylet, workers, the dashboard agent), read from /proc while an ingest runs on Ray actors."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from filters.synthetic import SpeakerSpec, render_speaker
from flows.ingest import ingest
from shards.ingest.config import IngestConfig
from tests.datadir_factory import REPO

pytestmark = pytest.mark.slow


def descendants(root: int) -> set[int]:
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass  # the process ended meanwhile
    tree = {root}
    while True:
        grown = tree | {pid for pid, ppid in parent.items() if ppid in tree}
        if grown == tree:
            return tree
        tree = grown


def _address(hex_address: str, family: int) -> str:
    raw = bytes.fromhex(hex_address)
    words = [raw[i:i + 4][::-1] for i in range(0, len(raw), 4)]  # /proc prints each 32-bit word in host order
    return socket.inet_ntop(family, b"".join(words))


def listening_sockets(root: int) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP socket in LISTEN state owned by ``root`` or its descendants."""
    owner = {}
    for pid in descendants(root):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    owner[link[8:-1]] = pid
        except OSError:
            pass
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with open(table) as fh:
            for line in list(fh)[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in owner:  # 0A: LISTEN
                    address, port = fields[1].split(":")
                    found.append((_address(address, family), int(port, 16), owner[fields[9]]))
    return found


def is_loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1") or address.startswith("::ffff:127.")


def ingest_and_watch(folder: str) -> None:
    """Run an ingest on a new local Ray in this process, sampling its listening sockets; print them as JSON."""
    import ray

    folder = Path(folder)
    seen: set[tuple[str, int, int]] = set()
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.update(listening_sockets(os.getpid()))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        report = ingest(folder / "m.yaml", folder / "data", IngestConfig(), workers=1, progress=False)
        seen.update(listening_sockets(os.getpid()))
    finally:
        done.set()
        watcher.join()
        ray.shutdown()
    print(json.dumps({"ingested": report.outcome_counts()["ingested"], "sockets": sorted(seen)}))


def test_a_local_ray_ingest_listens_on_loopback_only(tmp_path):
    render_speaker(SpeakerSpec(seed=31, duration_s=2.2, width=320, height=256), tmp_path / "a.mp4")
    (tmp_path / "m.yaml").write_text(yaml.safe_dump([{"uri": "a.mp4", "tag": "interview"}]))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a new process starts its own local Ray
    child = subprocess.run([sys.executable, "-c", f"from tests.test_ray_loopback import ingest_and_watch; ingest_and_watch({str(tmp_path)!r})"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    seen = [tuple(s) for s in result["sockets"]]
    assert result["ingested"] == 1
    assert len({pid for _, _, pid in seen}) >= 3  # GCS, raylet and a worker at least were seen listening
    exposed = sorted(s for s in seen if not is_loopback(s[0]))
    assert not exposed, exposed
    assert 8265 not in {port for _, port, _ in seen}  # no dashboard
