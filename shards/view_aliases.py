"""Stable names for immutable views.

A view never changes once written, so each catalog snapshot gets its own (``strict-<digest>``). An **alias**
(``views/aliases/<alias>.json``) is a movable name that points at one of them: dataset-refresh moves
``strict`` and ``lenient`` to the newest snapshot's views, so a form or a command can say ``strict`` and get
the freshest selection, while a training run resolves the alias once at its start and records the immutable
view it actually read (`resolve_view_name`). The alias file keeps the history of its targets for audit.

A real view wins over an alias of the same name: data directories made before aliases existed may hold an
immutable view called ``strict``; then that name cannot become an alias (`set_alias` says so).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path

from filters.profiles import PROFILE_DIR, Profile, load_profile
from shards.atomic import atomic_write_json, read_json
from shards.lock import writer_lock
from shards.views import ViewError, catalog_snapshot, refilter, view_path


def alias_path(data_dir: str | os.PathLike, alias: str) -> Path:
    view_path(data_dir, alias)  # same naming rule as views
    return Path(data_dir) / "views" / "aliases" / f"{alias}.json"


def read_alias(data_dir: str | os.PathLike, alias: str) -> dict | None:
    path = alias_path(data_dir, alias)
    return read_json(path) if path.is_file() else None


def set_alias(data_dir: str | os.PathLike, alias: str, view_name: str) -> dict:
    """Point ``alias`` at the existing view ``view_name`` (under the data dir's writer lock); returns the alias
    document (unchanged when it already points there)."""
    with writer_lock(data_dir, command=f"alias {alias}"):
        return _set_alias(data_dir, alias, view_name)


def _set_alias(data_dir: str | os.PathLike, alias: str, view_name: str) -> dict:
    if not view_path(data_dir, view_name).is_file():
        raise ViewError(f"alias {alias!r}: no view {view_name!r} to point at")
    if view_path(data_dir, alias).is_file():
        raise ViewError(f"{alias!r} is an immutable view in {data_dir}, so it cannot be an alias; "
                        f"use the view {view_name!r} by its name or choose another alias")
    current = read_alias(data_dir, alias)
    if current is not None and current["view"] == view_name:
        return current
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    history = ([] if current is None else current.get("history", [])) + [{"view": view_name, "since": now}]
    doc = {"alias": alias, "view": view_name, "updated_at": now, "history": history}
    atomic_write_json(alias_path(data_dir, alias), doc)
    return doc


def resolve_view_name(data_dir: str | os.PathLike, name: str) -> str:
    """The immutable view ``name`` means: itself when a view has that name, else an alias's target, else
    ``name`` unchanged (the caller's own not-found error then names it)."""
    if view_path(data_dir, name).is_file():
        return name
    alias = read_alias(data_dir, name)
    return name if alias is None else alias["view"]


def list_aliases(data_dir: str | os.PathLike) -> dict[str, str]:
    """Every alias of the data directory and the view it points at."""
    folder = Path(data_dir) / "views" / "aliases"
    return {path.stem: read_json(path)["view"] for path in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def default_view_name(data_dir: str | os.PathLike, profile: Profile) -> str:
    """``<profile>-<catalog snapshot digest[:10]>`` for a shipped profile as shipped (one immutable view per
    snapshot); a custom or overridden profile also gets ``-<thresholds digest[:6]>``, so the name never
    collides with another selection."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", profile.name).strip("-") or "custom"
    base = f"{name}-{catalog_snapshot(data_dir)['digest'][:10]}"
    if (PROFILE_DIR / f"{profile.name}.yaml").is_file() and load_profile(profile.name).raw.get("dimensions") == profile.raw.get("dimensions"):
        return base
    thresholds = hashlib.sha256(json.dumps(profile.raw.get("dimensions", {}), sort_keys=True).encode()).hexdigest()
    return f"{base}-{thresholds[:6]}"


def refilter_aliased(data_dir: str | os.PathLike, profile: Profile, *, name: str | None = None, alias: str | None = None,
                     reshard_below: float | None = None, exclude_split: str | None = None,
                     wait: float = 0.0, flow_run_id: str | None = None) -> tuple[dict, bool, dict | None]:
    """`shards.views.refilter` into ``name`` (default: `default_view_name`), then point ``alias`` at it;
    returns (view, created, alias document or None)."""
    with writer_lock(data_dir, wait=wait, command=f"refilter {name or profile.name}"):  # the view and its alias together
        name = name or default_view_name(data_dir, profile)
        view, created = refilter(data_dir, profile, name, reshard_below=reshard_below, exclude_split=exclude_split,
                                 flow_run_id=flow_run_id)
        return view, created, (set_alias(data_dir, alias, name) if alias else None)
