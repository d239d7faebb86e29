"""The shipped profiles on real ingested and scored generator clips: strict keeps the clean clips and
rejects each degraded one naming the right dimension; lenient keeps a superset of strict."""

from dataclasses import replace

import pytest

from filters.profiles import load_profile
from filters.scoring import ClipScorer
from filters.synthetic import SpeakerSpec
from tests.clip_factory import make_clip, make_wild

pytestmark = pytest.mark.slow

BASE = SpeakerSpec(seed=41, duration_s=3.0)
DEGRADED = {  # knob → the dimension strict must name
    "blurred": (dict(blur_sigma=3.0), "image_quality"),
    "late_audio": (dict(audio_offset_frames=8), "sync"),
    "shaky": (dict(camera_shake_px=6.0), "background"),
    "scrolling_background": (dict(moving_background=True), "background"),
    "frozen_head": (dict(frozen_head=True), "movement"),
    "silent": (dict(silent=True), "face_audio"),
}


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    scorer = ClipScorer()
    out = {}

    def score(clip):
        return {**clip.record, **scorer.score_clip(clip)}

    clean, _ = make_clip(BASE, tmp_path_factory.mktemp("clean"))
    out["clean"] = score(clean)
    out["clean_other_seed"] = score(make_clip(replace(BASE, seed=42), tmp_path_factory.mktemp("clean2"))[0])
    out["wild"] = score(make_wild(clean))
    out["singing"] = score(replace(clean, record={**clean.record, "source_tag": "singing"}))
    for name, (knobs, _) in DEGRADED.items():
        out[name] = score(make_clip(replace(BASE, **knobs), tmp_path_factory.mktemp(name))[0])
    return out


def test_strict_keeps_clean_clips(scored):
    strict = load_profile("strict")
    for name in ("clean", "clean_other_seed"):
        assert strict.decide(scored[name]).keep, (name, strict.decide(scored[name]).failed)


@pytest.mark.parametrize("name", [*DEGRADED, "wild", "singing"])
def test_strict_rejects_each_degraded_clip_naming_its_dimension(scored, name):
    expected = {"wild": "movement", "singing": "source"}.get(name) or DEGRADED[name][1]
    decision = load_profile("strict").decide(scored[name])
    assert not decision.keep
    assert expected in decision.failed_dimensions, decision.failed


def test_lenient_keeps_a_superset_of_strict(scored):
    strict, lenient = load_profile("strict"), load_profile("lenient")
    kept_strict = {n for n, s in scored.items() if strict.decide(s).keep}
    kept_lenient = {n for n, s in scored.items() if lenient.decide(s).keep}
    assert kept_strict <= kept_lenient and kept_lenient - kept_strict  # strictly larger on this set


def test_lenient_bounds_are_never_tighter_than_strict():
    strict, lenient = load_profile("strict"), load_profile("lenient")
    loose = {(b.dimension, b.column): b for b in lenient.bounds}
    assert set(loose) <= {(b.dimension, b.column) for b in strict.bounds}
    for bound in strict.bounds:
        other = loose.get((bound.dimension, bound.column))
        if other is None:
            continue
        assert other.min is None or (bound.min is not None and other.min <= bound.min), bound
        assert other.max is None or (bound.max is not None and other.max >= bound.max), bound
    for scorer, bounds in strict.sync_bounds.items():
        loose_sync = {b.column: b for b in lenient.sync_bounds[scorer]}
        for bound in bounds:
            other = loose_sync[bound.column]
            assert (other.min or -1e9) <= (bound.min or -1e9) and (other.max or 1e9) >= (bound.max or 1e9)


def test_unscorable_dimension_records_why_and_keeps_the_others(tmp_path):
    clip, _ = make_clip(BASE, tmp_path)
    record = {**clip.record, "n_frames": 30, "crop_boxes": clip.record["crop_boxes"][:30], "face_boxes": clip.record["face_boxes"][:30]}
    short = replace(clip, frames=clip.frames[:30], landmarks=clip.landmarks[:30], audio=clip.audio[: 30 * 640], record=record)
    scores = ClipScorer().score_clip(short)  # 1.2 s: too short for a ±15-frame sync search
    assert "usable frames" in scores["score_errors"]["lip_audio_xcorr"]
    assert "sync_conf" not in scores
    assert set(scores["score_errors"]) == {"lip_audio_xcorr"}, scores["score_errors"]
    assert scores["iqa"] > 0.8 and scores["speech_ratio"] > 0.2 and scores["camera_shake"] >= 0
    decision = load_profile("strict").decide({**short.record, **scores})
    assert "sync" in decision.failed_dimensions and not decision.keep
