"""``fada verify`` and ``fada repair``: check a data dir's files against each other, and rebuild what can be
rebuilt from the shards.

`verify` reads everything (it hashes every shard) and takes no lock; it reports each problem with a
machine-readable kind and the file. `repair` holds the writer lock, removes leftovers of killed writes and
lineage whose shard never appeared, regenerates missing or damaged lineage from its shard, rebuilds the
catalog from the shards when any part is damaged or disagrees with them, publishes clips an interrupted
ingest committed but did not publish, removes reshard folders no view uses, and then verifies again.
What it cannot rebuild (a shard whose bytes no longer match its lineage, a damaged view) it reports.
`check_readable` is the quick check writers run before any work, so they stop before committing anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from shards.atomic import read_json
from shards.catalog import catalog_files, check_part, is_column_part, is_derived, rebuild_catalog
from shards.datadir import DamagedFile, temp_leftovers
from shards.ledger import SourceLedger
from shards.lineage import build_lineage, lineage_files, lineage_path, read_lineage, shard_path_of, write_lineage
from shards.lock import writer_lock
from shards.publish import publish_clips
from shards.sources import read_blocks

CATALOG_KINDS = ("damaged_catalog_part", "catalog_missing_key", "catalog_duplicate_key", "catalog_wrong_shard", "catalog_unknown_key")


@dataclass(frozen=True)
class Problem:
    kind: str
    path: str  # relative to the data dir
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}"


def check_readable(data_dir: str | os.PathLike) -> None:
    """Raise `DamagedFile` for the first lineage sidecar or catalog part (footer) that does not read."""
    for path in lineage_files(data_dir):
        if shard_path_of(path).exists():
            read_lineage(path, data_dir)
    for path in catalog_files(data_dir):
        try:
            pq.read_metadata(path)
        except (pa.ArrowException, OSError) as exc:
            raise DamagedFile(path, f"damaged catalog part ({exc})", data_dir) from exc


def _sha256_and_size(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for block in read_blocks(str(path)):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


def _member_keys(shard: Path) -> list[str]:
    """Sample keys in a shard, in order, each once (raises tarfile.TarError/OSError for a damaged tar)."""
    keys: list[str] = []
    with tarfile.open(shard) as tar:
        for member in tar:
            key = member.name.partition(".")[0]
            if not keys or keys[-1] != key:
                keys.append(key)
    return keys


class _Checker:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.problems: list[Problem] = []
        self.lineage: dict[str, dict] = {}  # shard (relative) → its readable lineage

    def add(self, kind: str, path: Path | str, detail: str) -> None:
        path = Path(path)
        relative = path.relative_to(self.data_dir) if path.is_absolute() else path
        self.problems.append(Problem(kind, str(relative), detail))

    def shards(self) -> dict[str, str]:
        """Check shards against lineage; returns key → shard for the published (non-derived) shards."""
        shard_of_key: dict[str, str] = {}
        for path in lineage_files(self.data_dir):
            if not shard_path_of(path).exists():
                self.add("orphan_lineage", path, "lineage of a shard that does not exist (a publish was killed before the rename)")
        for shard in sorted(self.data_dir.glob("shards/*/clips-*.tar")):
            relative = str(shard.relative_to(self.data_dir))
            sidecar = lineage_path(shard)
            if not sidecar.exists():
                self.add("missing_lineage", shard, f"no lineage file {sidecar.name}")
                doc = None
            else:
                try:
                    doc = read_lineage(sidecar, self.data_dir)
                except DamagedFile as exc:
                    self.add("damaged_lineage", sidecar, str(exc).split(": ", 1)[1])
                    doc = None
            sha, size = _sha256_and_size(shard)
            try:
                keys = _member_keys(shard)
            except (tarfile.TarError, OSError, EOFError) as exc:
                self.add("unreadable_shard", shard, f"{type(exc).__name__}: {exc}")
                continue
            if doc is not None:
                self.lineage[relative] = doc
                if (doc.get("sha256"), doc.get("size")) != (sha, size):
                    self.add("shard_hash_mismatch", shard, f"sha256 {sha[:12]}… size {size} but lineage says {str(doc.get('sha256'))[:12]}… size {doc.get('size')}")
                if sorted(doc["keys"]) != sorted(keys):
                    self.add("shard_members_mismatch", shard, f"members {len(keys)} keys, lineage {len(doc['keys'])} keys "
                             f"(only in tar: {sorted(set(keys) - set(doc['keys']))[:3]}, only in lineage: {sorted(set(doc['keys']) - set(keys))[:3]})")
            if is_derived(relative):
                continue
            for key in keys:
                if key in shard_of_key:
                    self.add("duplicate_key_in_shards", shard, f"key {key} is also in {shard_of_key[key]}")
                else:
                    shard_of_key[key] = relative
        return shard_of_key

    def catalog(self, shard_of_key: dict[str, str]) -> set[str]:
        """Check catalog rows against the shards; returns the catalogued keys."""
        tables = []
        for path in catalog_files(self.data_dir):
            try:
                check_part(path)
            except (pa.ArrowException, OSError) as exc:
                self.add("damaged_catalog_part", path, f"does not read ({str(exc)[:160]})")
                continue
            if is_column_part(path):  # a rescore's columns: checked to read, its keys come from the row parts
                continue
            tables.append(pq.read_table(path, columns=["key", "shard", "status", "source_id"]))
        rows = pa.concat_tables(tables).to_pylist() if tables else []
        seen: set[str] = set()
        for row in rows:
            key = row["key"]
            if key in seen:
                self.add("catalog_duplicate_key", "catalog", f"key {key} has more than one row")
            seen.add(key)
            if key not in shard_of_key:
                self.add("catalog_unknown_key", "catalog", f"key {key} is in no shard")
            elif row["status"] == "ok" and row["shard"] != shard_of_key[key]:
                self.add("catalog_wrong_shard", "catalog", f"key {key} points at {row['shard']} but lives in {shard_of_key[key]}")
        for key in sorted(set(shard_of_key) - seen):
            self.add("catalog_missing_key", shard_of_key[key], f"key {key} has no catalog row")
        self.catalog_sources = {row["source_id"] for row in rows}
        return seen

    def ledger(self, catalogued: set[str], queued: set[str]) -> None:
        ledger = SourceLedger(self.data_dir)
        done: set[str] = set()
        for path in sorted(ledger.root.glob("[!.]*.json")) if ledger.root.exists() else []:
            try:
                record = read_json(path)
            except ValueError as exc:
                self.add("damaged_ledger_record", path, str(exc))
                continue
            if record.get("status") != "done":
                continue
            done.add(record["source_id"])
            missing = [k for k in record.get("clip_keys", []) if k not in catalogued and k not in queued]
            if missing:
                self.add("ledger_key_not_catalogued", path, f"{len(missing)} clip key(s) of this source are in no catalog row, e.g. {missing[0]}")
        for source_id in sorted(self.catalog_sources - done - {None}):
            self.add("catalog_source_not_in_ledger", "catalog", f"source {source_id[:16]}… has catalog rows but no 'done' ledger record")

    def views(self) -> set[str]:
        names = set()
        for path in sorted((self.data_dir / "views").glob("[!.]*.json")):
            names.add(path.stem)
            try:
                view = read_json(path)
                shard_keys = view["shards"]
            except (ValueError, KeyError, TypeError) as exc:
                self.add("damaged_view", path, f"{type(exc).__name__}: {exc}")
                continue
            for shard, keys in shard_keys.items():
                doc = self.lineage.get(shard)
                if doc is None:
                    self.add("view_missing_shard", path, f"names {shard}, which is missing or has no readable lineage")
                    continue
                absent = sorted(set(keys) - set(doc["keys"]))
                if absent:
                    self.add("view_missing_key", path, f"{len(absent)} key(s) not in {shard}, e.g. {absent[0]}")
        for folder in sorted((self.data_dir / "shards").glob("view-*")):
            if folder.is_dir() and folder.name.removeprefix("view-") not in names:
                self.add("orphan_view_shards", folder, "resharded copies no view uses (a refilter was killed before writing its view)")
        return names

    def queue(self) -> set[str]:
        keys = {path.stem for path in (self.data_dir / "clips").glob("[!.]*/*.json")}
        if keys:
            self.add("unpublished_clips", "clips", f"{len(keys)} committed clip(s) not yet in shards (an interrupted ingest)")
        return keys

    def leftovers(self) -> None:
        for path in temp_leftovers(self.data_dir):
            self.add("temp_leftover", path, "temporary file of a killed write")


def verify(data_dir: str | os.PathLike) -> list[Problem]:
    """Every problem found in the data dir (empty when it is consistent)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"no data directory {data_dir}")
    checker = _Checker(data_dir)
    shard_of_key = checker.shards()
    catalogued = checker.catalog(shard_of_key)
    queued = checker.queue()
    checker.ledger(catalogued, queued)
    checker.views()
    checker.leftovers()
    return checker.problems


