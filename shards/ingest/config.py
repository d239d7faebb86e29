"""What an ingest run is configured by (``IngestConfig``: extraction, probe limits, scoring, shard limits, chunk
length, dataset version) and the check that its scorer weights load before any work starts."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

from filters.config_fields import from_dict
from filters.extract import ExtractConfig
from filters.probe import ProbeLimits
from filters.scoring import ScoringConfig
from shards.publish import ShardLimits
from shards.sources import read_yaml


@dataclass(frozen=True)
class IngestConfig:
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    probe: ProbeLimits = field(default_factory=ProbeLimits)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    shards: ShardLimits = field(default_factory=ShardLimits)
    chunk_s: float = 120.0  # long sources are split into chunks of this length, one Ray job each
    dataset_version: str = "v1"  # shards go to DATA_DIR/shards/<dataset_version>/

    def to_dict(self) -> dict:
        return {
            "extract": self.extract.to_dict(), "probe": asdict(self.probe), "scoring": self.scoring.to_dict(),
            "shards": asdict(self.shards), "chunk_s": self.chunk_s, "dataset_version": self.dataset_version,
        }

    def digest(self) -> str:
        """Hash of everything that changes the output; recorded in every ledger record."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, values: dict) -> "IngestConfig":
        """``{"probe": {...}, "scoring": {...}, "shards": {...}, "chunk_s": s, "dataset_version": v, <ExtractConfig sections>}``.

        Unknown sections or keys raise ValueError naming them.
        """
        values = dict(values or {})
        own = (("probe", ProbeLimits), ("scoring", ScoringConfig), ("shards", ShardLimits))
        sections = {name: from_dict(section_cls, values.pop(name, None), section=f"ingest config section {name!r}")
                    for name, section_cls in own}
        chunk_s = float(values.pop("chunk_s", 120.0))
        dataset_version = str(values.pop("dataset_version", "v1"))
        return cls(extract=ExtractConfig.from_dict(values), **sections, chunk_s=chunk_s, dataset_version=dataset_version)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "IngestConfig":
        return cls.from_dict(read_yaml(path) or {})


class IngestInputError(ValueError):
    """The run cannot start as configured (e.g. unreadable scorer weights); the message names the file."""


def check_scoring(config: ScoringConfig) -> None:
    """Load what the scorers read from files once, before any work (not once per source in every worker)."""
    from filters.image_quality import LearnedIQAScorer
    from filters.source_prior import SourcePriorScorer
    from filters.sync import make_sync_scorer

    SourcePriorScorer.from_config(config.source_priors)
    for name, path, load in (("syncnet_weights", config.syncnet_weights, make_sync_scorer),
                             ("iqa_weights", config.iqa_weights, LearnedIQAScorer)):
        if path is None:
            continue
        try:
            load(path)
        except Exception as exc:  # any failure to load is the same user error: this file is not usable weights
            raise IngestInputError(f"{path}: scoring.{name} cannot be loaded ({type(exc).__name__}: {str(exc)[:200]})") from exc
