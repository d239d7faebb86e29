"""`make demo`'s comparison (`fada.demo`): teacher and fast student on the same speech, side by side, and a strip."""

from __future__ import annotations

import numpy as np
import soundfile
import torch
from PIL import Image
from skimage import data as sample_images

from fada.checkpoint import save_inference_checkpoint
from fada.codec import PixelCodec
from fada.config import load_config
from fada.demo import compare_teacher_and_fast, frame_strip
from fada.model import FadaModel, student_from_teacher


def test_frame_strip_puts_the_portrait_left_and_spreads_frames_over_each_video():
    portrait = np.full((4, 4, 3), 7, np.uint8)
    videos = [np.stack([np.full((4, 4, 3), 10 * i + row, np.uint8) for i in range(20)]) for row in (1, 2)]
    strip = frame_strip(portrait, videos, count=3)
    assert strip.shape == (8, 16, 3)
    assert (strip[:4, :4] == 7).all() and (strip[4:, :4] == 0).all()
    assert [strip[0, 4 * (k + 1), 0] for k in range(3)] == [1, 101, 191]  # frames 0, 10 (rounded), 19
    assert [strip[4, 4 * (k + 1), 0] for k in range(3)] == [2, 102, 192]


def test_teacher_and_fast_student_generate_the_same_speech_side_by_side(tmp_path):
    from decord import VideoReader

    config = load_config("tiny")
    config["train"]["num_frames"] = 4
    torch.manual_seed(0)
    teacher = FadaModel(**config["model"])
    save_inference_checkpoint(tmp_path / "teacher", teacher, PixelCodec(32), {"kind": "teacher", "config": config})
    student_config = {**{k: v for k, v in config.items() if k != "sample"},  # the teacher's sample section is for 75 NFE
                      "model": {**config["model"], "cfg_variant": "layer-tokens", "cfg_num_tokens": 4}}
    save_inference_checkpoint(tmp_path / "student", student_from_teacher(teacher, "layer-tokens"), PixelCodec(32),
                              {"kind": "student", "config": student_config})
    portrait = tmp_path / "astronaut.png"
    Image.fromarray(sample_images.astronaut()).save(portrait)
    speech = tmp_path / "speech.wav"
    t = np.arange(int(0.3 * 16000)) / 16000
    soundfile.write(speech, 0.3 * np.sin(2 * np.pi * 180 * t), 16000)

    videos = compare_teacher_and_fast(tmp_path / "teacher", tmp_path / "student", portrait, speech, tmp_path,
                                      output_size=32)
    assert videos.frames == 8 and (videos.teacher_nfe, videos.fast_nfe) == (75, 6)
    assert videos.teacher_s > 0 and videos.fast_s > 0 and videos.speedup == videos.teacher_s / videos.fast_s
    side = VideoReader(str(videos.side_by_side))
    assert len(side) == 8 and side[0].shape == (32, 96, 3)
    teacher_video = VideoReader(str(tmp_path / "generated.mp4")).get_batch(range(8)).asnumpy().astype(int)
    fast_video = VideoReader(str(tmp_path / "generated_fast.mp4")).get_batch(range(8)).asnumpy().astype(int)
    both = side.get_batch(range(8)).asnumpy().astype(int)
    assert np.abs(both[:, :, 32:64] - teacher_video).mean() < 8  # the middle third is the teacher (lossy H.264)
    assert np.abs(both[:, :, 64:] - fast_video).mean() < 8
    assert np.array(Image.open(videos.strip)).shape == (64, 32 * 9, 3)
    assert not list(tmp_path.glob(".*partial*"))
