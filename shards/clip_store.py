"""Where ingested clips live before sharding: ``DATA_DIR/clips/<source sha[:16]>/<key>.{mp4,wav,json}``.

Workers write a source's clips under ``DATA_DIR/staging/<source sha>/`` with provisional names. When every
chunk of the source has finished, ``commit_source`` gives the clips their final keys (time order, rejected
clips included so every drop keeps a record), writes one JSON record per clip, and renames the folder
into place in one step: a source's clips appear all at once or not at all.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

from shards.atomic import atomic_write_json, read_json


def clip_key(source_id: str, clip_index: int) -> str:
    """Deterministic, dot-free WebDataset key: ``<source sha[:16]>_<clip index:05d>``."""
    return f"{source_id[:16]}_{clip_index:05d}"


class ClipStore:
    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = Path(data_dir)
        self.clips_root = self.data_dir / "clips"
        self.staging_root = self.data_dir / "staging"

    def staging_dir(self, source_id: str) -> Path:
        return self.staging_root / source_id

    def reset_staging(self, source_id: str) -> Path:
        """An empty staging folder for the source (leftovers of an interrupted run are discarded)."""
        folder = self.staging_dir(source_id)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder

    def source_dir(self, source_id: str) -> Path:
        return self.clips_root / source_id[:16]

    def commit_source(self, source_id: str, source_fields: dict, records: list[dict]) -> list[dict]:
        """Key, describe and publish a source's clips; returns the final records."""
        staging = self.staging_dir(source_id)
        building = self.clips_root / f".{source_id[:16]}.building"
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        final_records = []
        ordered = sorted(records, key=lambda r: (r["start_s"], r["chunk_index"]))
        for clip_index, record in enumerate(ordered):
            key = clip_key(source_id, clip_index)
            staged_name = record.pop("staged_name", None)
            record = {"key": key, **source_fields, **record}
            if staged_name is not None:
                os.replace(staging / f"{staged_name}.mp4", building / f"{key}.mp4")
                os.replace(staging / f"{staged_name}.wav", building / f"{key}.wav")
            atomic_write_json(building / f"{key}.json", record)
            final_records.append(record)
        target = self.source_dir(source_id)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(building, target)
        shutil.rmtree(staging, ignore_errors=True)
        return final_records

    def discard_staging(self, source_id: str) -> None:
        shutil.rmtree(self.staging_dir(source_id), ignore_errors=True)

    def remove_empty_staging(self) -> None:
        if self.staging_root.exists() and not any(self.staging_root.iterdir()):
            self.staging_root.rmdir()

    def iter_records(self) -> Iterator[dict]:
        """Every committed clip record, in key order."""
        if not self.clips_root.exists():
            return
        for folder in sorted(p for p in self.clips_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for path in sorted(folder.glob("*.json")):
                yield read_json(path)
