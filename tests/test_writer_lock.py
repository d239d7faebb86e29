"""One writer per data dir, with real processes: a held lock names its holder (exit 2, or --wait), a killed
holder's lock is taken over, two refilters of one name write one view, concurrent publishes do not mix, the
next writer removes killed writes' temporary files, and every file honours the umask."""

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading

import pytest

from shards.integrity import verify
from shards.lock import LockHeld, read_holder, writer_lock
from tests.datadir_factory import REPO, catalog_keys, fada, make_data_dir, shard_keys

pytestmark = pytest.mark.slow


def hold_lock(data_dir, seconds: float) -> subprocess.Popen:
    """A process that takes the writer lock, says so on stdout, and keeps it ``seconds`` or until a line
    arrives on its stdin."""
    code = textwrap.dedent(f"""
        import select, sys
        from shards.lock import writer_lock
        with writer_lock({str(data_dir)!r}, command="test holder"):
            print("held", flush=True)
            select.select([sys.stdin], [], [], {seconds})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def data_dir(tmp_path):
    return make_data_dir(tmp_path / "data")


def test_a_second_writer_exits_2_naming_the_holder_or_waits_for_it(data_dir):
    holder = hold_lock(data_dir, 600)
    try:
        refused = fada("refilter", data_dir, "--name", "a", "--profile", "lenient")
        assert refused.returncode == 2 and f"pid {holder.pid}" in refused.stderr and "test holder" in refused.stderr
        assert "--wait" in refused.stderr and not (data_dir / "views" / "a.json").exists()
        (data_dir.parent / "m.yaml").write_text("- {uri: a.mp4, tag: news}\n")
        for command in (["ingest", data_dir.parent / "m.yaml", "--out", data_dir, "--workers", "0"], ["split", data_dir], ["repair", data_dir]):
            other = fada(*command)
            assert other.returncode == 2 and f"pid {holder.pid}" in other.stderr, (command, other.stderr[-1000:])
        waiter = subprocess.Popen([sys.executable, "-m", "flows.cli", "refilter", str(data_dir), "--name", "a", "--profile", "lenient",
                                   "--wait", "300"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        told = waiter.stderr.readline()
        assert f"waiting up to 300 s for pid {holder.pid}" in told
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert waiter.wait() == 0, waiter.stderr.read()
        assert (data_dir / "views" / "a.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_writer_is_taken_over(data_dir):
    holder = hold_lock(data_dir, 600)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert read_holder(data_dir)["pid"] == holder.pid  # the file still names the dead holder
    with writer_lock(data_dir) as me:
        assert me["pid"] == os.getpid()
        assert read_holder(data_dir)["pid"] == os.getpid()


def test_the_lock_is_reentrant_in_a_thread_and_exclusive_across_threads_and_processes(data_dir):
    with writer_lock(data_dir):
        with writer_lock(data_dir):  # publish inside ingest, reshard inside refilter
            pass
        other_thread: list = []

        def try_lock():
            try:
                with writer_lock(data_dir, wait=0.3):
                    other_thread.append("acquired")
            except LockHeld as exc:
                other_thread.append(exc)

        thread = threading.Thread(target=try_lock)
        thread.start()
        thread.join()
        assert isinstance(other_thread[0], LockHeld)  # Prefect tasks in threads of one process exclude each other
        probe = subprocess.run([sys.executable, "-c", f"from shards.lock import writer_lock\nwith writer_lock({str(data_dir)!r}): pass"],
                               cwd=REPO, capture_output=True, text=True)
        assert probe.returncode != 0 and "LockHeld" in probe.stderr and f"pid {os.getpid()}" in probe.stderr
    with pytest.raises(LockHeld):
        holder = hold_lock(data_dir, 30)
        try:
            with writer_lock(data_dir, wait=0.5):
                pass
        finally:
            holder.kill()
            holder.wait()


def _refilter_pair(data_dir, first: list[str], second: list[str]) -> tuple:
    base = [sys.executable, "-m", "flows.cli", "refilter", str(data_dir), "--wait", "300"]
    procs = [subprocess.Popen(base + extra, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for extra in (first, second)]
    return tuple((p.wait(), *p.communicate()) for p in procs)


def test_two_refilters_of_one_name_write_one_view(data_dir):
    (code_a, out_a, err_a), (code_b, out_b, err_b) = _refilter_pair(
        data_dir, ["--name", "x", "--profile", "strict", "--reshard-below", "0.9"],
        ["--name", "x", "--profile", "lenient", "--reshard-below", "0.9"])
    assert sorted([code_a, code_b]) == [0, 2], (err_a, err_b)
    loser_err = err_a if code_a == 2 else err_b
    assert "already exists with other thresholds" in loser_err
    view = json.loads((data_dir / "views" / "x.json").read_text())
    assert view["profile"]["name"] == ("strict" if code_a == 0 else "lenient")
    assert verify(data_dir) == []  # resharded copies match their lineage; the view's keys exist
    (code_a, _, _), (code_b, out_b, _) = _refilter_pair(data_dir, ["--name", "y", "--profile", "lenient"], ["--name", "y", "--profile", "lenient"])
    assert (code_a, code_b) == (0, 0)


def test_concurrent_publishes_serialise_without_mixing_shards(tmp_path):
    data_dir = tmp_path / "data"
    code = textwrap.dedent("""
        import sys
        from pathlib import Path
        from shards.publish import ShardLimits, publish_clips
        from shards.lock import writer_lock
        from tests.datadir_factory import commit_sources
        data_dir, first = Path(sys.argv[1]), int(sys.argv[2])
        with writer_lock(data_dir, wait=300):  # committing into clips/ is a write too
            commit_sources(data_dir, [first, first + 1])
            publish_clips(data_dir, limits=ShardLimits(max_count=3))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(data_dir), str(first)], cwd=REPO) for first in (0, 2, 4)]
    assert [p.wait() for p in procs] == [0, 0, 0]
    keys = shard_keys(data_dir)
    assert len(keys) == len(set(keys)) == 6 * 5 and catalog_keys(data_dir) == sorted(keys)
    assert verify(data_dir) == []


def test_the_next_writer_removes_only_recognisable_temporary_files(data_dir):
    leftovers = [data_dir / "catalog" / ".part-000009.x1y2z3_a.tmp.parquet", data_dir / "shards" / "v1" / ".clips-000042.tar.tmp",
                 data_dir / "views" / ".strict.abcdefgh.tmp.json"]
    keep = [data_dir / "views" / "notes.tmp", data_dir / "catalog" / "part-000099.parquet.bak"]
    for path in leftovers + keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    assert {p.kind for p in verify(data_dir)} == {"temp_leftover"}
    with writer_lock(data_dir) as holder:
        assert sorted(holder["removed"]) == sorted(leftovers)
    assert not any(p.exists() for p in leftovers) and all(p.exists() for p in keep)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_every_file_a_run_writes_honours_the_umask(tmp_path, umask):
    code = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        os.umask({umask})
        from filters.profiles import load_profile
        from shards.views import refilter
        from shards.splits import write_test_view
        from tests.datadir_factory import make_data_dir
        data_dir = make_data_dir(Path(sys.argv[1]), n_sources=4)
        refilter(data_dir, load_profile("lenient"), "lenient", reshard_below=0.9)
        write_test_view(data_dir, "test")
    """)
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "data")], cwd=REPO, check=True)
    files = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    kinds = {p.relative_to(tmp_path / "data").parts[0] for p in files}
    assert {"catalog", "shards", "sources", "views"} <= kinds
    modes = {str(p.relative_to(tmp_path / "data")): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert set(modes.values()) == {0o666 & ~umask}, modes
