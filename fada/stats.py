"""Small statistics shared by the experiments (`fada.ablation`, `benchmarks/learns.py`)."""

from __future__ import annotations

import numpy as np


def interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95 % t-interval); half-width NaN for one value."""
    from scipy.stats import t

    values = np.asarray(values, np.float64)
    if len(values) < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
