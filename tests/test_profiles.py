import math

import pytest
import yaml

from filters.profiles import ProfileError, load_profile, profile_from_dict, with_overrides

DOC = {
    "name": "t",
    "dimensions": {
        "image_quality": {"iqa": {"min": 0.5}, "exposure_clip": {"max": 0.1}},
        "movement": {"head_motion": {"min": 0.01, "max": 0.5}},
        "sync": {"lip_audio_xcorr": {"sync_conf": {"min": 0.2}, "abs_sync_offset": {"max": 1}}},
    },
}
GOOD = {"iqa": 0.8, "exposure_clip": 0.0, "head_motion": 0.1, "sync_scorer": "lip_audio_xcorr", "sync_conf": 0.5, "sync_offset": -1}


def test_good_scores_are_kept():
    decision = profile_from_dict(DOC).decide(GOOD)
    assert decision.keep and decision.failed == ()


def test_every_failed_dimension_is_named():
    bad = {**GOOD, "iqa": 0.3, "head_motion": 0.0, "sync_offset": 5}
    decision = profile_from_dict(DOC).decide(bad)
    assert not decision.keep
    assert decision.failed_dimensions == ("image_quality", "movement", "sync")
    assert any(f.startswith("image_quality.iqa=0.3<0.5") for f in decision.failed)
    assert any(f.startswith("sync.abs_sync_offset=5>1") for f in decision.failed)


def test_missing_or_nan_scores_fail_and_sync_bounds_follow_the_scorer():
    profile = profile_from_dict(DOC)
    assert profile.decide({**GOOD, "iqa": math.nan}).failed == ("image_quality.iqa=missing",)
    other = profile.decide({**GOOD, "sync_scorer": "syncnet"})
    assert not other.keep and "sync.sync_scorer=syncnet" in other.failed[0]


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"dimensions": {"colour": {}}}, "unknown dimension 'colour'"),
        ({"dimensions": {"image_quality": {"sharpnes": {"min": 1}}}}, "unknown column 'sharpnes'"),
        ({"dimensions": {"image_quality": {"iqa": {"minimum": 1}}}}, "bounds must be a mapping"),
        ({"dimensions": {"image_quality": {"iqa": {"min": "high"}}}}, "expected a number"),
        ({"dimensions": {"sync": {"wav2lip": {}}}}, "unknown sync scorer 'wav2lip'"),
        ({"dimension": {}}, "unknown top-level key"),
    ],
)
def test_unknown_keys_are_errors(doc, message):
    with pytest.raises(ProfileError, match=message):
        profile_from_dict(doc)


def test_overrides_and_files(tmp_path):
    doc = with_overrides(DOC, {"image_quality.iqa.min": 0.9})
    assert not profile_from_dict(doc).decide(GOOD).keep
    assert DOC["dimensions"]["image_quality"]["iqa"]["min"] == 0.5  # the original is untouched
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(DOC))
    assert load_profile(tmp_path / "mine.yaml").decide(GOOD).keep
    with pytest.raises(ProfileError, match="no shipped profile 'strictest'"):
        load_profile("strictest")
