"""MovementScorer on ingested generator clips (512×512 source, 3.5 s): a frozen head, the default gentle
sway (±3° roll, ±4 % of the face height), and a "wild" clip built from the swaying one.

The generator has no wild knob, so the wild clip is the natural clip with a violent head shake added in
crop pixels: every frame is rotated about the crop centre by up to ±20° and shifted by up to ±30 px along
smooth random paths at 0.5–3 Hz (a shaking, bobbing head), and its landmarks get the same affine
transform, so frames and landmarks stay consistent.
"""

from dataclasses import replace

import numpy as np
import pytest

from filters.movement import MovementScorer, head_angles, rigid_points, smoothed
from filters.synthetic import SpeakerSpec
from tests.clip_factory import make_clip, make_wild, smooth_path

SPEC = SpeakerSpec(seed=1, duration_s=3.5, width=512, height=512)


@pytest.fixture(scope="module")
def natural(tmp_path_factory):
    return make_clip(SPEC, tmp_path_factory.mktemp("natural"))


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    return make_clip(replace(SPEC, frozen_head=True), tmp_path_factory.mktemp("frozen"))[0]


@pytest.fixture(scope="module")
def scores(natural, frozen):
    scorer = MovementScorer()
    clip = natural[0]
    return {"frozen": scorer.score(frozen), "natural": scorer.score(clip), "wild": scorer.score(make_wild(clip))}


def test_frozen_head_scores_lowest(scores):
    frozen, natural = scores["frozen"], scores["natural"]
    assert frozen["head_motion"] < 0.6 * natural["head_motion"]
    assert frozen["pose_range_deg"] < 0.6 * natural["pose_range_deg"]
    assert frozen["head_speed_deg_s"] < 0.6 * natural["head_speed_deg_s"]
    assert frozen["pose_range_deg"] < 2.5  # the speaking mouth tilts face mesh's pose a little


def test_wild_motion_scores_highest(scores):
    wild, natural = scores["wild"], scores["natural"]
    assert wild["head_motion"] > 5 * natural["head_motion"]
    assert wild["pose_range_deg"] > 3 * natural["pose_range_deg"]
    assert wild["head_speed_deg_s"] > 3 * natural["head_speed_deg_s"]
    assert wild["pose_range_deg"] > 25  # roll swings ±20°


def test_roll_follows_the_generated_sway(natural):
    """The only rotation the generator applies is roll (clockwise positive, as the scorer's)."""
    clip, truth = natural
    first = round(clip.record["start_s"] * clip.fps)
    true_roll = truth.head_roll_deg[first:first + clip.n_frames]
    found = clip.face_found
    rigid = rigid_points(np.nanmedian(clip.landmarks[found], axis=0))
    roll = smoothed(head_angles(clip.landmarks[:, rigid]), found, 1.0)[:, 2]
    assert np.corrcoef(roll[found], true_roll[found])[0, 1] > 0.95
    assert np.ptp(roll[found]) == pytest.approx(np.ptp(true_roll[found]), rel=0.25)


def test_crop_movement_is_added_back(frozen):
    """A frozen head seen through a crop that drifts ±15 source px: the landmarks move in crop pixels but
    not in the source, so head_motion stays that of the frozen clip; without crop boxes it would not."""
    scorer = MovementScorer()
    boxes = np.array(frozen.record["crop_boxes"], dtype=float)
    drift = np.round(15 * smooth_path(np.random.default_rng(1), frozen.n_frames, frozen.fps)[:, :2])
    moved_boxes = boxes + np.hstack([drift, drift])
    landmarks = frozen.landmarks.copy()
    landmarks[:, :, :2] -= (drift * frozen.frames.shape[1] / (boxes[:, 2:3] - boxes[:, 0:1]))[:, None, :]
    drifting = replace(frozen, landmarks=landmarks, record={**frozen.record, "crop_boxes": moved_boxes.tolist()})
    ignoring_boxes = replace(drifting, record={**drifting.record, "crop_boxes": None})
    base = scorer.score(frozen)["head_motion"]
    assert scorer.score(drifting)["head_motion"] == pytest.approx(base, rel=0.05)
    assert scorer.score(ignoring_boxes)["head_motion"] > 5 * base


def test_clip_without_face_scores_nan(frozen):
    faceless = replace(frozen, landmarks=np.full_like(frozen.landmarks, np.nan))
    assert all(np.isnan(v) for v in MovementScorer().score(faceless).values())