def regenerate_lineage(data_dir: Path, shard: Path) -> Path:
    """A lineage sidecar rebuilt from the shard's bytes and JSON members (marked ``regenerated``)."""
    records = []
    with tarfile.open(shard) as tar:
        for member in tar:
            if member.name.endswith(".json"):
                records.append(json.loads(tar.extractfile(member).read()))
    sha, size = _sha256_and_size(shard)
    relative = str(shard.relative_to(data_dir))
    first = records[0] if records else {}
    doc = build_lineage(shard=relative, sha256=sha, size=size, records=records, dataset_version=shard.parent.name,
                        code_version=first.get("code_version", ""), config_hash=first.get("config_hash", ""),
                        scorers=first.get("scorers", {}))
    doc["regenerated"] = True
    return write_lineage(data_dir, doc)


def repair(data_dir: str | os.PathLike, *, wait: float = 0.0) -> tuple[list[str], list[Problem]]:
    """Repair what can be rebuilt; returns (actions taken, problems left)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"no data directory {data_dir}")
    actions: list[str] = []
    with writer_lock(data_dir, wait=wait, command="repair") as holder:
        actions += [f"removed temporary leftover {p.relative_to(data_dir)}" for p in holder.get("removed", [])]
        problems = verify(data_dir)
        by_kind = defaultdict(list)
        for problem in problems:
            by_kind[problem.kind].append(problem)
        for problem in by_kind["orphan_lineage"]:
            (data_dir / problem.path).unlink()
            actions.append(f"removed lineage without a shard {problem.path}")
        for problem in by_kind["missing_lineage"] + by_kind["damaged_lineage"]:
            path = data_dir / problem.path
            shard = path if path.suffix == ".tar" else shard_path_of(path)
            try:
                written = regenerate_lineage(data_dir, shard)
            except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
                actions.append(f"could not regenerate the lineage of {shard.relative_to(data_dir)}: {exc}")
                continue
            actions.append(f"regenerated lineage {written.relative_to(data_dir)} from its shard")
        for problem in by_kind["orphan_view_shards"]:
            shutil.rmtree(data_dir / problem.path)
            actions.append(f"removed unused resharded copies {problem.path}")
        if any(by_kind[kind] for kind in CATALOG_KINDS):
            rebuild_catalog(data_dir)
            actions.append("rebuilt the catalog from the shards (catalog/part-000000.parquet)")
        if by_kind["unpublished_clips"]:
            versions = sorted(p.name for p in (data_dir / "shards").glob("*") if p.is_dir() and not is_derived(str(p / "clips.tar")))
            version = versions[-1] if len(versions) == 1 else "v1"
            written = publish_clips(data_dir, dataset_version=version)
            actions.append(f"published the clips an interrupted ingest left in clips/ into {len(written)} shard(s) of shards/{version}")
        left = verify(data_dir)
    return actions, left
