"""Motion frames (DESIGN.md §3, `fada.motion_frames`): through the reference net, dropped with the reference in
ε(∅,∅), none on a first clip, noise-augmented in training only."""

from __future__ import annotations

import numpy as np
import torch

from fada.audio_encoder import SAMPLES_PER_FRAME
from fada.codec import PixelCodec
from fada.config import load_config
from fada.model import FadaModel
from fada.motion_frames import augment_motion, no_motion, training_motion
from fada.pipeline import FadaPipeline
from fada.train_teacher import TeacherObjective, TeacherTrainConfig

FRAMES = 3


def tiny_model(seed: int = 0) -> FadaModel:
    torch.manual_seed(seed)
    model = FadaModel(**load_config("tiny")["model"]).eval()
    with torch.no_grad():  # no zero-initialised layer left (the temporal layers would hide nothing here)
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    return model


def conditions(seed: int):
    generator = torch.Generator().manual_seed(seed)
    reference = torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1
    motion = torch.rand(1, 2, 3, 32, 32, generator=generator) * 2 - 1
    return reference, motion


def test_unconditional_pass_sees_neither_the_reference_nor_the_motion_frames():
    model = tiny_model()
    pipe = FadaPipeline(model, PixelCodec(32), "teacher", clip_frames=FRAMES)
    latents = torch.randn(3, FRAMES, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    tokens = model.encode_audio(torch.randn(1, (FRAMES + 4) * SAMPLES_PER_FRAME) * 0.1, FRAMES)
    tokens = torch.cat([tokens, torch.zeros_like(tokens), torch.zeros_like(tokens)])  # [a, ∅, ∅]

    def passes(reference, motion):
        with torch.no_grad():
            bank = pipe.clip_bank(pipe.reference_banks(reference)[1], motion)
            return model(latents, torch.full((3,), 500), tokens, bank).chunk(3)

    eps_ra, eps_r, eps_none = passes(*conditions(1))
    other_reference, other_motion = conditions(2)
    same_reference = passes(conditions(1)[0], other_motion)
    both_other = passes(other_reference, other_motion)
    torch.testing.assert_close(both_other[2], eps_none, atol=0, rtol=0)  # ε(∅,∅): independent of both
    torch.testing.assert_close(same_reference[2], eps_none, atol=0, rtol=0)
    assert not torch.allclose(same_reference[1], eps_r, atol=1e-4)  # ε(r,∅) does see the motion frames
    assert not torch.allclose(both_other[0], eps_ra, atol=1e-4)


def test_teacher_training_drops_motion_frames_with_the_reference():
    """With drop_both_rate = 1 every sample is ε(∅,∅): its loss cannot depend on the reference or motion frames."""
    model = tiny_model()
    generator = torch.Generator().manual_seed(3)
    latents = torch.rand(2, 2 + FRAMES, 3, 32, 32, generator=generator) * 2 - 1
    audio = torch.randn(2, (FRAMES + 4) * SAMPLES_PER_FRAME, generator=generator) * 0.1
    reference = torch.rand(2, 3, 32, 32, generator=generator) * 2 - 1

    def loss(drop_both_rate, reference, motion):
        config = TeacherTrainConfig(num_frames=FRAMES, drop_both_rate=drop_both_rate, motion_drop_rate=0.0)
        objective = TeacherObjective(model, config)
        with torch.no_grad():
            return objective(torch.cat([motion, latents[:, 2:]], 1), reference, audio, torch.Generator().manual_seed(4))

    motion, other = latents[:, :2], latents[:, :2].flip(0) + 0.5
    dropped = loss(1.0, reference, motion)
    torch.testing.assert_close(loss(1.0, reference.flip(0), other), dropped, atol=0, rtol=0)
    kept = loss(0.0, reference, motion)
    assert not torch.allclose(loss(0.0, reference, other), kept, atol=1e-6)
    assert not torch.allclose(loss(0.0, reference.flip(0), motion), kept, atol=1e-6)


def test_a_first_clip_has_no_motion_frames_not_copies_of_the_reference():
    model = tiny_model()
    pipe = FadaPipeline(model, PixelCodec(32), "teacher", num_inference_steps=2, clip_frames=FRAMES)
    portrait = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)

    class OneClip:
        n_frames = FRAMES

        def frames_audio(self, context, clip):
            yield 0, np.full((clip + 2 * context) * SAMPLES_PER_FRAME, 0.1, np.float32)

    video = np.stack(list(pipe.frames(portrait, OneClip(), seed=5)))
    reference = pipe.codec.encode(torch.from_numpy(portrait).permute(2, 0, 1)[None].float().div(127.5).sub(1))
    assert torch.equal(no_motion(reference, 2), torch.zeros(1, 2, 3, 32, 32))
    audio = torch.full(((FRAMES + 2 * model.audio_context_frames) * SAMPLES_PER_FRAME,), 0.1)

    def first_clip(motion):
        latents = pipe.denoise_clip(motion, audio, pipe.reference_banks(reference)[1], torch.Generator().manual_seed(5))
        images = pipe.codec.decode(latents[0], 32)
        return ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    np.testing.assert_array_equal(video, first_clip(no_motion(reference, 2)))
    copies = first_clip(reference[:, None].repeat(1, 2, 1, 1, 1))
    assert np.abs(copies.astype(int) - video.astype(int)).max() > 0  # the rule decides what the first clip sees


def test_motion_noise_augments_training_only_and_never_the_no_motion_state():
    model = tiny_model()
    generator = torch.Generator().manual_seed(6)
    latents = torch.rand(2, 2 + FRAMES, 3, 32, 32, generator=generator) * 2 - 1
    audio = torch.randn(2, (FRAMES + 4) * SAMPLES_PER_FRAME, generator=generator) * 0.1

    def loss(motion_noise, training):
        config = TeacherTrainConfig(num_frames=FRAMES, motion_noise=motion_noise, motion_drop_rate=0.0,
                                    drop_both_rate=0.0, drop_audio_rate=0.0)
        objective = TeacherObjective(model, config).train(training)
        with torch.no_grad():
            return objective(latents, latents[:, 2], audio, torch.Generator().manual_seed(7))

    assert TeacherTrainConfig().motion_noise > 0  # on by default
    torch.testing.assert_close(loss(0.5, training=False), loss(0.0, training=False), atol=0, rtol=0)
    assert not torch.allclose(loss(0.5, training=True), loss(0.0, training=True), atol=1e-6)

    motion = latents[:, :2]
    noisy = augment_motion(motion, 0.5, torch.Generator().manual_seed(8))
    spread = (noisy - motion).flatten(1).std(1)
    assert (spread > 0).all() and (spread < 0.5 * 1.05).all()  # σ ~ U(0, 0.5) per sample
    kept = training_motion(motion, torch.tensor([1.0, 0.0]), 0.5, torch.Generator().manual_seed(8))
    torch.testing.assert_close(kept[0], noisy[0])
    assert torch.equal(kept[1], torch.zeros_like(motion[1]))  # dropped: exactly the first clip's state
