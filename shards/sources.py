"""Source manifests: which raw videos to ingest, and how each source is identified.

A manifest is YAML (a list of rows, or ``{"sources": [...]}``), CSV or parquet with the columns
``uri`` (required), ``tag`` (required), ``audio_uri`` (optional sidecar audio) and ``license`` (optional).
URIs are local paths (relative ones resolve against the manifest's folder) or any fsspec URL.
A source is identified by the sha256 of its bytes, so a renamed copy is the same source.
"""

from __future__ import annotations

import csv
import hashlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import fsspec
import yaml

MANIFEST_COLUMNS = ("uri", "tag", "audio_uri", "license")
REQUIRED_COLUMNS = ("uri", "tag")
HASH_BLOCK_BYTES = 1 << 20


class InputFileError(ValueError):
    """A user's file (manifest, configuration) cannot be used as written; the message names the file and the
    line, row or key."""


class ManifestError(InputFileError):
    """The manifest cannot be used as written; the message names the row and the problem."""


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def read_yaml(path: str | os.PathLike, error: type[InputFileError] = InputFileError) -> object:
    """``yaml.safe_load`` of a file; undecodable bytes or bad YAML raise ``error`` naming the file and line."""
    data = Path(path).read_bytes()
    try:
        return yaml.safe_load(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise error(f"{path}: line {_line_of(data, exc.start)}: not UTF-8 text ({exc.reason})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{path}: {where}: invalid YAML ({problem})") from exc


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
        rows = _csv_rows(path)
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise ManifestError(f"{path}: not a readable parquet file ({exc})") from exc
    else:
        raise ManifestError(f"{path}: unknown manifest format {suffix!r} (use .yaml, .csv or .parquet)")
    specs = []
    for index, row in enumerate(rows, start=1):
        try:
            specs.append(_row_to_spec(row, index, path.parent))
        except ManifestError as exc:
            raise ManifestError(f"{path}: {exc}") from exc
    return specs


def _csv_rows(path: Path) -> list[dict]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: line {_line_of(data, exc.start)}: not UTF-8 text ({exc.reason})") from exc
    reader = csv.DictReader(text.splitlines(keepends=True), strict=True)
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise ManifestError(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from exc
    for row in rows:
        if None in row:  # more fields than the header names
            raise ManifestError(f"{path}: line {reader.line_num}: more fields than the header {reader.fieldnames}")
    return rows


def _yaml_rows(path: Path) -> list[dict]:
    doc = read_yaml(path, ManifestError)
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
    values = {key: _clean(row.get(key), index, key) for key in MANIFEST_COLUMNS}
    for key in REQUIRED_COLUMNS:
        if values[key] is None:
            raise ManifestError(f"row {index}: missing required column {key!r}")
    values["uri"] = _resolve(values["uri"], base_dir)
    if values["audio_uri"] is not None:
        values["audio_uri"] = _resolve(values["audio_uri"], base_dir)
    return SourceSpec(**values)


def _clean(value: object, index: int, key: str) -> str | None:
    """A manifest value as text: strings, and numbers for ``tag``/``license``; anything else is refused."""
    if value is None:
        return None
    numbers_allowed = key in ("tag", "license") and isinstance(value, (int, float)) and not isinstance(value, bool)
    if not isinstance(value, str) and not numbers_allowed:
        raise ManifestError(f"row {index}: key {key!r} must be text, got {type(value).__name__} {value!r}")
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


def read_blocks(uri: str) -> Iterator[bytes]:
    """The bytes of ``uri`` in 1 MiB blocks, streamed through fsspec: the one reader behind hashing and fetching."""
    with fsspec.open(uri, "rb") as fh:
        yield from iter(lambda: fh.read(HASH_BLOCK_BYTES), b"")


def source_sha256(uri: str) -> str:
    """sha256 of the source's bytes."""
    digest = hashlib.sha256()
    for block in read_blocks(uri):
        digest.update(block)
    return digest.hexdigest()


def fetch_to_cache(uri: str, cache_dir: str | os.PathLike) -> tuple[str, str]:
    """Copy a remote URI into ``cache_dir`` under its sha256 (a temporary name until complete); returns
    (sha256, local path)."""
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    tmp = Path(cache_dir) / f".download-{os.getpid()}-{time.monotonic_ns()}"
    with open(tmp, "wb") as dst:
        for block in read_blocks(uri):
            digest.update(block)
            dst.write(block)
    sha = digest.hexdigest()
    final = Path(cache_dir) / f"{sha}{Path(uri.split('?', 1)[0]).suffix}"
    os.replace(tmp, final)
    return sha, str(final)


def identify(uri: str | None, cache_dir: str | os.PathLike) -> tuple[str | None, str | None]:
    """(sha256, local path) of a source file: a local one is hashed where it lies, a remote one fetched into
    ``cache_dir``; (None, None) for no URI."""
    if uri is None:
        return None, None
    if is_local(uri):
        path = uri.removeprefix("file://")
        return source_sha256(path), path
    return fetch_to_cache(uri, cache_dir)
