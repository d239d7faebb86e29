"""The ablation experiment (fada.ablation): rows, views, the flat-stopping rule, verdicts, and a 2-step run."""

import json
import math
import tarfile

import numpy as np
import pytest

from fada.ablation import VARIANTS, AblationSettings, is_flat, run_ablation, students, train_until_flat
from fada.ablation_claims import CANNOT_TELL, CLAIMS, DOES_NOT_HOLD, HOLDS, Claim, judge, verdict

LOSS_ROWS = ["perflow", "fixed-0.2", "fixed-1.0", "adaptive-unlimited", "adaptive-0.25", "adaptive-0.5"]
CFG_ROWS = ["cfg-none", "cfg-time-embed", "cfg-layer", "cfg-layer-tokens"]


def test_rows_are_the_papers_tables():
    assert [v.name for v in VARIANTS] == LOSS_ROWS + CFG_ROWS
    by_name = {v.name: v for v in VARIANTS}
    for name in LOSS_ROWS:  # plain students, scored with 3 CFG passes as the paper's loss ablation
        assert by_name[name].settings["cfg_variant"] == "none" and by_name[name].mode == "balanced"
    assert by_name["perflow"].settings["loss_mode"] == "none"
    assert (by_name["fixed-1.0"].settings["loss_mode"], by_name["fixed-1.0"].settings["lambda_gt"]) == ("fixed", 1.0)
    for name in CFG_ROWS:  # the adaptive 0.25 loss, one pass
        settings = by_name[name].settings
        assert (settings["loss_mode"], settings["lambda_gt"], by_name[name].mode) == ("adaptive", 0.25, "fast")
    assert [by_name[n].settings["cfg_variant"] for n in CFG_ROWS] == ["none", "time-embed", "layer", "layer-tokens"]
    # "no CFG distillation" is the adaptive-0.25 plain student in fast mode: trained once
    shared = students()
    assert shared["cfg-none"] == "adaptive-0.25"
    assert all(shared[v.name] == v.name for v in VARIANTS if v.name != "cfg-none")


def test_verdicts_on_hand_made_numbers():
    lower = Claim("a beats b", "a", "b", metrics=("distance", "oracle_sync"))
    rows = {  # a is closer to the teacher than b in every seed, and worse in sync in every seed
        "a": [{"distance": 1.0, "oracle_sync": 0.20}, {"distance": 1.1, "oracle_sync": 0.21}, {"distance": 0.9, "oracle_sync": 0.19}],
        "b": [{"distance": 2.0, "oracle_sync": 0.50}, {"distance": 2.2, "oracle_sync": 0.52}, {"distance": 1.9, "oracle_sync": 0.49}],
    }
    (result,) = judge(rows, (lower,))
    assert result["primary"] == "distance"
    assert result["metrics"]["distance"]["verdict"] == HOLDS and result["metrics"]["distance"]["mean"] == pytest.approx(1.033333, rel=1e-5)
    assert result["metrics"]["oracle_sync"]["verdict"] == DOES_NOT_HOLD
    # differences of both signs: the interval contains 0
    assert verdict([0.5, -0.4, 0.1])[0] == CANNOT_TELL
    assert verdict([0.3])[0] == CANNOT_TELL  # one seed has no interval
    assert verdict([0.0, 0.0, 0.0])[0] == CANNOT_TELL
    assert verdict([69.0, 69.0, 69.0]) == (HOLDS, 69.0, 0.0)  # NFE 75 vs 6, counted: no spread
    assert verdict([1.0, math.nan, 2.0, 1.5])[0] == HOLDS  # an unscored seed is left out
    # a tolerance claim against the one teacher: sync ≥ 80 % of the teacher's in every seed holds
    close = Claim("close", "s", "teacher", metrics=("oracle_sync",), tolerance=0.2)
    per_seed = {"s": [{"oracle_sync": 0.46}, {"oracle_sync": 0.45}, {"oracle_sync": 0.47}], "teacher": [{"oracle_sync": 0.5}]}
    assert close.differences("oracle_sync", [0.45], [0.5]) == [pytest.approx(0.05)]
    assert judge(per_seed, (close,))[0]["metrics"]["oracle_sync"]["verdict"] == HOLDS
    per_seed["s"] = [{"oracle_sync": 0.2}, {"oracle_sync": 0.25}, {"oracle_sync": 0.3}]
    assert judge(per_seed, (close,))[0]["metrics"]["oracle_sync"]["verdict"] == DOES_NOT_HOLD
    assert {c.better for c in CLAIMS} | {c.worse for c in CLAIMS} <= {v.name for v in VARIANTS} | {"teacher"}


def test_flat_stopping_rule_on_a_hand_made_curve(tmp_path):
    falling = list(np.linspace(1.0, 0.5, 40))
    assert not is_flat(falling, 10)  # each chunk ≥ 15 % below the one before
    assert not is_flat(falling[:15], 10)  # fewer than two chunks: cannot say
    plateau = falling + [0.5 + 0.01 * (-1) ** i for i in range(20)]
    assert is_flat(plateau, 10)  # last chunk vs the one before: < 5 % better
    assert is_flat([1.0] * 10 + [1.2] * 10, 10)  # worse counts as flat

    curve = [1.0 / (1 + 0.3 * s) if s < 30 else 0.1 for s in range(200)]  # falls, then a plateau from step 30
    log: list[float] = []
    calls = []

    def train(steps):
        calls.append(steps)
        log.extend(curve[len(log):steps])

    state = train_until_flat(train, lambda: log, tmp_path / "p.json", chunk=10, max_steps=100)
    assert state["status"] == "flat" and state["steps"] == 50 and calls == [10, 20, 30, 40, 50]
    assert json.loads((tmp_path / "p.json").read_text())["status"] == "flat"
    assert train_until_flat(train, lambda: log, tmp_path / "p.json", chunk=10, max_steps=100) == state  # reused
    assert calls == [10, 20, 30, 40, 50]
    log.clear()
    capped = train_until_flat(train, lambda: log, tmp_path / "q.json", chunk=10, max_steps=25)
    assert capped["status"] == "capped" and capped["steps"] == 25 and len(log) == 25
    assert train_until_flat(train, lambda: log, tmp_path / "q.json", chunk=10, max_steps=25) == capped
    more = train_until_flat(train, lambda: log, tmp_path / "q.json", chunk=10, max_steps=100)  # a larger cap continues
    assert more["status"] == "flat" and more["steps"] == 45 and calls[-3:] == [25, 35, 45]


