"""Source manifests: which raw videos to ingest, and how each source is identified.

A manifest is YAML (a list of rows, or ``{"sources": [...]}``), CSV or parquet with the columns
``uri`` (required), ``tag`` (required), ``audio_uri`` (optional sidecar audio) and ``license`` (optional).
URIs are local paths (relative ones resolve against the manifest's folder) or any fsspec URL.
A source is identified by the sha256 of its bytes, so a renamed copy is the same source.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import fsspec
import yaml

MANIFEST_COLUMNS = ("uri", "tag", "audio_uri", "license")
REQUIRED_COLUMNS = ("uri", "tag")
HASH_BLOCK_BYTES = 1 << 20


class ManifestError(ValueError):
    """The manifest cannot be used as written; the message names the row and the problem."""


@dataclass(frozen=True)
class SourceSpec:
    uri: str
    tag: str
    audio_uri: str | None = None
    license: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def load_manifest(path: str | os.PathLike) -> list[SourceSpec]:
    """Read a manifest file into validated source specs (rows in file order)."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"manifest not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        rows = _yaml_rows(path)
    elif suffix == ".csv":
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        raise ManifestError(f"{path}: unknown manifest format {suffix!r} (use .yaml, .csv or .parquet)")
    return [_row_to_spec(row, index, path.parent) for index, row in enumerate(rows, start=1)]


def _yaml_rows(path: Path) -> list[dict]:
    with open(path) as fh:
        doc = yaml.safe_load(fh)
    if isinstance(doc, dict) and "sources" in doc:
        doc = doc["sources"]
    if not isinstance(doc, list):
        raise ManifestError(f"{path}: expected a list of sources or a mapping with a 'sources' list")
    return doc


def _row_to_spec(row: object, index: int, base_dir: Path) -> SourceSpec:
    if not isinstance(row, dict):
        raise ManifestError(f"row {index}: expected a mapping with {REQUIRED_COLUMNS}, got {type(row).__name__}")
    unknown = sorted(set(row) - set(MANIFEST_COLUMNS))
    if unknown:
        raise ManifestError(f"row {index}: unknown column(s) {unknown}; allowed: {list(MANIFEST_COLUMNS)}")
    values = {key: _clean(row.get(key)) for key in MANIFEST_COLUMNS}
    for key in REQUIRED_COLUMNS:
        if values[key] is None:
            raise ManifestError(f"row {index}: missing required column {key!r}")
    values["uri"] = _resolve(values["uri"], base_dir)
    if values["audio_uri"] is not None:
        values["audio_uri"] = _resolve(values["audio_uri"], base_dir)
    return SourceSpec(**values)


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _resolve(uri: str, base_dir: Path) -> str:
    """Relative local paths resolve against the manifest's folder; URLs stay as they are."""
    if "://" in uri:
        return uri
    local = Path(uri).expanduser()
    return str(local if local.is_absolute() else (base_dir / local).resolve())


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def source_sha256(uri: str) -> str:
    """sha256 of the source's bytes, streamed in 1 MiB blocks through fsspec."""
    digest = hashlib.sha256()
    with fsspec.open(uri, "rb") as fh:
        for block in iter(lambda: fh.read(HASH_BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """A local filesystem path for ``uri``: the path itself when local, else a temporary download."""
    if is_local(uri):
        yield uri.removeprefix("file://")
        return
    suffix = Path(uri.split("?", 1)[0]).suffix
    with tempfile.TemporaryDirectory(prefix="fada-src-") as tmp_dir:
        local = Path(tmp_dir) / f"source{suffix}"
        with fsspec.open(uri, "rb") as src, open(local, "wb") as dst:
            for block in iter(lambda: src.read(HASH_BLOCK_BYTES), b""):
                dst.write(block)
        yield str(local)
