"""Score one ingested clip on every quality dimension, once; record why a dimension could not be scored.

``ClipScorer`` loads every model once (per Ray worker) — face mesh landmarks shared by all scorers, the
sync scorer (SyncNet from local weights when given, else the weight-free default), segmentation for the
background — and turns a clip (its frames in memory during ingest, or its files) and record into flat score
columns (DESIGN.md §2). A scorer that
fails on a clip leaves its columns missing and its reason in ``score_errors``; the others still score.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np

from filters.clip_data import ClipData, Scorer, clip_from_arrays, load_clip
from filters.strict_json import json_safe


@dataclass(frozen=True)
class ScoringConfig:
    syncnet_weights: str | None = None  # local path to syncnet_v2.model (or .safetensors); None = weight-free default
    iqa_weights: str | None = None  # local path to a learned IQA model; None = the hand-crafted IQA only
    source_priors: dict = field(default_factory=dict)  # SourcePriorScorer.from_config: priors, default, allow, deny

    def to_dict(self) -> dict:
        return asdict(self)


def build_scorers(config: ScoringConfig) -> list[Scorer]:
    from filters.background import BackgroundScorer
    from filters.face_audio import FaceAudioScorer
    from filters.image_quality import ImageQualityScorer, LearnedIQAScorer
    from filters.movement import MovementScorer
    from filters.source_prior import SourcePriorScorer
    from filters.sync import make_sync_scorer

    scorers: list[Scorer] = [
        SourcePriorScorer.from_config(config.source_priors),
        ImageQualityScorer(),
        make_sync_scorer(config.syncnet_weights),
        BackgroundScorer(),
        MovementScorer(),
        FaceAudioScorer(),
    ]
    if config.iqa_weights:
        scorers.append(LearnedIQAScorer(config.iqa_weights))
    return scorers


class ClipScorer:
    def __init__(self, config: ScoringConfig = ScoringConfig()):
        from filters.clip_data import LandmarkModel

        self.config = config
        self.landmark_model = LandmarkModel()
        self.scorers = build_scorers(config)

    @property
    def versions(self) -> dict[str, str]:
        return {scorer.name: scorer.version for scorer in self.scorers}

    def score_files(self, mp4_path: str | os.PathLike, wav_path: str | os.PathLike, record: dict) -> dict:
        """Columns to merge into the record of a clip on disk: every score, ``scorers`` (name → version),
        ``score_errors``."""
        return self.score_clip(load_clip(mp4_path, wav_path, record, self.landmark_model))

    def score_frames(self, frames: np.ndarray, audio: np.ndarray, audio_rate: int, record: dict) -> dict:
        """The same columns for a clip still in memory: ingest passes the crops it has just encoded, which
        saves decoding the clip again (docs/benchmarks.md)."""
        return self.score_clip(clip_from_arrays(frames, audio, audio_rate, record, self.landmark_model))

    def score_clip(self, clip: ClipData) -> dict:
        columns: dict = {}
        errors: dict[str, str] = {}
        for scorer in self.scorers:
            try:
                columns.update(json_safe(scorer.score(clip)))  # NaN (unscorable) → None: missing
            except Exception as exc:  # one dimension failing must not lose the others
                errors[scorer.name] = f"{type(exc).__name__}: {exc}"
        return {**columns, "scorers": self.versions, "score_errors": errors}

