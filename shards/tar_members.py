"""The shards' one tar reader (`TarMembers`) and its skip counters (`ReaderStats`): unsafe keys and unknown
members are refused before their bytes are read, oversize members skipped unread, an unreadable tar's rest
skipped; every skip is counted under its reason and warned about (`SkippedSampleWarning`), never raised."""

from __future__ import annotations

import tarfile
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import partial

from shards.shard_writer import SAMPLE_EXTENSIONS, check_key

MAX_MEMBER_BYTES = 256 * 1024**2


class SkippedSampleWarning(UserWarning):
    """A sample or tar member was skipped; the reason is counted in `ReaderStats`."""


@dataclass
class ReaderStats:
    """Counts per skip reason plus ``samples`` and ``windows`` yielded, cumulative over epochs."""

    counts: Counter = field(default_factory=Counter)

    def skip(self, reason: str, what: str) -> None:
        """Count a skip under `reason` and warn (never raises)."""
        self.counts[reason] += 1
        warnings.warn(f"skipped {what}: {reason}", SkippedSampleWarning, stacklevel=2)

    def on_tar_error(self, exn: Exception) -> bool:
        """WebDataset exception handler: count an unreadable tar or member and keep going."""
        self.skip("unreadable_tar", f"{type(exn).__name__}: {exn}")
        return True


def member_key(name: str) -> tuple[str, str]:
    """Split a tar member name ``KEY.EXT`` at its last dot: a dot left in KEY makes the key unsafe."""
    key, _, extension = name.rpartition(".")
    return key, extension.lower()


class TarMembers:
    """The shards' tar reader: called on shard dicts ``{"url": path}``, it yields the members
    ``{fname, data, __url__}`` of the chosen keys (``keys_by_url``), each shard followed by an end marker
    ``{}``. A member is read only if its key is safe, its extension known and its key chosen; an oversize one
    is skipped unread; an unreadable tar's rest is skipped. Every skip is counted in ``stats``. The training
    reader, the rescore, resharding, the catalog rebuild and the evaluation read shards through it.

    ``keys_by_url[url]`` None chooses every key; ``extensions`` limits what is read (others are passed unread
    and uncounted: e.g. the catalog rebuild reads only the records)."""

    def __init__(self, keys_by_url: dict[str, frozenset | None], stats: ReaderStats, max_member_bytes: int = MAX_MEMBER_BYTES,
                 extensions: tuple[str, ...] = SAMPLE_EXTENSIONS):
        self.keys_by_url, self.stats, self.max_member_bytes = keys_by_url, stats, max_member_bytes
        self.extensions = extensions

    def __call__(self, shards):
        for shard in shards:
            url = shard["url"]
            select = partial(self._wanted, keys=self.keys_by_url[url], url=url)
            try:
                with open(url, "rb") as stream:
                    yield from self._read(stream, url, select)
            except (OSError, EOFError, tarfile.TarError) as exn:  # the samples read so far are checked downstream
                self.stats.skip("unreadable_tar", f"rest of {url} ({type(exn).__name__}: {exn})")
            yield {}

    def _read(self, stream, url: str, select):
        """The wanted regular members of a tar stream, each read once; oversize ones are skipped unread."""
        tar = tarfile.open(fileobj=stream, mode="r|*")
        for info in tar:
            if not info.isreg() or not select(info.name):
                continue
            if info.size > self.max_member_bytes:
                self.stats.skip("oversize_member", f"member {info.name!r} of {url} ({info.size} bytes > {self.max_member_bytes})")
                continue
            yield {"fname": info.name, "data": tar.extractfile(info).read(), "__url__": url}
            tar.members = []  # a stream holds no index of what it has passed

    def _wanted(self, name: str, *, keys: frozenset | None, url: str) -> bool:
        key, extension = member_key(name)
        try:
            check_key(key)
        except ValueError:
            self.stats.skip("unsafe_key", f"member {name!r} of {url}")
            return False
        if extension not in SAMPLE_EXTENSIONS:
            self.stats.skip("unknown_member", f"member {name!r} of {url}")
            return False
        return extension in self.extensions and (keys is None or key in keys)


def read_shard(url: str, keys: frozenset | None, stats: ReaderStats,
               extensions: tuple[str, ...] = SAMPLE_EXTENSIONS) -> dict[str, dict[str, bytes]]:
    """The chosen samples (``keys``; None: all) of one shard through `TarMembers`, by key and extension."""
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    for member in TarMembers({url: keys}, stats, extensions=extensions)([{"url": url}]):
        if member:
            key, extension = member_key(member["fname"])
            samples[key][extension] = member["data"]
    return dict(samples)
