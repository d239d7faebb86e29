"""Strict JSON: the form of a value that `json.dumps(..., allow_nan=False)` accepts.

Lives in filters/ (the bottom layer) because scorers return their columns through it; shards/, fada/ and flows/
use it from here.
"""

from __future__ import annotations

import math
from typing import Any


def json_safe(value: Any) -> Any:
    """Strict-JSON form, recursively: NaN/±inf → None, numpy scalars → Python numbers, tuples → lists, and
    anything else JSON has no type for (paths, enums …) → its ``str``."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalar, without importing numpy
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
