"""Threshold profiles: which scored clips a training set keeps, with every failed dimension named.

A profile is YAML with a ``name``, a ``description`` and ``dimensions``: for each quality dimension, bounds
``{min: x}`` / ``{max: y}`` on its score columns. Sync bounds are per scorer (``sync: {syncnet: {...},
lip_audio_xcorr: {...}}``) because each sync scorer has its own scale; a clip is judged with the bounds of
the scorer that produced its ``sync_scorer`` column. Scorers never apply thresholds; this module does.
Shipped profiles live beside this file: ``strict`` (teacher) and ``lenient`` (student, a superset).
Unknown dimensions, columns, scorers or bound keys are errors, never ignored.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from filters.config_fields import apply_dotted

PROFILE_DIR = Path(__file__).parent / "profiles"

DIMENSION_COLUMNS: dict[str, tuple[str, ...]] = {
    "source": ("source_prior", "source_denied"),
    "image_quality": ("iqa", "iqa_learned", "sharpness", "reblur_ratio", "face_px", "exposure_clip", "noise", "blockiness"),
    "background": ("camera_shake", "bg_motion", "bg_share"),
    "movement": ("head_motion", "pose_range_deg", "head_speed_deg_s"),
    "face_audio": ("single_face_ratio", "face_mesh_ratio", "speech_ratio", "audio_clip_ratio", "snr_db"),
}
SYNC_SCORERS = ("syncnet", "lip_audio_xcorr")
SYNC_COLUMNS = ("sync_conf", "sync_dist", "abs_sync_offset")
BOUND_KEYS = ("min", "max")


class ProfileError(ValueError):
    """The profile cannot be used as written; the message names the offending key."""


@dataclass(frozen=True)
class Bound:
    dimension: str
    column: str
    min: float | None = None
    max: float | None = None

    def failure(self, value: float | None) -> str | None:
        """None when ``value`` passes, else a reason such as ``image_quality.iqa=0.31<0.5``."""
        label = f"{self.dimension}.{self.column}"
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return f"{label}=missing"
        if self.min is not None and value < self.min:
            return f"{label}={value:.4g}<{self.min:g}"
        if self.max is not None and value > self.max:
            return f"{label}={value:.4g}>{self.max:g}"
        return None


@dataclass(frozen=True)
class Decision:
    keep: bool
    failed: tuple[str, ...]  # every failed bound, "dimension.column=value<bound"

    @property
    def failed_dimensions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(reason.split(".", 1)[0] for reason in self.failed))


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    bounds: tuple[Bound, ...]  # dimensions other than sync
    sync_bounds: dict[str, tuple[Bound, ...]]  # per sync scorer
    raw: dict  # the validated YAML document, recorded with every view

    def decide(self, scores: dict) -> Decision:
        """Keep/reject one clip's scores; ``sync_offset`` is judged by its absolute value."""
        values = dict(scores)
        if values.get("sync_offset") is not None:
            values["abs_sync_offset"] = abs(values["sync_offset"])
        failed = [f for bound in self.bounds if (f := bound.failure(values.get(bound.column)))]
        if self.sync_bounds:
            scorer = values.get("sync_scorer")
            if scorer not in self.sync_bounds:
                failed.append(f"sync.sync_scorer={scorer or 'missing'} (profile has bounds for {sorted(self.sync_bounds)})")
            else:
                failed += [f for bound in self.sync_bounds[scorer] if (f := bound.failure(values.get(bound.column)))]
        return Decision(not failed, tuple(failed))


def _bounds(dimension: str, columns: dict, allowed: tuple[str, ...]) -> tuple[Bound, ...]:
    if not isinstance(columns, dict):
        raise ProfileError(f"dimension {dimension!r}: expected a mapping of columns to bounds")
    out = []
    for column, spec in columns.items():
        if column not in allowed:
            raise ProfileError(f"unknown column {column!r} in dimension {dimension!r}; allowed: {list(allowed)}")
        if not isinstance(spec, dict) or not spec or set(spec) - set(BOUND_KEYS):
            raise ProfileError(f"{dimension}.{column}: bounds must be a mapping with keys from {list(BOUND_KEYS)}, got {spec!r}")
        for key, value in spec.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ProfileError(f"{dimension}.{column}.{key}: expected a number, got {value!r}")
        out.append(Bound(dimension, column, spec.get("min"), spec.get("max")))
    return tuple(out)


def profile_from_dict(doc: dict) -> Profile:
    if not isinstance(doc, dict):
        raise ProfileError("a profile is a mapping with name, description and dimensions")
    unknown = sorted(set(doc) - {"name", "description", "dimensions"})
    if unknown:
        raise ProfileError(f"unknown top-level key(s) {unknown}; allowed: name, description, dimensions")
    dimensions = doc.get("dimensions") or {}
    bounds, sync_bounds = [], {}
    for dimension, columns in dimensions.items():
        if dimension == "sync":
            for scorer, scorer_columns in (columns or {}).items():
                if scorer not in SYNC_SCORERS:
                    raise ProfileError(f"unknown sync scorer {scorer!r}; known: {list(SYNC_SCORERS)}")
                sync_bounds[scorer] = _bounds("sync", scorer_columns, SYNC_COLUMNS)
        elif dimension in DIMENSION_COLUMNS:
            bounds += _bounds(dimension, columns, DIMENSION_COLUMNS[dimension])
        else:
            raise ProfileError(f"unknown dimension {dimension!r}; known: {sorted([*DIMENSION_COLUMNS, 'sync'])}")
    return Profile(str(doc.get("name", "custom")), str(doc.get("description", "")), tuple(bounds), sync_bounds, copy.deepcopy(doc))


def with_overrides(doc: dict, overrides: dict[str, float]) -> dict:
    """Apply ``{"image_quality.iqa.min": 0.6, "sync.syncnet.sync_conf.min": 4}`` to a profile document."""
    if not overrides or not isinstance(doc, dict):  # nothing to apply, or not a profile (profile_from_dict says so)
        return copy.deepcopy(doc)
    dimensions = {f"dimensions.{dotted}": value for dotted, value in overrides.items()}
    return copy.deepcopy(apply_dotted(doc, dimensions, allowed={"dimensions": None}))  # profile_from_dict checks them


def load_profile(name_or_path: str | os.PathLike, overrides: dict[str, float] | None = None) -> Profile:
    """A shipped profile by name (``strict``, ``lenient``) or a YAML file, with optional overrides."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            shipped = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
            raise ProfileError(f"no shipped profile {str(name_or_path)!r}; shipped: {shipped}, or give a .yaml path")
    with open(path) as fh:
        doc = yaml.safe_load(fh)
    return profile_from_dict(with_overrides(doc, overrides or {}))
