import json
from pathlib import Path

import numpy as np
import pytest

from filters.strict_json import json_safe
from shards.atomic import atomic_write_json, read_json


def test_json_safe_gives_strict_json():
    value = {"nan": float("nan"), "inf": np.float32("inf"), "n": np.int64(3), "nested": [(1.5, None)], "path": Path("a/b"), 2: "x"}
    safe = json_safe(value)
    assert safe == {"nan": None, "inf": None, "n": 3, "nested": [[1.5, None]], "path": "a/b", "2": "x"}
    assert type(safe["n"]) is int
    json.dumps(safe, allow_nan=False)


def test_atomic_write_json_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(ValueError):
        atomic_write_json(target, {"a": float("nan")})  # refused: the old content stays, no temporary is left
    assert read_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
