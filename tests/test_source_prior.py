import numpy as np
import pytest

from filters.clip_data import N_LANDMARKS, ClipData
from filters.source_prior import DEFAULT_PRIORS, SourcePriorScorer


def clip_with_tag(tag: str | None) -> ClipData:
    record = {} if tag is None else {"source_tag": tag}
    return ClipData(key="k", frames=np.zeros((1, 8, 8, 3), np.uint8), fps=25.0, audio=np.zeros(640, np.float32),
                    audio_rate=16000, landmarks=np.full((1, N_LANDMARKS, 3), np.nan, np.float32), record=record)


def test_default_priors_and_unknown_tags():
    scorer = SourcePriorScorer()
    assert scorer.score(clip_with_tag("interview")) == {"source_prior": 0.9, "source_denied": 0.0}
    assert DEFAULT_PRIORS["interview"] > DEFAULT_PRIORS["news"] > DEFAULT_PRIORS["vlog"] > DEFAULT_PRIORS["singing"]
    assert scorer.score(clip_with_tag("singing"))["source_prior"] == 0.4
    assert scorer.score(clip_with_tag("podcast"))["source_prior"] == 0.5
    assert scorer.score(clip_with_tag(None))["source_prior"] == 0.5


def test_configured_priors_replace_the_defaults():
    scorer = SourcePriorScorer(priors={"podcast": 0.8}, default=0.3)
    assert scorer.score(clip_with_tag("podcast"))["source_prior"] == 0.8
    assert scorer.score(clip_with_tag("interview"))["source_prior"] == 0.3


def test_deny_and_allow_lists():
    scorer = SourcePriorScorer(deny=["singing"])
    assert scorer.score(clip_with_tag("singing")) == {"source_prior": 0.0, "source_denied": 1.0}
    assert scorer.score(clip_with_tag("news")) == {"source_prior": 0.85, "source_denied": 0.0}
    allowing = SourcePriorScorer(allow=["interview", "news"], deny=["news"])
    assert allowing.score(clip_with_tag("interview")) == {"source_prior": 0.9, "source_denied": 0.0}
    assert allowing.score(clip_with_tag("vlog")) == {"source_prior": 0.0, "source_denied": 1.0}
    assert allowing.score(clip_with_tag("news"))["source_denied"] == 1.0  # deny wins over allow


def test_from_config():
    scorer = SourcePriorScorer.from_config({"priors": {"vlog": 0.6}, "deny": ["news"]})
    assert scorer.score(clip_with_tag("vlog"))["source_prior"] == 0.6
    assert scorer.score(clip_with_tag("news"))["source_denied"] == 1.0
    assert SourcePriorScorer.from_config({}).score(clip_with_tag("vlog"))["source_prior"] == 0.7


@pytest.mark.parametrize(
    "config, message",
    [
        ({"prior": {"vlog": 0.6}}, r"unknown source prior config key\(s\) \['prior'\]"),
        ({"deny": "singing"}, "must be a list of tags"),
        ({"priors": {"vlog": 1.5}}, "'vlog' must be a number in \\[0, 1\\]"),
        ({"default": "high"}, "'<default>' must be a number"),
    ],
)
def test_bad_config_is_a_clear_error(config, message):
    with pytest.raises(ValueError, match=message):
        SourcePriorScorer.from_config(config)
