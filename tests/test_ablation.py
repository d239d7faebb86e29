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


def _check_sync(metrics: dict, clips: int) -> list[str]:
    """A sync value is the mean of the clips the scorer could score, or NaN when it scored none; every clip it could
    not score is reported with the scorer's own ValueError (a crash of another type is a bug, not a refusal)."""
    scored = int(metrics["sync_scored"].split("/")[0])
    assert metrics["sync_scored"] == f"{scored}/{clips}"
    assert math.isnan(metrics["sync_c"]) == (scored == 0) and math.isnan(metrics["sync_d"]) == (scored == 0)
    if scored < clips:
        assert metrics["sync_reasons"] and all(r.startswith("ValueError: ") for r in metrics["sync_reasons"])
        assert metrics["sync_reason"] == "; ".join(metrics["sync_reasons"])
    else:
        assert metrics["sync_reasons"] == [] and metrics["sync_reason"] == ""
    return metrics["sync_reasons"]


@pytest.mark.slow
def test_run_ablation_writes_one_row_per_variant(tmp_path):
    doc = tmp_path / "ablation.md"
    rows = run_ablation(tmp_path / "run", teacher_steps=1, student_steps=1, num_frames=2, eval_clips_count=1,
                        table_path=doc, progress=False, device="cpu")
    assert [row["variant"] for row in rows] == EXPECTED
    reasons = set()
    for row in rows:
        assert row["nfe_fast"] == 6  # 6 steps × 1 pass, as the pipeline counted them
        assert row["mse_fast"] > 0 and math.isfinite(row["psnr_fast"])  # a 6-step student is not the 75-NFE teacher
        reasons |= set(_check_sync({k[:-len("_fast")]: v for k, v in row.items() if k.endswith("_fast")}, 1))
        if row["cfg_variant"] == "none":  # balanced: 6 steps × 3 passes combined with eq. 9
            assert row["nfe_balanced"] == 18 and row["mse_balanced"] > 0
            reasons |= set(_check_sync({k[:-len("_balanced")]: v for k, v in row.items() if k.endswith("_balanced")}, 1))
        else:  # a CFG-distilled student is not run in balanced mode, and the row says why
            assert row["nfe_balanced"] is None and row["mse_balanced"] is None
            assert row["sync_reason_balanced"] == "not run: a CFG-distilled student runs in fast mode only"
    assert [row["cfg_variant"] == "none" for row in rows] == [v == "cfg-none" for v in EXPECTED]
    assert rows[EXPECTED.index("perflow")]["w_mean"] == 0
    assert rows[EXPECTED.index("fixed-1.0")]["w_mean"] == 1.0
    assert rows[EXPECTED.index("cfg-layer-tokens")]["trained_as"] == "adaptive-0.25"
    assert all(row["trained_as"] == row["variant"] for row in rows if row["variant"] != "cfg-layer-tokens")

    summary = json.loads((tmp_path / "run" / "ablation.json").read_text())
    assert summary["teacher"]["nfe"] == 75 and summary["teacher"]["mse"] == 0  # 25 steps × 3 passes; its own reference
    reasons |= set(_check_sync(summary["teacher"], 1)) | set(_check_sync(summary["real"], 1))
    timings = summary["timings_s"]
    assert timings["total"] >= timings["data"] + timings["teacher"] + timings["students"] + timings["eval"]
    assert summary["machine"]["cpu_count"]
    text = doc.read_text()
    table = [line for line in text.splitlines() if line.startswith("| ")][2:]  # header and rule dropped
    assert len(table) == 1 + len(EXPECTED)  # the teacher, then one row per variant
    assert "| 75 |" in table[0]
    assert all("| 6 |" in line for line in table[1:])
    assert ("| 18 |" in table[1 + EXPECTED.index("cfg-none")]) and sum("| 18 |" in line for line in table) == 1
    assert all(f"* {reason}" in text for reason in reasons)  # every sync failure is listed with its reason
    assert "Wall time" in text and "load average" in text
