"""The source ledger: one JSON record per source (by content hash) under ``DATA_DIR/sources/``.

A source whose record says ``done`` or ``rejected`` is never processed again; a renamed or re-listed
copy (same bytes, same sha256) only adds its URI to the record's aliases. ``failed`` sources (a task
crashed) are retried on the next run.

A source is (video sha256, sidecar sha256 or none); records are filed under the video's sha256 (clip keys
derive from it) and hold the sidecar's as ``audio_sha256``. A source rejected for its audio
(``AUDIO_REJECTIONS``) is processed again when listed with a sidecar of other bytes. Records written before
``audio_sha256`` existed read as having none.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from shards.atomic import atomic_write_json, read_json

FINAL_STATUSES = ("done", "rejected")
AUDIO_REJECTIONS = ("no_audio", "too_short", "sidecar_unreadable")  # filters.probe reasons a new sidecar can change


def source_record(*, source_id: str, uri: str, tag: str, audio_uri: str | None, audio_sha256: str | None,
                  license: str | None, size_bytes: int, status: str, reject_reason: str | None, detail: str,
                  probe: dict, usable_span_s: tuple[float, float] | None, clips: list[dict], config_hash: str,
                  code_version: str) -> dict:
    """The ledger record of one source: the one place its fields are defined. ``status`` is ``done``,
    ``rejected`` or ``failed``; ``clips`` are the source's clip records (kept and dropped), empty unless done;
    ``probe`` is `filters.probe.ProbeResult.to_dict`."""
    return {
        "source_id": source_id,
        "uri": uri,
        "aliases": [],
        "tag": tag,
        "audio_uri": audio_uri,
        "audio_sha256": audio_sha256,
        "license": license,
        "size_bytes": size_bytes,
        "status": status,
        "reject_reason": reject_reason,
        "detail": detail,
        "probe": probe,
        "usable_span_s": list(usable_span_s) if usable_span_s else None,
        "clip_keys": [r["key"] for r in clips],
        "clips_ok": sum(r["status"] == "ok" for r in clips),
        "clips_rejected": dict(Counter(r["reject_reason"] for r in clips if r["status"] != "ok")),
        "scorers": next((r["scorers"] for r in clips if r.get("scorers")), {}),
        "config_hash": config_hash,
        "code_version": code_version,
        "processed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


class SourceLedger:
    def __init__(self, data_dir: str | os.PathLike):
        self.root = Path(data_dir) / "sources"

    def path_for(self, source_id: str) -> Path:
        return self.root / f"{source_id}.json"

    def get(self, source_id: str) -> dict | None:
        path = self.path_for(source_id)
        return read_json(path) if path.exists() else None

    def is_final(self, source_id: str, audio_sha256: str | None = None, audio_listed: bool = False) -> bool:
        """True when the source needs no processing: done, or rejected for a reason its sidecar cannot change.

        The sidecar is ``audio_sha256`` (None when none is listed or it cannot be read) and whether one is
        listed at all, so listing a sidecar for a source rejected without one probes it again."""
        record = self.get(source_id)
        if record is None or record.get("status") not in FINAL_STATUSES:
            return False
        audio_changed = (record.get("audio_sha256"), record.get("audio_uri") is not None) != (audio_sha256, audio_listed)
        return not (record["status"] == "rejected" and record.get("reject_reason") in AUDIO_REJECTIONS and audio_changed)

    def write(self, record: dict) -> None:
        atomic_write_json(self.path_for(record["source_id"]), record)

    def add_alias(self, source_id: str, uri: str) -> bool:
        """Remember another URI for an already recorded source; True when it was new."""
        record = self.get(source_id)
        if record is None or uri == record.get("uri") or uri in record.get("aliases", []):
            return False
        record["aliases"] = sorted({*record.get("aliases", []), uri})
        self.write(record)
        return True

    def records(self) -> list[dict]:
        if not self.root.exists():
            return []
        return [read_json(path) for path in sorted(self.root.glob("[!.]*.json"))]  # not temporary files
