"""The ablation harness (fada.ablation): one row per variant of the paper's Tables 2–4, NFE-D as counted."""

import json
import math

import numpy as np
import pytest

from fada.ablation import VARIANTS, run_ablation, sync_score

EXPECTED = ["perflow", "fixed-0.2", "fixed-1.0", "adaptive-unlimited", "adaptive-0.25", "adaptive-0.5", "cfg-none",
            "cfg-time-embed", "cfg-layer", "cfg-layer-tokens"]


def test_variants_cover_tables_2_to_4():
    assert [v.name for v in VARIANTS] == EXPECTED
    by_name = {v.name: v.overrides for v in VARIANTS}
    assert by_name["perflow"] == {"loss_mode": "none"}
    assert by_name["fixed-1.0"] == {"loss_mode": "fixed", "lambda_gt": 1.0}
    assert {by_name[f"cfg-{c}"]["cfg_variant"] for c in ("none", "time-embed", "layer", "layer-tokens")} == {
        "none", "time-embed", "layer", "layer-tokens"}
    # the adaptive 0.25 loss row and the layer-tokens CFG row are the same run
    keys = [v.key for v in VARIANTS]
    assert len(set(keys)) == len(keys) - 1


class _Failing:
    def score(self, frames, audio):
        raise ValueError("no face landmarks in any of 4 frames")


def test_sync_failure_is_recorded_not_raised():
    c, d, reason = sync_score(_Failing(), np.zeros((4, 8, 8, 3), np.uint8), np.zeros(2560, np.float32))
    assert math.isnan(c) and math.isnan(d) and "no face" in reason


@pytest.mark.slow
def test_run_ablation_writes_one_row_per_variant(tmp_path):
    doc = tmp_path / "ablation.md"
    rows = run_ablation(tmp_path / "run", teacher_steps=1, student_steps=1, num_frames=2, eval_clips_count=1,
                        table_path=doc, progress=False, device="cpu")
    assert [row["variant"] for row in rows] == EXPECTED
    for row in rows:
        assert row["nfe_fast"] == 6 and row["mse_fast"] >= 0
        assert not math.isnan(row["sync_c_fast"]) or row["sync_reason_fast"]  # a number or NaN with the scorer's reason
        if row["cfg_variant"] == "none":  # balanced: three passes with eq. 9
            assert row["nfe_balanced"] == 18 and row["mse_balanced"] >= 0
            assert not math.isnan(row["sync_c_balanced"]) or row["sync_reason_balanced"]
        else:  # a CFG-distilled student is not run in balanced mode
            assert row["nfe_balanced"] is None and "fast mode only" in row["sync_reason_balanced"]
    assert rows[EXPECTED.index("perflow")]["w_mean"] == 0
    assert rows[EXPECTED.index("fixed-1.0")]["w_mean"] == 1.0
    assert rows[EXPECTED.index("cfg-layer-tokens")]["trained_as"] == "adaptive-0.25"

    summary = json.loads((tmp_path / "run" / "ablation.json").read_text())
    assert summary["teacher"]["nfe"] == 75 and summary["teacher"]["mse"] == 0
    assert summary["timings_s"]["total"] > 0 and summary["machine"]["cpu_count"]
    text = doc.read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")][2:]  # header and rule dropped
    assert len(table) == 1 + len(EXPECTED)  # the teacher, then one row per variant
    assert "| 75 |" in table[0]
    assert all("| 6 |" in line for line in table[1:])
    assert any("| 18 |" in line for line in table[1:]) and any("| — |" in line for line in table[1:])
    assert "Wall time" in text and "load average" in text
