"""Generation: the video's frames, size, fps and audio; NFE-D; inputs of every kind and the bad ones."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image
from skimage import data as sample_images

from fada.checkpoint import save_inference_checkpoint
from fada.codec import PixelCodec
from fada.config import load_config
from fada.media import AudioStream, InputError, SilentAudioWarning, load_portrait
from fada.model import FadaModel
from fada.pipeline import FadaPipeline


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = load_config("tiny")
    config["train"]["num_frames"] = 4
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "teacher"
    save_inference_checkpoint(path, FadaModel(**config["model"]), PixelCodec(32), {"kind": "teacher", "config": config})
    return path


@pytest.fixture(scope="module")
def portrait(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "astronaut.png"
    Image.fromarray(sample_images.astronaut()).save(path)
    return path


def speech(path, seconds: float, rate: int, channels: int = 1, amplitude: float = 0.3):
    t = np.arange(int(seconds * rate)) / rate
    tone = amplitude * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    soundfile.write(path, np.repeat(tone[:, None], channels, axis=1), rate)
    return path


def test_teacher_video_has_the_audio_length_frames_size_fps_and_75_nfe(checkpoint, portrait, tmp_path):
    from decord import AudioReader, VideoReader

    audio = speech(tmp_path / "a.wav", 0.3, 22050, channels=2)  # 7.5 → 8 frames, two clips of 4
    pipeline = FadaPipeline.from_checkpoint(checkpoint, "teacher", device="cpu", output_size=64)
    result = pipeline.generate(portrait, audio, tmp_path / "out.mp4", progress=False)
    assert result.nfe_per_clip == 75 and result.clips == 2 and result.nfe_total == 150
    video = VideoReader(str(tmp_path / "out.mp4"))
    assert len(video) == 8 == result.frames
    assert video[0].shape == (64, 64, 3) and video.get_avg_fps() == pytest.approx(25)
    sound = AudioReader(str(tmp_path / "out.mp4"), sample_rate=16000, mono=True)
    assert sound.shape[1] / 16000 == pytest.approx(0.3, abs=0.03)
    assert not list(tmp_path.glob(".*partial*"))


def test_same_seed_same_video_and_clips_continue_from_motion_frames(checkpoint, portrait):
    pipeline = FadaPipeline.from_checkpoint(checkpoint, "teacher", device="cpu", num_inference_steps=3)
    image = load_portrait(portrait, 32)

    class Audio:  # 6 frames of audio: a full clip of 4 and a partial one
        n_frames = 6

        def frames_audio(self, context, clip):
            for first in range(0, 6, clip):
                yield first, np.full((clip + 2 * context) * 640, 0.1, np.float32)

    first = np.stack(list(pipeline.frames(image, Audio(), seed=3)))
    again = np.stack(list(pipeline.frames(image, Audio(), seed=3)))
    assert first.shape == (6, 32, 32, 3) and np.array_equal(first, again)
    assert pipeline.nfe.total == 2 * 2 * 3 * 3  # two videos × two clips × three steps × three passes


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "CMYK"])
def test_portraits_of_any_mode_become_rgb_face_crops(portrait, tmp_path, mode):
    image = Image.open(portrait)
    if mode == "I;16":
        converted = Image.fromarray((np.asarray(image.convert("L")).astype(np.uint16) * 256))
    else:
        converted = image.convert(mode)
    path = tmp_path / f"p.{'tiff' if mode in ('CMYK', 'I;16') else 'png'}"
    converted.save(path)
    crop = load_portrait(path, 48)
    assert crop.shape == (48, 48, 3) and crop.dtype == np.uint8


def test_bad_portraits_get_clear_errors(portrait, tmp_path):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(blank)
    with pytest.raises(InputError, match="no face"):
        load_portrait(blank, 32)
    with pytest.raises(InputError, match="larger than 1000 pixels"):
        load_portrait(portrait, 32, max_pixels=1000)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="not a readable image"):
        load_portrait(garbage, 32)


@pytest.mark.parametrize("rate,channels,suffix", [(8000, 1, "wav"), (44100, 2, "flac"), (48000, 6, "ogg"),
                                                  (16000, 1, "wav")])
def test_audio_of_any_rate_and_layout_is_16k_mono_per_frame(tmp_path, rate, channels, suffix):
    path = speech(tmp_path / f"a.{suffix}", 1.0, rate, channels)
    stream = AudioStream(path, block_s=0.3)
    assert stream.n_frames == 25
    clips = list(stream.frames_audio(context_frames=2, clip_frames=8))
    assert [first for first, _ in clips] == [0, 8, 16, 24]
    assert all(len(audio) == (8 + 4) * 640 for _, audio in clips)
    # block-wise resampling agrees with resampling the whole file (the blocks' seams are invisible)
    import librosa

    whole = librosa.resample(librosa.to_mono(soundfile.read(path, always_2d=True)[0].T), orig_sr=rate, target_sr=16000)
    streamed = np.concatenate(list(stream.blocks()))
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole)) - 400
    assert np.corrcoef(streamed[400:n], whole[400:n])[0, 1] > 0.99


def test_long_audio_streams_in_bounded_blocks(tmp_path):
    path = speech(tmp_path / "long.wav", 12.0, 16000)
    stream = AudioStream(path, block_s=2.0)
    assert max(len(block) for block in stream.blocks()) <= 2 * 16000
    clips = list(stream.frames_audio(context_frames=2, clip_frames=16))
    assert len(clips) == -(-300 // 16)
    whole = soundfile.read(path, dtype="float32")[0]
    first, audio = clips[3]
    assert np.allclose(audio[2 * 640: -2 * 640], whole[first * 640:(first + 16) * 640], atol=1e-4)


def test_silent_audio_warns_and_unreadable_audio_is_refused(tmp_path):
    silent = speech(tmp_path / "silent.wav", 0.5, 16000, amplitude=0.0)
    with pytest.warns(SilentAudioWarning, match="silent"):
        list(AudioStream(silent).frames_audio(2, 4))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....garbage")
    with pytest.raises(InputError, match="not a readable audio file"):
        AudioStream(bad)
    with pytest.raises(InputError, match="no such audio file"):
        AudioStream(tmp_path / "missing.wav")


def test_student_modes_need_a_student(checkpoint):
    with pytest.raises(ValueError, match="need a distilled student"):
        FadaPipeline.from_checkpoint(checkpoint, "fast", device="cpu")


def test_cpu_layout_and_threads_leave_the_denoised_latents_unchanged(checkpoint):
    """The CPU defaults (channels-last convolution weights) compute the same clip as the plain layout."""
    plain = FadaPipeline.from_checkpoint(checkpoint, "teacher", device="cpu", num_inference_steps=3, channels_last=False)
    fast = FadaPipeline.from_checkpoint(checkpoint, "teacher", device="cpu", num_inference_steps=3)
    channels_last = torch.channels_last
    assert fast.model.denoising_net.conv_in.weight.is_contiguous(memory_format=channels_last)
    assert not plain.model.denoising_net.conv_in.weight.is_contiguous(memory_format=channels_last)
    torch.manual_seed(1)
    reference = torch.rand(1, 3, 32, 32) * 2 - 1
    motion = reference[:, None].repeat(1, 2, 1, 1, 1)
    audio = torch.randn((4 + 2 * plain.model.audio_context_frames) * 640) * 0.1
    latents = [pipeline.denoise_clip(motion, audio, pipeline.reference_banks(reference)[1],
                                     torch.Generator().manual_seed(0)) for pipeline in (plain, fast)]
    torch.testing.assert_close(latents[1], latents[0], atol=1e-4, rtol=1e-4)
    assert latents[0].abs().max() > 0.1


def test_generation_uses_the_available_cores_unless_omp_threads_are_set(monkeypatch):
    import os

    from fada.pipeline import use_available_cores

    previous = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(1)
        assert use_available_cores() == len(os.sched_getaffinity(0))
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as Ray sets it in a one-CPU worker
        torch.set_num_threads(1)
        assert use_available_cores() == 1
    finally:
        torch.set_num_threads(previous)


# --- what a checkpoint carries: its scheduler and its sampling defaults --------------------------------------


def _save(path, kind: str, config: dict, scheduler=None):
    torch.manual_seed(0)
    save_inference_checkpoint(path, FadaModel(**config["model"]), PixelCodec(32), {"kind": kind, "config": config},
                              scheduler)
    return path


def _student_config(**train) -> dict:
    config = load_config("tiny")
    config["model"]["cfg_variant"] = "none"  # runs in both student modes
    config["train"] = {"num_frames": 4, **train}
    return config


def test_the_pipeline_samples_with_the_scheduler_the_checkpoint_carries(tmp_path):
    from diffusers import DDIMScheduler

    from fada.perflow_scheduler import PeRFlowScheduler
    from fada.pipeline import make_scheduler

    teacher_scheduler = DDIMScheduler.from_config({**make_scheduler("teacher").config, "steps_offset": 0})
    teacher = _save(tmp_path / "teacher", "teacher", load_config("tiny"), teacher_scheduler)
    assert (teacher / "scheduler" / "scheduler_config.json").is_file()
    pipe = FadaPipeline.from_checkpoint(teacher, "teacher", device="cpu")
    assert isinstance(pipe.scheduler, DDIMScheduler) and pipe.scheduler.config.steps_offset == 0  # read, not rebuilt

    student = _save(tmp_path / "student", "student", _student_config(num_windows=4), PeRFlowScheduler(num_time_windows=2))
    for mode in ("fast", "balanced"):
        pipe = FadaPipeline.from_checkpoint(student, mode, device="cpu")
        assert isinstance(pipe.scheduler, PeRFlowScheduler) and pipe.scheduler.config.num_time_windows == 2
    pipe.scheduler.set_timesteps(6)
    assert pipe.scheduler.timesteps.tolist() == [1000, 833, 666, 500, 333, 166]  # 3 steps in each of 2 windows
    # a student sampled in teacher mode gets the teacher's DDIM, not its PeRFlow configuration
    assert isinstance(FadaPipeline.from_checkpoint(student, "teacher", device="cpu").scheduler, DDIMScheduler)


def test_checkpoints_without_a_scheduler_fall_back_to_the_mode_default(tmp_path):
    from diffusers import DDIMScheduler

    old_teacher = _save(tmp_path / "teacher", "teacher", load_config("tiny"))
    assert not (old_teacher / "scheduler").exists()
    scheduler = FadaPipeline.from_checkpoint(old_teacher, "teacher", device="cpu").scheduler
    assert isinstance(scheduler, DDIMScheduler) and scheduler.config.steps_offset == 1  # SD1.5's settings
    assert scheduler.config.beta_schedule == "scaled_linear" and not scheduler.config.set_alpha_to_one
    # an old student: PeRFlow with the windows it was distilled with (4 when its config does not say)
    old_student = _save(tmp_path / "student", "student", _student_config(num_windows=3))
    assert FadaPipeline.from_checkpoint(old_student, "fast", device="cpu").scheduler.config.num_time_windows == 3
    older = _save(tmp_path / "older", "student", _student_config())
    assert FadaPipeline.from_checkpoint(older, "fast", device="cpu").scheduler.config.num_time_windows == 4


def test_the_sample_section_sets_the_defaults_of_the_checkpoints_own_mode(tmp_path):
    config = load_config("tiny")
    config["sample"] = {"num_inference_steps": 4, "guidance_reference": 1.5, "guidance_audio": 3.0}
    teacher = _save(tmp_path / "teacher", "teacher", config)
    pipe = FadaPipeline.from_checkpoint(teacher, "teacher", device="cpu")
    assert (pipe.steps, pipe.passes, pipe.s_r, pipe.s_a) == (4, 3, 1.5, 3.0)
    pipe = FadaPipeline.from_checkpoint(teacher, "teacher", device="cpu", num_inference_steps=7, guidance_audio=5.0)
    assert (pipe.steps, pipe.s_r, pipe.s_a) == (7, 1.5, 5.0)  # explicit arguments win
    del config["sample"]
    plain = FadaPipeline.from_checkpoint(_save(tmp_path / "plain", "teacher", config), "teacher", device="cpu")
    assert (plain.steps, plain.s_r, plain.s_a) == (25, 2.5, 6.5)  # MODE_DEFAULTS

    student_config = _student_config()
    student_config["sample"] = {"num_inference_steps": 8, "guidance_reference": 1.0, "guidance_audio": 4.0}
    student = _save(tmp_path / "student", "student", student_config)
    fast = FadaPipeline.from_checkpoint(student, "fast", device="cpu")
    assert (fast.steps, fast.passes, fast.s_r, fast.s_a) == (8, 1, 1.0, 4.0)  # a student's own mode is fast
    balanced = FadaPipeline.from_checkpoint(student, "balanced", device="cpu")
    assert (balanced.steps, balanced.passes, balanced.s_r, balanced.s_a) == (6, 3, 2.5, 6.5)

    config["sample"] = {"num_inference_steps": 4, "eta": 0.5}
    with pytest.raises(ValueError, match=r"sample section: unknown keys \['eta'\]"):
        FadaPipeline.from_checkpoint(_save(tmp_path / "bad", "teacher", config), "teacher", device="cpu")
