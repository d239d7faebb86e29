"""What a data dir holds besides its content: the temporary names of unfinished writes, and the error for a
damaged file.

Layout (DESIGN.md §2): ``shards/<version>/clips-%06d.tar`` with ``clips-%06d.lineage.json`` beside each,
``catalog/part-%06d.parquet``, ``sources/<sha>.json`` (the ledger), ``views/<name>.json``, ``clips/`` (the
publish queue), ``staging/`` and ``cache/`` (ingest work space), ``runs/`` (run reports) and ``.writer.lock``
(`shards.lock`).

Every write goes through a temporary name, then a rename. A killed writer leaves its temporary file behind;
the names below are only ever used for that, so the next lock holder removes them (`remove_temp_leftovers`).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

TEMP_FILE_PATTERNS = (
    re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$"),  # shards.atomic.atomic_path (mkstemp)
    re.compile(r"^\.clips-\d{6}\.tar\.tmp$"),  # shards.shard_writer.ShardWriter
    re.compile(r"^\.download-\d+-\d+$"),  # shards.sources.fetch_to_cache
)
TEMP_DIR_PATTERNS = (
    re.compile(r"^\.catalog\.(rebuild|old)$"),  # shards.catalog.rebuild_catalog
    re.compile(r"^\.[0-9a-f]{16}\.building$"),  # shards.clip_store.ClipStore.commit_source
)


class DamagedFile(ValueError):
    """A data dir file that cannot be read; the message names it and points at ``fada repair``."""

    def __init__(self, path: str | os.PathLike, problem: str, data_dir: str | os.PathLike | None = None):
        self.path = Path(path)
        where = data_dir if data_dir is not None else "DATA_DIR"
        problem = " ".join(problem.split())  # one line, whatever the underlying error printed
        super().__init__(f"{self.path}: {problem}; run `fada repair {where}` to rebuild it")


def is_temp_name(name: str, is_dir: bool) -> bool:
    patterns = TEMP_DIR_PATTERNS if is_dir else TEMP_FILE_PATTERNS
    return any(pattern.match(name) for pattern in patterns)


def temp_leftovers(data_dir: str | os.PathLike) -> list[Path]:
    """Temporary files and folders of unfinished writes, and the per-source staging folders of an
    interrupted ingest."""
    data_dir = Path(data_dir)
    found = []
    for root, dirs, files in os.walk(data_dir):
        for name in list(dirs):
            if is_temp_name(name, True):
                found.append(Path(root) / name)
                dirs.remove(name)
        found += [Path(root) / name for name in files if is_temp_name(name, False)]
    staging = data_dir / "staging"
    if staging.is_dir():
        found += sorted(p for p in staging.iterdir() if p.is_dir())
    return sorted(found)


def remove_temp_leftovers(data_dir: str | os.PathLike) -> list[Path]:
    """Remove `temp_leftovers`; only the writer-lock holder may (`shards.lock.writer_lock` does on acquiring)."""
    removed = temp_leftovers(data_dir)
    for path in removed:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return removed
