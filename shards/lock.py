"""One writer at a time per data directory: ``DATA_DIR/.writer.lock``.

Every command or flow that writes into a data dir — ingest/publish, refilter (and its reshard), the test
split, repair, and any future writer such as a rescore — runs inside ``writer_lock(data_dir)``. Readers
(training, ``fada lineage``, ``fada verify``) never take it: every file becomes visible by an atomic rename,
so a reader sees the state before or after a write, never half of one.

The lock is an exclusive ``flock`` on the lock file, which also names its holder as JSON (host, pid, start
time, command) for the message a waiting writer prints. The kernel drops a ``flock`` when its holder dies
(even by ``kill -9``), so a lock left by a dead process is simply taken over; the new holder says whose it
was. Within one thread the lock is re-entrant (an ingest's publish, a refilter's reshard); two threads of
one process (Prefect tasks) exclude each other like two processes. When it is held,
a second writer waits up to ``wait`` seconds, then raises `LockHeld` naming the holder (the CLI exits 2).

On acquiring, the holder removes the temporary files killed writers left (`shards.datadir.temp_leftovers`):
only a writer may, since a live writer's temporary files have the same names.

Shared storage (see infra/README.md): on a local disk and on NFSv4 (where Linux maps ``flock`` onto NFS
byte-range locks, released when a crashed client's lease expires) the lock excludes writers on all hosts.
It cannot work on object stores (no locks, no atomic rename): a data dir lives on a POSIX file system.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from shards.datadir import remove_temp_leftovers

LOCK_NAME = ".writer.lock"
_POLL_S = 0.2
_held: dict[tuple[Path, int], list] = {}  # (data dir, thread) → [fd, depth]: the locks this process holds
_held_guard = threading.Lock()


class LockHeld(RuntimeError):
    """Another process writes into the data dir; the message names it."""


def lock_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / LOCK_NAME


def describe_holder(holder: dict | None) -> str:
    if not holder:
        return "an unknown process"
    return f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('command')}, since {holder.get('started_at')})"


def read_holder(data_dir: str | os.PathLike) -> dict | None:
    """The holder the lock file names (the last one, when nobody holds it now)."""
    try:
        return json.loads(lock_path(data_dir).read_text() or "null")
    except (OSError, ValueError):
        return None


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


@contextlib.contextmanager
def writer_lock(data_dir: str | os.PathLike, *, wait: float = 0.0, command: str | None = None) -> Iterator[dict]:
    """Hold the data dir's writer lock for the ``with`` block; yields this holder's record, with the
    temporary leftovers it removed under ``"removed"``.

    ``wait``: seconds to wait for another writer (a message is printed to stderr once), then `LockHeld`.
    """
    folder = Path(data_dir).resolve()
    key = (folder, threading.get_ident())
    with _held_guard:
        reentered = key in _held
        if reentered:
            _held[key][1] += 1
    if reentered:
        try:
            yield read_holder(folder) or {}
        finally:
            with _held_guard:
                _held[key][1] -= 1
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(folder), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline, told = time.monotonic() + max(0.0, wait), False
        while not _try_flock(fd):
            holder = read_holder(folder)
            if time.monotonic() >= deadline:
                raise LockHeld(f"{folder} is being written by {describe_holder(holder)}; "
                               f"try again later or wait for it with --wait SECONDS")
            if not told:
                print(f"waiting up to {wait:g} s for {describe_holder(holder)} to finish writing {folder}", file=sys.stderr)
                told = True
            time.sleep(_POLL_S)
        previous = read_holder(folder)
        if previous and previous.get("released_at") is None:
            print(f"note: took over the writer lock of {folder} left by {describe_holder(previous)}, which ended without releasing it", file=sys.stderr)
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "command": command or " ".join(sys.argv[:2]),
                  "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "released_at": None}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        with _held_guard:
            _held[key] = [fd, 1]
        try:
            yield {**holder, "removed": remove_temp_leftovers(folder)}
        finally:
            with _held_guard:
                del _held[key]
            holder["released_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
    finally:
        os.close(fd)  # closing the descriptor releases the flock

