import cv2
import numpy as np
import pytest

from filters.resize import shrink
from filters.media_writer import EncodeConfig, Mp4Writer


def _smooth_image(rows, cols, seed=0):
    """A natural-looking image: blurred noise with edges, so resampling errors show but stay small."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (rows // 16 + 1, cols // 16 + 1, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (cols, rows), interpolation=cv2.INTER_CUBIC)
    image[rows // 3 : rows // 2, :, 0] = 250  # a sharp band
    return image


def _psnr(a, b):
    return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


@pytest.mark.parametrize("source, target", [((700, 700), (512, 512)), ((1081, 1921), (180, 320)), ((600, 600), (256, 256)), ((512, 512), (512, 512))])
def test_shrink_matches_an_area_resize(source, target):
    image = _smooth_image(*source)
    out = shrink(image, target[1], target[0])
    assert out.shape == (*target, 3) and out.dtype == np.uint8
    reference = cv2.resize(image, (target[1], target[0]), interpolation=cv2.INTER_AREA)
    assert _psnr(out, reference) > 30  # 34–52 dB here; a one-pixel shift gives ~27, swapped axes or channels ~10


def test_shrink_refuses_to_enlarge():
    with pytest.raises(ValueError, match="larger than the image"):
        shrink(np.zeros((100, 100, 3), np.uint8), 200, 50)


def test_encoder_writes_the_configured_x264_options(tmp_path):
    """x264 records its settings in the stream (an SEI message); the configured motion search is there."""
    frames = [np.roll(_smooth_image(64, 64), 2 * i, axis=1) for i in range(10)]
    written = {}
    for label, params in (("dia", "me=dia:subme=1"), ("preset", "")):
        path = tmp_path / f"{label}.mp4"
        with Mp4Writer(path, fps=25, width=64, height=64, config=EncodeConfig(x264_params=params)) as writer:
            for frame in frames:
                writer.write(frame)
        written[label] = path.read_bytes()
    assert b"me=dia" in written["dia"] and b"subme=1" in written["dia"] and b"keyint=25" in written["dia"]
    assert b"me=hex" in written["preset"]  # veryfast's own search when no parameters are given


def test_x264_params_from_the_command_line():
    from flows.cli import UserError, load_ingest_config

    assert load_ingest_config(None, ["encode.x264_params="]).extract.encode.x264_params == ""  # the preset's own
    assert load_ingest_config(None, ["encode.x264_params=me=dia"]).extract.encode.x264_params == "me=dia"
    for bad in ("encode.x264_params=me dia", "encode.x264_params=3"):
        with pytest.raises(UserError, match="x264_params"):
            load_ingest_config(None, [bad])
