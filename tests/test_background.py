"""BackgroundScorer on ingested generator clips (512×512 source, 3.5 s) and on a crop that wanders over a
still picture.

The generator's default speaker sways gently, so the crop, which follows the face, moves too: the "still"
clip only scores a still background if the crop's own movement is taken out.
"""

from dataclasses import replace

import cv2
import numpy as np
import pytest

from filters.background import BackgroundScorer
from filters.clip_data import ClipData
from filters.crop import crop_and_resize
from filters.synthetic import SpeakerSpec
from tests.clip_factory import make_clip

SPEC = SpeakerSpec(seed=1, duration_s=3.5, width=512, height=512)


@pytest.fixture(scope="module")
def scorer():
    scorer = BackgroundScorer()
    yield scorer
    scorer.close()


@pytest.fixture(scope="module")
def scores(scorer, tmp_path_factory):
    """Scores of a still camera, a shaking camera (6 px, 1–4 Hz) and a scrolling backdrop."""
    variants = {"still": SPEC, "shaky": replace(SPEC, camera_shake_px=6.0),
                "moving": replace(SPEC, moving_background=True)}
    return {name: scorer.score(make_clip(spec, tmp_path_factory.mktemp(name))[0]) for name, spec in variants.items()}


def test_shaky_camera_scores_worse_camera_shake(scores):
    assert scores["still"]["camera_shake"] < 0.3  # px per frame at 512
    assert scores["shaky"]["camera_shake"] > 10 * scores["still"]["camera_shake"]
    assert scores["shaky"]["camera_shake"] > 1.5


def test_moving_background_scores_worse_bg_motion(scores):
    # The backdrop scrolls 1.2–2.4 source px per frame on each axis: about 2–5 px per frame at crop scale.
    assert scores["still"]["bg_motion"] < 0.3
    assert scores["moving"]["bg_motion"] > 10 * scores["still"]["bg_motion"]
    assert scores["moving"]["bg_motion"] > 1.5


def test_steady_scroll_is_not_camera_shake(scores):
    assert scores["moving"]["camera_shake"] < 0.1 * scores["shaky"]["camera_shake"]


def test_background_share_is_the_area_around_the_person(scores):
    shares = [s["bg_share"] for s in scores.values()]
    assert all(0.15 < share < 0.5 for share in shares)  # the person fills most of the face-centred crop
    assert np.ptp(shares) < 0.05


def _wandering_crop_clip(boxes: list[list[int]] | None, frames: np.ndarray) -> ClipData:
    n = len(frames)
    return ClipData(key="texture", frames=frames, fps=25.0, audio=np.zeros(n * 640, np.float32), audio_rate=16000,
                    landmarks=np.full((n, 468, 3), np.nan, np.float32), record={"crop_boxes": boxes})


def test_crop_movement_is_not_background_motion(scorer):
    """A still, person-free picture seen through a crop that jumps by up to 6 source px and changes size
    by up to 2 px every frame (the face track's crop moves at most 1 px per frame): in source terms
    nothing moves. Without the crop boxes the same frames look like a shaking, drifting background, so
    the low scores come from the compensation."""
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.standard_normal((640, 640, 3)).astype(np.float32), (0, 0), 2.0)
    picture = np.clip(128 + 60 * noise / noise.std(), 0, 255).astype(np.uint8)
    n = 40
    sides = 380 + np.cumsum(rng.integers(-2, 3, n))
    corners = 100 + np.cumsum(rng.integers(-6, 7, (n, 2)), axis=0)
    boxes = [[int(x), int(y), int(x + s), int(y + s)] for (x, y), s in zip(corners, sides)]
    frames = np.stack([crop_and_resize(picture, np.array(box), 512) for box in boxes])
    compensated = scorer.score(_wandering_crop_clip(boxes, frames))
    naive = scorer.score(_wandering_crop_clip(None, frames))
    assert compensated["bg_share"] > 0.9
    assert compensated["camera_shake"] < 0.15 and compensated["bg_motion"] < 0.15
    assert naive["camera_shake"] > 3.0 and naive["bg_motion"] > 0.8


def test_featureless_background_gives_nan(scorer):
    """Nothing to track on a flat background: the motion scores are unknown, not zero."""
    frames = np.zeros((6, 512, 512, 3), np.uint8)
    result = scorer.score(_wandering_crop_clip(None, frames))
    assert np.isnan(result["camera_shake"]) and np.isnan(result["bg_motion"])
