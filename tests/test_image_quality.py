import dataclasses
import itertools

import cv2
import numpy as np
import pytest

from filters.crop import crop_and_resize
from filters.image_quality import (
    ImageQualityScorer,
    LearnedIQAConfig,
    LearnedIQAScorer,
    build_learned_iqa_net,
    combined_iqa,
    save_learned_iqa,
)
from filters.synthetic import SpeakerSpec
from tests.clip_factory import make_clip

SPEC = SpeakerSpec(seed=1, duration_s=3.0, width=512, height=512)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(SPEC, tmp_path_factory.mktemp("clean"))[0]


def score(clip, frames=None, record=None):
    changed = dataclasses.replace(clip, frames=clip.frames if frames is None else frames,
                                  record=clip.record if record is None else record)
    return ImageQualityScorer().score(changed)


def each_frame(clip, transform):
    return np.stack([transform(frame) for frame in clip.frames])


def jpeg(image, quality):
    return cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_UNCHANGED)


def add_noise(clip, std):
    rng = np.random.default_rng(0)
    return each_frame(clip, lambda f: cv2.add(f, rng.standard_normal(f.shape).astype(np.float32) * std, dtype=cv2.CV_8U))


def test_columns_and_clean_clip(clip):
    scores = score(clip)
    assert set(scores) == {"iqa", "sharpness", "reblur_ratio", "face_px", "exposure_clip", "noise", "blockiness"}
    assert scores["face_px"] == clip.record["face_px"]
    assert scores["iqa"] > 0.9 and scores["exposure_clip"] < 0.01 and scores["noise"] < 1.5 and scores["blockiness"] < 0.2


def test_iqa_and_sharpness_fall_monotonically_with_blur(clip):
    results = [score(clip, each_frame(clip, lambda f: cv2.GaussianBlur(f, (0, 0), sigma)) if sigma else None)
               for sigma in (0, 1, 2, 4)]
    for key in ("iqa", "sharpness"):
        values = [r[key] for r in results]
        assert all(a > b for a, b in itertools.pairwise(values)), (key, values)
    assert results[-1]["iqa"] < 0.75 * results[0]["iqa"]


def test_reblur_ratio_tells_blur_from_low_detail(clip):
    """Halving the face's contrast quarters the Laplacian variance but leaves reblur_ratio where it was; a
    blur raises reblur_ratio past strict's bound (0.25) however much contrast the face has."""
    def low_contrast(frame):
        return (frame.astype(np.float32) * 0.5 + 64).astype(np.uint8)

    clean = score(clip)
    faint = score(clip, each_frame(clip, low_contrast))
    blurred = score(clip, each_frame(clip, lambda f: cv2.GaussianBlur(f, (0, 0), 2.0)))
    faint_blurred = score(clip, each_frame(clip, lambda f: low_contrast(cv2.GaussianBlur(f, (0, 0), 2.0))))
    assert faint["sharpness"] < 0.35 * clean["sharpness"]
    assert faint["reblur_ratio"] == pytest.approx(clean["reblur_ratio"], abs=0.03)
    assert clean["reblur_ratio"] < 0.25 < blurred["reblur_ratio"]
    assert faint_blurred["reblur_ratio"] > 0.25 and faint_blurred["reblur_ratio"] > faint["reblur_ratio"] + 0.1


def test_iqa_falls_monotonically_with_noise_and_noise_is_measured(clip):
    stds = (0, 8, 16, 32)
    results = [score(clip, add_noise(clip, std) if std else None) for std in stds]
    iqa = [r["iqa"] for r in results]
    assert all(a > b for a, b in itertools.pairwise(iqa)), iqa
    noise = [r["noise"] for r in results]
    assert all(a < b for a, b in itertools.pairwise(noise)), noise
    assert noise[2] / noise[1] == pytest.approx(2.0, rel=0.2)  # σ̂ is proportional to the added noise


@pytest.mark.parametrize("degradation", [{"blur_sigma": 3.0}, {"noise_std": 20.0}])
def test_degraded_generator_videos_score_worse(clip, tmp_path, degradation):
    degraded = make_clip(dataclasses.replace(SPEC, **degradation), tmp_path)[0]
    clean, worse = score(clip), score(degraded)
    assert worse["iqa"] < clean["iqa"] - 0.05
    if "blur_sigma" in degradation:
        assert worse["sharpness"] < 0.5 * clean["sharpness"]
    else:
        assert worse["noise"] > 3 * clean["noise"]


