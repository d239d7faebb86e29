"""The paper's ablation claims (Tables 2–4, §4.3) as tests on per-seed numbers: holds / does not hold / cannot tell.

A claim says row ``better`` beats row ``worse`` (or, with ``tolerance``, stays within it). Per student seed the
paired difference of a metric is taken in the paper's direction (positive = as the paper says):

* higher-is-better metric m: d = m(better) − (1 − tolerance)·m(worse);
* lower-is-better metric m:  d = (1 + tolerance)·m(worse) − m(better).

The teacher is one model (seed 0) shared by every student seed, so its value is the same in every pair. Over the
seeds, the mean of d and its 95 % t-interval (`fada.stats.interval`) give the verdict (`verdict`): **holds** when
the interval lies above 0, **does not hold at this scale** when it lies below 0, **cannot tell** when it contains
0 (or there is a single seed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fada.stats import interval

HOLDS, DOES_NOT_HOLD, CANNOT_TELL = "holds", "does not hold at this scale", "cannot tell"

# metric key → (label, higher is better)
METRICS = {
    "distance": ("distance to teacher (latent MSE)", False),
    "oracle_sync": ("oracle sync", True),
    "fd": ("Fréchet distance to real frames", False),
    "nfe": ("NFE-D", False),
    "gen_s_per_s": ("generation s per video s", False),
}


@dataclass(frozen=True)
class Claim:
    text: str
    better: str
    worse: str
    metrics: tuple[str, ...] = ("distance", "oracle_sync", "fd")  # the first is the primary one
    tolerance: float = 0.0

    def differences(self, metric: str, better: list[float], worse: list[float]) -> list[float]:
        """Per-seed paired differences in the paper's direction (module docstring)."""
        if len(worse) == 1:  # the teacher: one value for every seed
            worse = worse * len(better)
        if len(better) != len(worse):
            raise ValueError(f"{self.better} has {len(better)} seeds, {self.worse} {len(worse)}")
        if METRICS[metric][1]:
            return [b - (1 - self.tolerance) * w for b, w in zip(better, worse)]
        return [(1 + self.tolerance) * w - b for b, w in zip(better, worse)]


CLAIMS = (
    Claim("the GT loss helps (fixed w 0.2 better than PeRFlow alone)", "fixed-0.2", "perflow"),
    Claim("w 0.2 better than w 1.0", "fixed-0.2", "fixed-1.0"),
    Claim("adaptive better than adaptive-unlimited", "adaptive-0.25", "adaptive-unlimited"),
    Claim("adaptive better than fixed w 0.2", "adaptive-0.25", "fixed-0.2"),
    Claim("λ_gt 0.25 better than 0.5", "adaptive-0.25", "adaptive-0.5"),
    Claim("no CFG distillation worse than layer-tokens", "cfg-layer-tokens", "cfg-none"),
    Claim("CFG in the time embedding worse than layer-tokens", "cfg-layer-tokens", "cfg-time-embed"),
    Claim("CFG layer without tokens worse than layer-tokens", "cfg-layer-tokens", "cfg-layer"),
    Claim("layer-tokens close to the teacher (sync ≥ 80 % of the teacher's, FD ≤ 1.2×)", "cfg-layer-tokens",
          "teacher", metrics=("oracle_sync", "fd"), tolerance=0.2),
    Claim("NFE 75 → 6 (and faster generation)", "cfg-layer-tokens", "teacher", metrics=("nfe", "gen_s_per_s")),
)


def verdict(differences: list[float]) -> tuple[str, float, float]:
    """(verdict, mean, half-width of the 95 % t-interval) of per-seed differences in the paper's direction."""
    values = [d for d in differences if math.isfinite(d)]
    if not values:
        return CANNOT_TELL, math.nan, math.nan
    mean, half = interval(values)
    if math.isnan(half):
        return CANNOT_TELL, mean, half
    if mean - half > 0:
        return HOLDS, mean, half
    if mean + half < 0:
        return DOES_NOT_HOLD, mean, half
    return CANNOT_TELL, mean, half


def _values(rows: list[dict], metric: str) -> list[float]:
    """The metric per seed, NaN where it is missing (a video the metric could not score)."""
    return [math.nan if row.get(metric) is None else float(row[metric]) for row in rows]


def judge(per_seed: dict[str, list[dict]], claims: tuple[Claim, ...] = CLAIMS) -> list[dict]:
    """One result per claim: {claim, better, worse, primary, metrics: {metric: {verdict, mean, half, n}}} from
    ``per_seed`` (row name → one metrics dict per student seed; the teacher's list has its one)."""
    results = []
    for claim in claims:
        judged = {}
        for metric in claim.metrics:
            differences = claim.differences(metric, _values(per_seed[claim.better], metric),
                                            _values(per_seed[claim.worse], metric))
            outcome, mean, half = verdict(differences)
            judged[metric] = {"verdict": outcome, "mean": mean, "half": half,
                              "n": sum(math.isfinite(d) for d in differences)}
        results.append({"claim": claim.text, "better": claim.better, "worse": claim.worse,
                        "primary": claim.metrics[0], "metrics": judged})
    return results
