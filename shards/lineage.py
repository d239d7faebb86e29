"""Lineage sidecars: ``clips-%06d.lineage.json`` beside each shard, answering "what produced this shard"
and — read together — "which shards and clips came from this source".

A sidecar records the shard's sha256, size, sample keys, each source's id, uri and clip spans, the code
version, the ingest configuration hash, scorer names and versions, the Prefect flow run id when a flow passes
it in (this module knows nothing of Prefect), the time, and parent shards for derived (resharded) shards.
"""

from __future__ import annotations

import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from shards.atomic import atomic_write_json, read_json
from shards.datadir import DamagedFile


def lineage_path(shard_path: str | os.PathLike) -> Path:
    shard_path = Path(shard_path)
    return shard_path.with_name(shard_path.name.removesuffix(".tar") + ".lineage.json")


def code_version() -> str:
    """``FADA_CODE_VERSION`` when set (container images), else the git commit (``+dirty`` for local changes),
    else the package version."""
    if os.environ.get("FADA_CODE_VERSION"):
        return os.environ["FADA_CODE_VERSION"]
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        pass
    from importlib.metadata import version

    return f"fada-pipeline {version('fada-pipeline')}"


def build_lineage(
    *, shard: str, sha256: str, size: int, records: list[dict], dataset_version: str, code_version: str,
    config_hash: str, scorers: dict[str, str], parents: list[str] | None = None, flow_run_id: str | None = None,
) -> dict:
    """``flow_run_id``: the Prefect flow run that wrote the shard, passed in by the flow (None outside one)."""
    sources: dict[str, dict] = {}
    for record in records:
        entry = sources.setdefault(record["source_id"], {"source_id": record["source_id"], "uri": record.get("source_uri"), "tag": record.get("source_tag"), "clips": []})
        entry["clips"].append({"key": record["key"], "start_s": record["start_s"], "end_s": record["end_s"], "status": record["status"]})
    return {
        "shard": shard,
        "sha256": sha256,
        "size": size,
        "n_samples": len(records),
        "keys": [r["key"] for r in records],
        "sources": sorted(sources.values(), key=lambda s: s["source_id"]),
        "dataset_version": dataset_version,
        "code_version": code_version,
        "config_hash": config_hash,
        "scorers": scorers,
        "flow_run_id": flow_run_id,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parents": parents or [],
    }


def write_lineage(data_dir: str | os.PathLike, doc: dict) -> Path:
    path = lineage_path(Path(data_dir) / doc["shard"])
    atomic_write_json(path, doc)
    return path


def shard_path_of(lineage_file: str | os.PathLike) -> Path:
    lineage_file = Path(lineage_file)
    return lineage_file.with_name(lineage_file.name.removesuffix(".lineage.json") + ".tar")


def read_lineage(path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> dict:
    """One lineage sidecar; a damaged one raises `DamagedFile` naming it."""
    try:
        doc = read_json(path)
    except ValueError as exc:  # invalid JSON or UTF-8
        raise DamagedFile(path, f"damaged lineage file ({exc})", data_dir) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list) or not isinstance(doc.get("sources"), list):
        raise DamagedFile(path, "damaged lineage file (not a lineage record)", data_dir)
    return doc


def lineage_files(data_dir: str | os.PathLike) -> list[Path]:
    return sorted(Path(data_dir).glob("shards/*/*.lineage.json"))


def iter_lineage(data_dir: str | os.PathLike) -> Iterator[dict]:
    """The lineage of every shard. A sidecar whose shard is missing (a publish killed between writing the
    lineage and renaming the shard into place) describes nothing and is skipped; the next writer removes it."""
    for path in lineage_files(data_dir):
        if shard_path_of(path).exists():
            yield read_lineage(path, data_dir)


def lookup(data_dir: str | os.PathLike, query: str) -> dict:
    """Answer a shard path/name, a source id (or its prefix, ≥ 8 chars), a source uri, or a clip key.

    Returns ``{"kind": "shard", "lineage": {...}}`` or ``{"kind": "source"|"key", "matches": [...]}``
    where each match names the shard, the source and the clip keys. Raises ``LookupError`` when nothing matches.
    """
    docs = list(iter_lineage(data_dir))
    for doc in docs:
        if query in (doc["shard"], Path(doc["shard"]).name, Path(doc["shard"]).stem):
            return {"kind": "shard", "lineage": doc}
    matches = []
    for doc in docs:
        for source in doc["sources"]:
            by_source = (len(query) >= 8 and source["source_id"].startswith(query)) or query == source["uri"]
            keys = [c["key"] for c in source["clips"] if by_source or c["key"] == query]
            if keys:
                matches.append({"shard": doc["shard"], "source_id": source["source_id"], "uri": source["uri"], "keys": keys})
    if not matches:
        raise LookupError(f"no shard, source or clip key matches {query!r} in {data_dir}")
    kind = "key" if any(query in m["keys"] for m in matches) else "source"
    return {"kind": kind, "matches": matches}