def test_exposure_clip_rises_when_over_exposed(clip):
    over = score(clip, np.clip(clip.frames.astype(np.int16) * 2, 0, 255).astype(np.uint8))
    clean = score(clip)
    assert over["exposure_clip"] > 0.3 > 0.01 > clean["exposure_clip"]
    assert over["iqa"] < clean["iqa"]


def test_blockiness_rises_with_jpeg_on_the_clip_grid(clip):
    blocky = score(clip, each_frame(clip, lambda f: jpeg(f, 10)))
    clean = score(clip)
    assert blocky["blockiness"] > 1.0 > 0.2 > clean["blockiness"]
    assert blocky["iqa"] < clean["iqa"]


def test_blockiness_of_a_source_resized_into_the_crop(clip):
    """JPEG blocks of a 372-px source cropped at an offset of 5 px land on an 11-px grid in the 512-px crop."""
    side, offset = 372, 5
    box = np.array([offset, offset, offset + side, offset + side])

    def through_source(frame, quality):
        source = np.zeros((offset + side, offset + side, 3), np.uint8)
        source[offset:, offset:] = cv2.resize(frame, (side, side), interpolation=cv2.INTER_AREA)
        return crop_and_resize(source if quality is None else jpeg(source, quality), box, clip.frames.shape[1])

    record = {**clip.record, "crop_boxes": [box.tolist()] * clip.n_frames}
    clean = score(clip, each_frame(clip, lambda f: through_source(f, None)), record)
    blocky_frames = each_frame(clip, lambda f: through_source(f, 10))
    blocky = score(clip, blocky_frames, record)
    clip_grid_only = score(clip, blocky_frames, {k: v for k, v in record.items() if k != "crop_boxes"})
    assert blocky["blockiness"] > 0.8 > 0.2 > max(clean["blockiness"], clip_grid_only["blockiness"])


def test_frames_without_landmarks_use_the_central_region(clip):
    scores = score(dataclasses.replace(clip, landmarks=np.full_like(clip.landmarks, np.nan)))
    assert all(np.isfinite(v) for v in scores.values())
    assert scores["iqa"] > 0.8


def test_combined_iqa_is_bounded_and_monotone_in_every_term():
    base = {"sharpness": 100.0, "face_px": 150.0, "exposure_clip": 0.02, "noise": 3.0, "blockiness": 0.3}
    directions = {"sharpness": +1, "face_px": +1, "exposure_clip": -1, "noise": -1, "blockiness": -1}
    for name, direction in directions.items():
        values = [combined_iqa(**{**base, name: base[name] * factor}) for factor in (0.25, 0.5, 1, 2, 4)]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert all(direction * (b - a) > 0 for a, b in itertools.pairwise(values)), (name, values)
    assert combined_iqa(0.0, 150.0, 0.0, 0.0, 0.0) == 0.0


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_learned_iqa_round_trips_from_local_weights(clip, tmp_path, suffix):
    import torch

    torch.manual_seed(0)
    config = LearnedIQAConfig(channels=(8, 16))
    net = build_learned_iqa_net(config).eval()
    path = tmp_path / f"iqa{suffix}"
    save_learned_iqa(net, config, path)
    scorer = LearnedIQAScorer(path)
    batch = scorer.batch(clip)
    assert batch.shape == (len(range(0, clip.n_frames, scorer.frame_step)), 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(net(batch), scorer.net(batch))
    value = scorer.score(clip)["iqa_learned"]
    assert 0.0 <= value <= 1.0
    assert scorer.version.startswith("1+") and len(scorer.version) == 14


def test_learned_iqa_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        LearnedIQAScorer(tmp_path / "nowhere.safetensors")
    config = LearnedIQAConfig(channels=(4,))
    save_learned_iqa(build_learned_iqa_net(config), config, tmp_path / "m.safetensors")
    (tmp_path / "m.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"m\.json"):
        LearnedIQAScorer(tmp_path / "m.safetensors")
