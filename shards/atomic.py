"""Atomic file writes: write to a temporary name beside the target, then rename.

A reader never sees a half-written file: either the old content (or nothing) or the complete new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


def current_umask() -> int:
    """The process umask (read from /proc without changing it where possible)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(final_path: str | os.PathLike, suffix: str | None = None, *, exclusive: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it over ``final_path`` on success.

    The temporary name starts with a dot and keeps the final extension (encoders pick the container
    from it); `shards.datadir` recognises it as a leftover when the writer is killed. The file gets the
    permissions of any new file (0666 less the umask), not mkstemp's 0600. On an exception the temporary
    file is removed and the target is left untouched. ``exclusive``: never replace an existing target
    (FileExistsError) — for immutable files such as views.
    """
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    suffix = final_path.suffix if suffix is None else suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final_path.stem}.", suffix=f".tmp{suffix}", dir=final_path.parent)
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())
        if exclusive:
            os.link(tmp_path, final_path)  # fails when the target exists, atomically
        else:
            os.replace(tmp_path, final_path)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(final_path: str | os.PathLike, data: bytes, *, exclusive: bool = False) -> None:
    with atomic_path(final_path, exclusive=exclusive) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_json(final_path: str | os.PathLike, obj: Any, *, exclusive: bool = False) -> None:
    atomic_write_bytes(final_path, (json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n").encode(), exclusive=exclusive)


def read_json(path: str | os.PathLike) -> Any:
    with open(path, "rb") as fh:
        return json.loads(fh.read())
