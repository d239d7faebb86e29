"""FID Inception and R3D-18 feature networks: strict local loading, output shapes, and FID/FVD end to end.

The networks are randomly initialised (seeded) and saved to a temporary file as the published weights would be;
their convolutions are re-initialised with Kaiming normal weights so the untrained features keep their scale.
"""

import numpy as np
import pytest
import torch
from torch import nn

from fada.metrics import MissingWeightsError, WeightsMismatchError
from fada.metrics import inception, video_features
from fada.metrics.fid import compute_fid, fid_from_features
from fada.metrics.fvd import compute_fvd
from fada.metrics.inception import FIDInceptionV3, inception_features, load_fid_inception
from fada.metrics.video_features import R3D18, load_r3d18, split_clips
from tests.random_weights import kaiming_init


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / inception.WEIGHTS_FILE
    torch.save(kaiming_init(FIDInceptionV3()).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def r3d_weights(tmp_path_factory):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "r3d_18.safetensors"
    save_file(kaiming_init(R3D18()).state_dict(), str(path))
    return path


def _smooth_images(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """n smooth random RGB images (n, size, size, 3) uint8 in [30, 150], so brightness shifts do not clip."""
    low = np.random.default_rng(seed).uniform(30, 150, size=(n, 3, 8, 8)).astype(np.float32)
    up = nn.functional.interpolate(torch.from_numpy(low), size=(size, size), mode="bilinear", align_corners=False)
    return up.round().byte().permute(0, 2, 3, 1).numpy()


def _moving_video(n_frames: int, seed: int) -> np.ndarray:
    """A smooth random image drifting 2 px per frame: (n_frames, 64, 64, 3) uint8."""
    image = _smooth_images(1, seed=seed)[0]
    return np.stack([np.roll(image, 2 * t, axis=1) for t in range(n_frames)])


def _brighter(frames: np.ndarray, offset: int) -> np.ndarray:
    return np.clip(frames.astype(np.int16) + offset, 0, 255).astype(np.uint8)


def test_inception_loads_strictly_and_gives_pool3_features(inception_weights):
    net = load_fid_inception(inception_weights)
    assert not net.training
    with torch.no_grad():
        assert net(torch.zeros(2, 3, 75, 75)).shape == (2, inception.FEATURE_DIM)  # smallest input it takes
    x = inception.preprocess(_smooth_images(2))
    assert x.shape == (2, 3, 299, 299) and -1 <= x.min() and x.max() <= 1
    features = inception_features(net, _smooth_images(3), batch_size=2)  # two batches
    assert features.shape == (3, 2048) and features.dtype == np.float64 and np.isfinite(features).all()
    with pytest.raises(ValueError, match="uint8"):
        inception_features(net, _smooth_images(2).astype(np.float32))


def test_r3d_loads_strictly_and_gives_pooled_features(r3d_weights):
    net = load_r3d18(r3d_weights)
    assert not net.training
    assert video_features.preprocess(_moving_video(5, seed=0)).shape == (3, 5, 112, 112)
    # 20 frames: two 8-frame clips, tail dropped; 5 frames: one clip padded with the last frame.
    features = video_features.video_features(net, [_moving_video(20, seed=1), _moving_video(5, seed=2)], clip_len=8)
    assert features.shape == (2, 512) and features.dtype == np.float64 and np.isfinite(features).all()


def test_split_clips_drops_short_tail_and_pads_short_video():
    video = np.arange(40)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    clips = split_clips(video, clip_len=16)
    assert [clip[:, 0, 0, 0].tolist() for clip in clips] == [list(range(16)), list(range(16, 32))]
    (padded,) = split_clips(video[:5], clip_len=16)
    assert padded[:, 0, 0, 0].tolist() == [0, 1, 2, 3] + [4] * 12


@pytest.mark.parametrize(("loader", "file_name", "url"), [
    (load_fid_inception, inception.WEIGHTS_FILE, inception.WEIGHTS_URL),
    (load_r3d18, video_features.WEIGHTS_FILE, video_features.WEIGHTS_URL),
])
def test_missing_weights_name_the_file_and_its_source(tmp_path, loader, file_name, url):
    with pytest.raises(MissingWeightsError) as error:
        loader(tmp_path / "absent.pth")
    assert isinstance(error.value, FileNotFoundError)
    assert file_name in str(error.value) and url in str(error.value) and "absent.pth" in str(error.value)


@pytest.mark.parametrize(("net_class", "loader", "key"), [
    (FIDInceptionV3, load_fid_inception, "Mixed_5b.branch1x1.conv.weight"),
    (R3D18, load_r3d18, "layer2.0.downsample.0.weight"),
])
def test_state_dict_with_a_wrong_key_or_shape_is_rejected(tmp_path, net_class, loader, key):
    state = net_class().state_dict()
    state[key.replace("weight", "kernel")] = state.pop(key)
    path = tmp_path / "renamed.pth"
    torch.save(state, path)
    with pytest.raises(WeightsMismatchError, match="1 missing keys") as error:
        loader(path)
    assert key in str(error.value) and key.replace("weight", "kernel") in str(error.value)

    state[key] = torch.zeros(1)  # right keys, wrong shape
    del state[key.replace("weight", "kernel")]
    torch.save(state, path)
    with pytest.raises(WeightsMismatchError, match="size mismatch"):
        loader(path)


def test_fid_is_zero_for_the_same_frames_and_grows_with_brightness(inception_weights):
    real = _smooth_images(6, seed=3)
    # The same frames, once as a list of two videos: FID ≈ 0.
    assert compute_fid([real[:2], real[2:4]], real[:4], inception_weights) == pytest.approx(0.0, abs=1e-6)

    net = load_fid_inception(inception_weights)
    features = {offset: inception_features(net, _brighter(real, offset)) for offset in (0, 30, 90)}
    small, large = fid_from_features(features[0], features[30]), fid_from_features(features[0], features[90])
    assert 1.0 < small < large


def test_fvd_is_zero_for_the_same_videos_and_grows_with_brightness(r3d_weights):
    real = [_moving_video(16, seed=seed) for seed in range(3)]
    assert compute_fvd(real[:2], real[:2], r3d_weights) == pytest.approx(0.0, abs=1e-6)

    net = load_r3d18(r3d_weights)
    short = [video[:8] for video in real]  # one 8-frame clip per video keeps the test fast
    features = {offset: video_features.video_features(net, [_brighter(v, offset) for v in short], clip_len=8)
                for offset in (0, 30, 90)}
    small, large = fid_from_features(features[0], features[30]), fid_from_features(features[0], features[90])
    assert 1.0 < small < large
