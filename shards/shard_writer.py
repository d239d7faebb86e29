"""WebDataset shard writer: ``clips-%06d.tar`` files of ``KEY.mp4``, ``KEY.wav``, ``KEY.json`` samples.

Shards are bounded by sample count and bytes (defaults: 1000 samples, 1 GiB — a few minutes of streaming
per shard, large enough to keep object-store requests cheap). Each shard is written under a hidden
temporary name and renamed when complete (after ``on_close``, so its lineage is there first), so a reader
never sees a partial shard. Tar members are written
deterministically (sorted, mtime 0, root-owned, read-only), so the same samples give byte-identical shards.
The destination is any fsspec URL; a local directory by default.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from dataclasses import dataclass, field
from typing import Callable

import fsspec

from shards.crashpoints import crash_point

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
SAMPLE_EXTENSIONS = ("json", "mp4", "wav")
SHARD_PATTERN = "clips-%06d.tar"


def check_key(key: str) -> str:
    """Keys are dot-free (WebDataset splits on the first dot) and cannot name a path."""
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise ValueError(f"unsafe sample key {key!r}: keys must match {KEY_PATTERN.pattern} (no dots, slashes or '..')")
    return key


@dataclass
class ShardInfo:
    name: str  # file name inside the shard folder, e.g. clips-000003.tar
    url: str
    sha256: str = ""
    size: int = 0
    keys: list[str] = field(default_factory=list)


class _HashingWriter(io.RawIOBase):
    """A write-only file wrapper that hashes and counts what passes through."""

    def __init__(self, target):
        self.target, self.digest, self.size = target, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, data) -> int:
        self.target.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)


class ShardWriter:
    def __init__(
        self,
        folder_url: str,
        *,
        start_index: int = 0,
        max_count: int = 1000,
        max_bytes: int = 1 << 30,
        on_close: Callable[[ShardInfo], None] | None = None,
    ):
        self.fs, self.folder = fsspec.core.url_to_fs(str(folder_url))
        self.fs.makedirs(self.folder, exist_ok=True)
        self.folder_url = str(folder_url).rstrip("/")
        self.index = start_index
        self.max_count, self.max_bytes = max_count, max_bytes
        self.on_close = on_close
        self.written: list[ShardInfo] = []
        self._tar = self._file = self._hasher = self._info = None

    def add(self, key: str, files: dict[str, bytes]) -> None:
        check_key(key)
        unknown = sorted(set(files) - set(SAMPLE_EXTENSIONS))
        if unknown:
            raise ValueError(f"sample {key}: unexpected member type(s) {unknown}; allowed {SAMPLE_EXTENSIONS}")
        sample_bytes = sum(len(data) for data in files.values())
        if self._tar is not None and (len(self._info.keys) >= self.max_count or self._hasher.size + sample_bytes > self.max_bytes):
            self._finish()
        if self._tar is None:
            self._start()
        for extension in sorted(files):
            member = tarfile.TarInfo(f"{key}.{extension}")
            member.size, member.mtime, member.mode = len(files[extension]), 0, 0o444
            member.uname = member.gname = "root"
            self._tar.addfile(member, io.BytesIO(files[extension]))
        self._info.keys.append(key)
        crash_point("shard_member_written")

    def _start(self) -> None:
        name = SHARD_PATTERN % self.index
        self._info = ShardInfo(name=name, url=f"{self.folder_url}/{name}")
        self._tmp_path = f"{self.folder}/.{name}.tmp"
        self._file = self.fs.open(self._tmp_path, "wb")
        self._hasher = _HashingWriter(self._file)
        self._tar = tarfile.open(fileobj=self._hasher, mode="w", format=tarfile.USTAR_FORMAT)

    def _finish(self) -> None:
        """Complete the shard: ``on_close`` runs while it is still under its temporary name (publish writes
        its lineage then), and the rename makes it visible last — a visible shard always has its lineage."""
        self._tar.close()
        self._file.close()
        self._info.sha256, self._info.size = self._hasher.digest.hexdigest(), self._hasher.size
        crash_point("shard_closed")
        if self.on_close is not None:
            self.on_close(self._info)
        crash_point("shard_before_rename")
        self.fs.mv(self._tmp_path, f"{self.folder}/{self._info.name}")
        crash_point("shard_renamed")
        self.written.append(self._info)
        self.index += 1
        self._tar = self._file = self._hasher = self._info = None

    def close(self) -> list[ShardInfo]:
        if self._tar is not None:
            self._finish()
        return self.written

    def abort(self) -> None:
        """Drop the shard being written (an error happened): nothing partial stays visible."""
        if self._tar is not None:
            self._file.close()
            self.fs.rm(self._tmp_path)
            self._tar = self._file = self._hasher = self._info = None

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