def _members(tar_path):
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_mixed_quality_data_dir_views(tmp_path):
    from shards.synthetic_dataset import degrade_frames, make_mixed_quality_data_dir

    root = make_mixed_quality_data_dir(tmp_path / "data", n_clean=2, n_moderate=3, size=32, duration_s=0.6)
    strict = json.loads((root / "views" / "strict.json").read_text())["shards"]
    lenient = json.loads((root / "views" / "lenient.json").read_text())["shards"]
    assert sum(strict.values(), []) == ["speaker000", "speaker001"]
    assert sum(lenient.values(), []) == [f"speaker{i:03d}" for i in range(5)]
    members = _members(root / next(iter(lenient)))
    quality = {k: json.loads(members[f"{k}.json"])["quality"] for k in sum(lenient.values(), [])}
    assert list(quality.values()) == ["clean", "clean", "bad_sync", "bad_sync", "degraded"]
    # a bad-sync speaker carries the previous speaker's audio, not its own
    assert members["speaker002.wav"] == members["speaker001.wav"]
    assert members["speaker003.wav"] != members["speaker002.wav"]

    frame = np.zeros((1, 32, 32, 3), np.uint8)
    frame[:, :, 16:] = 255
    blurred = degrade_frames(frame, 0, blur_sigma=1.5, noise_std=0.0)
    assert np.abs(np.diff(blurred.astype(int), axis=2)).max() < 255  # the edge is softened
    gray = np.full((2, 32, 32, 3), 128, np.uint8)
    noisy = degrade_frames(gray, 0, blur_sigma=0.1, noise_std=10.0)
    assert 8 < (noisy.astype(float) - gray).std() < 12


@pytest.mark.slow
def test_two_step_run(tmp_path):
    settings = AblationSettings(seeds=2, teacher_steps=2, max_student_steps=2, chunk_steps=1, num_frames=2,
                                n_clean=2, n_moderate=2, data_seconds=1.0, eval_speakers=1, eval_frames=8,
                                fd_side=1, oracle_speakers=1, oracle_seconds=1.0, oracle_steps=5, oracle_min_frames=8)
    doc = tmp_path / "doc" / "ablation.md"
    summary = run_ablation(tmp_path / "run", settings, device="cpu", doc_path=doc, progress=False)

    rows = {row["variant"]: row for row in summary["rows"]}
    assert list(rows) == LOSS_ROWS + CFG_ROWS
    assert summary["teacher"]["nfe"] == 75 and summary["teacher"]["distance"] == 0  # 25 DDIM steps × 3 passes
    for name, row in rows.items():
        assert len(row["seeds"]) == 2
        for seed in row["seeds"]:
            assert seed["nfe"] == (18 if name in LOSS_ROWS else 6)  # as the pipeline counted them
            assert row["mode"] == ("balanced" if name in LOSS_ROWS else "fast")
            assert seed["distance"] > 0 and seed["train_steps"] == 2 and seed["train_status"] in ("flat", "capped")
            assert math.isfinite(seed["oracle_sync"]) and math.isfinite(seed["fd"])
    # the no-CFG row is the adaptive-0.25 plain student in fast mode; it was not trained twice
    assert rows["cfg-none"]["trained_as"] == "adaptive-0.25"
    assert [s["train_seconds"] for s in rows["cfg-none"]["seeds"]] == [s["train_seconds"] for s in rows["adaptive-0.25"]["seeds"]]
    assert not (tmp_path / "run" / "students" / "cfg-none").exists()
    assert rows["fixed-1.0"]["seeds"][0]["w_mean"] == 1.0 and rows["perflow"]["seeds"][0]["w_mean"] == 0

    # lineage: the teacher read strict, every student lenient (and names its strict teacher)
    teacher_meta = json.loads((tmp_path / "run" / "teacher" / "final" / "fada.json").read_text())
    assert teacher_meta["view"] == "strict" and teacher_meta["clips"] == 2
    for student_dir in (tmp_path / "run" / "students").glob("*/seed*"):
        meta = json.loads((student_dir / "final" / "fada.json").read_text())
        assert meta["view"] == "lenient" and meta["clips"] == 4 and meta["teacher"]["view"] == "strict"
    assert len(list((tmp_path / "run" / "students").glob("*/seed*"))) == 2 * 9

    assert [c["claim"] for c in summary["claims"]] == [c.text for c in CLAIMS]
    nfe_claim = summary["claims"][-1]["metrics"]["nfe"]
    assert (nfe_claim["verdict"], nfe_claim["mean"]) == (HOLDS, 69.0)
    text = doc.read_text()
    assert "## Verdicts on the paper's claims" in text and (doc.parent / "ablation_loss.png").is_file()
    assert all(f"| {c.text} |" in text for c in CLAIMS)

    again = run_ablation(tmp_path / "run", settings, device="cpu", doc_path=None, progress=False)  # all reused
    assert again["rows"] == summary["rows"] and again["claims"] == summary["claims"]
