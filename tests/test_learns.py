"""The learning experiment's harness (benchmarks/learns.py) end to end at 2 steps: every row is measured,
the summary holds intervals over seeds, and the markdown names the setup."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import learns


@pytest.mark.slow
def test_harness_runs_two_steps_and_reports_every_row(tmp_path):
    doc = tmp_path / "learning.md"
    learns.main(["--out", str(tmp_path / "run"), "--steps", "2", "--seeds", "2", "--train-speakers", "2",
                 "--train-seconds", "1", "--held-out", "2", "--eval-seconds", "1.6", "--inference-steps", "2",
                 "--oracle-speakers", "1", "--oracle-steps", "60", "--student-steps", "2", "--threads", "1", "--probe-every", "1",
                 "--doc", str(doc)])
    summary = json.loads((tmp_path / "run" / "learns.json").read_text())
    assert [seed["seed"] for seed in summary["seeds"]] == [0, 1]
    rows = summary["rows"]
    assert set(rows) == {"rendered video (ceiling)", "teacher", "untrained", "student"}
    for name in ("teacher", "untrained", "student"):
        mean, half = rows[name]["oracle_sync"]
        assert -1 <= mean <= 1 and math.isfinite(half)
        assert len(rows[name]["lags"]) == 4  # 2 seeds × 2 held-out speakers
    assert rows["student"]["share_of_teacher"][0] == pytest.approx(
        sum(s["student"]["oracle_sync"] / s["teacher"]["oracle_sync"] for s in summary["seeds"]) / 2)
    for name in ("teacher", "untrained"):  # the audio probe runs on ε-predicting (teacher-mode) pipelines
        mean, half = rows[name]["probe_gap"]
        assert -2 <= mean <= 2 and math.isfinite(half)
    assert "probe_gap" not in rows["student"]
    assert [[step for step, _ in seed["probe_curve"]] for seed in summary["seeds"]] == [[1, 2], [1, 2]]
    assert (tmp_path / "learns_probe.png").is_file()
    text = doc.read_text()
    assert "2 steps per seed" in text and "| teacher |" in text and "| untrained |" in text
    assert "| 1 | " in text and "audio probe gap" in text
