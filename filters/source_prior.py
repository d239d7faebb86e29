"""Data-source prior: how much a clip's source tag is trusted before its pixels are looked at.

``source_prior`` = ``priors[tag]`` for the clip's ``record["source_tag"]``, or ``default`` for a tag without a
prior. A denied tag (in ``deny``, or missing from ``allow`` when an allow list is given) gets
``source_prior`` = 0 and ``source_denied`` = 1; every other clip has ``source_denied`` = 0. Deny wins over
allow. Tags are compared as given (case matters), like the manifest's ``tag`` column.

Default priors (``DEFAULT_PRIORS``), for the talking-head training FADA does:

* ``interview`` 0.9 — seated speaker, frontal, steady camera, clean close-mic speech that the mouth follows;
* ``news`` 0.85 — same, but cutaways, captions and a second presenter show up more often;
* ``vlog`` 0.7 — hand-held cameras, fast cuts, music beds under the speech;
* ``singing`` 0.4 — mouths follow melody and sustained vowels rather than speech, and the audio is mostly
  music, so audio-to-lip mappings learnt from it do not transfer to speech;
* any other tag: ``default`` (0.5).
"""

from __future__ import annotations

import math

from filters.clip_data import ClipData

DEFAULT_PRIORS: dict[str, float] = {"interview": 0.9, "news": 0.85, "vlog": 0.7, "singing": 0.4}
DEFAULT_PRIOR = 0.5
CONFIG_KEYS = ("priors", "default", "allow", "deny")


class SourcePriorScorer:
    """Columns ``source_prior`` (in [0, 1]) and ``source_denied`` (0 or 1); see the module docstring."""

    name = "source_prior"
    version = "1"

    def __init__(
        self,
        priors: dict[str, float] | None = None,
        default: float = DEFAULT_PRIOR,
        allow: list[str] | None = None,
        deny: list[str] | None = None,
    ):
        self.priors = dict(DEFAULT_PRIORS if priors is None else priors)
        for tag, value in {**self.priors, "<default>": default}.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0 or math.isnan(value):
                raise ValueError(f"source prior for {tag!r} must be a number in [0, 1], got {value!r}")
        self.default = float(default)
        self.allow = None if allow is None else frozenset(allow)
        self.deny = frozenset(deny or ())

    @classmethod
    def from_config(cls, config: dict) -> SourcePriorScorer:
        """Build from ``{"priors": {...}, "default": x, "allow": [...], "deny": [...]}`` (every key optional).

        ``priors`` replaces the defaults as a whole. Unknown keys raise ``ValueError`` naming them.
        """
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(f"unknown source prior config key(s) {unknown}; allowed: {list(CONFIG_KEYS)}")
        for key in ("allow", "deny"):
            if isinstance(config.get(key), str):
                raise ValueError(f"source prior config {key!r} must be a list of tags, got the string {config[key]!r}")
        return cls(**config)

    def denied(self, tag: str) -> bool:
        return tag in self.deny or (self.allow is not None and tag not in self.allow)

    def prior(self, tag: str) -> float:
        return 0.0 if self.denied(tag) else float(self.priors.get(tag, self.default))

    def score(self, clip: ClipData) -> dict[str, float]:
        tag = str(clip.record.get("source_tag", ""))
        return {"source_prior": self.prior(tag), "source_denied": float(self.denied(tag))}
