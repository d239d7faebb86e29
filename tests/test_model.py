"""The dual-UNet model: shapes, save/load, SD1.5 and wav2vec2 initialisation from local directories, overfitting."""

from __future__ import annotations

import pytest
import torch

from fada.audio_encoder import pad_context
from filters.media_contract import SAMPLES_PER_FRAME
from fada.config import ConfigError, load_config
from fada.model import FadaModel
from fada.train_teacher import TeacherObjective, TeacherTrainConfig, build_model

FRAMES, MOTION = 3, 2


def tiny_model(seed: int = 0, **overrides) -> FadaModel:
    torch.manual_seed(seed)
    return FadaModel(**{**load_config("tiny")["model"], **overrides})


def inputs(model: FadaModel, seed: int = 1, batch: int = 2):
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, FRAMES, 3, 32, 32, generator=generator)
    motion = torch.randn(batch, MOTION, 3, 32, 32, generator=generator)
    reference = torch.randn(batch, 3, 32, 32, generator=generator)
    audio = pad_context(torch.randn(batch, FRAMES * SAMPLES_PER_FRAME, generator=generator) * 0.1, 2)
    return latents, motion, reference, audio


def predict(model: FadaModel, latents, motion, reference, audio, timesteps=(10, 700)):
    with torch.no_grad():
        bank = model.encode_conditions(reference, motion)
        tokens = model.encode_audio(audio, FRAMES)
        return model(latents, torch.tensor(timesteps), tokens, bank)


def test_forward_shapes_and_motion_frames_condition_the_output_through_the_reference_net():
    model = tiny_model().eval()
    latents, motion, reference, audio = inputs(model)
    out = predict(model, latents, motion, reference, audio)
    assert out.shape == latents.shape  # the F denoised frames only: motion frames are not in the sequence
    tokens = model.encode_audio(audio, FRAMES)
    assert tokens.shape == (2, FRAMES, 4, 64)
    with torch.no_grad():
        reference_bank, motion_bank = model.encode_reference(reference), model.encode_motion(motion)
        joined = model.encode_conditions(reference, motion)
    assert len(joined) == model.num_blocks
    for index, features in joined.items():  # per block: the reference's N tokens, then each motion frame's N
        n = reference_bank[index].shape[1]
        assert features.shape == (2, (1 + MOTION) * n, reference_bank[index].shape[2])
        assert motion_bank[index].shape == (2, MOTION * n, features.shape[2])
        torch.testing.assert_close(features, torch.cat([reference_bank[index], motion_bank[index]], 1))
    assert model.encode_motion(motion[:, :0]) == {}
    # the motion frames reach the denoised frames through spatial attention at once (nothing zero-initialised
    # in that path, unlike the temporal layers), and each of them counts
    moved = motion.clone()
    moved[:, 1] += 1.0
    assert not torch.allclose(predict(model, latents, moved, reference, audio), out, atol=1e-4)


def test_reference_and_audio_change_the_prediction():
    model = tiny_model().eval()
    latents, motion, reference, audio = inputs(model)
    out = predict(model, latents, motion, reference, audio)
    assert not torch.allclose(out, predict(model, latents, motion, reference.flip(0), audio), atol=1e-4)
    assert not torch.allclose(out, predict(model, latents, motion, reference, audio.flip(0)), atol=1e-5)


def test_save_and_load_give_identical_outputs(tmp_path):
    model = tiny_model().eval()
    latents, motion, reference, audio = inputs(model)
    model.save_pretrained(tmp_path / "model", safe_serialization=True)
    assert (tmp_path / "model" / "diffusion_pytorch_model.safetensors").is_file()
    assert (tmp_path / "model" / "config.json").is_file()
    loaded = FadaModel.from_pretrained(tmp_path / "model", use_safetensors=True).eval()
    assert torch.equal(predict(model, latents, motion, reference, audio), predict(loaded, latents, motion, reference, audio))


def test_initialises_from_a_local_sd15_directory(tmp_path):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    config = load_config("tiny")
    torch.manual_seed(3)
    unet = UNet2DConditionModel(**config["model"]["unet"])
    unet.save_pretrained(tmp_path / "sd15" / "unet", safe_serialization=True)
    vae = AutoencoderKL(block_out_channels=[8, 16], down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=3, norm_num_groups=4, layers_per_block=1)
    vae.save_pretrained(tmp_path / "sd15" / "vae", safe_serialization=True)
    config["sd15_dir"] = str(tmp_path / "sd15")
    config["codec"] = {"kind": "vae", "size": 64}
    model, codec = build_model(config)
    source = unet.state_dict()
    for net in (model.reference_net, model.denoising_net):
        state = net.state_dict()
        for key, value in source.items():
            assert torch.equal(state[key], value), key
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    assert codec.encode(images).shape == (2, 3, 32, 32)
    assert codec.decode(codec.encode(images)).shape == (2, 3, 64, 64)


def test_wav2vec2_encoder_loads_from_a_local_directory(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from fada.audio_encoder import load_wav2vec2_weights, wav2vec2_audio_config

    w2v_config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                conv_dim=(16, 16, 16, 16, 16, 16, 16), num_conv_pos_embeddings=16,
                                num_conv_pos_embedding_groups=2)
    torch.manual_seed(4)
    Wav2Vec2Model(w2v_config).save_pretrained(tmp_path / "w2v", safe_serialization=True)
    audio_config = wav2vec2_audio_config(str(tmp_path / "w2v"), num_tokens=2, hidden_dim=32)
    model = tiny_model(audio=audio_config)
    load_wav2vec2_weights(model.audio_encoder, str(tmp_path / "w2v"))
    pretrained = Wav2Vec2Model.from_pretrained(tmp_path / "w2v")
    assert torch.equal(model.audio_encoder.wav2vec2.encoder.layers[0].attention.q_proj.weight,
                       pretrained.encoder.layers[0].attention.q_proj.weight)
    assert not any(p.requires_grad for p in model.audio_encoder.wav2vec2.parameters())
    audio = inputs(model)[3]
    assert model.encode_audio(audio, FRAMES).shape == (2, FRAMES, 2, 64)


def test_tiny_model_overfits_a_fixed_batch():
    """Same batch, noise, timesteps and dropout every step: the ε loss falls by a large factor (fitting
    capacity; the motion-frame noise augmentation is off, it is tested in test_motion_frames)."""
    model = tiny_model()
    objective = TeacherObjective(model, TeacherTrainConfig(num_frames=2, motion_noise=0.0))
    generator = torch.Generator().manual_seed(5)
    latents = torch.rand(1, MOTION + 2, 3, 32, 32, generator=generator) * 2 - 1
    audio = torch.randn(1, (2 + 4) * SAMPLES_PER_FRAME, generator=generator) * 0.1
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        loss = objective(latents, latents[:, MOTION], audio, torch.Generator().manual_seed(1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, losses


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="neither a preset"):
        load_config("huge")
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: tiny\nmodels: {}\n")
    with pytest.raises(ConfigError, match="unknown sections"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("base: tiny\ntrain: {num_frames: 4}\n")
    config = load_config(good)
    assert config["train"]["num_frames"] == 4 and config["train"]["batch_size"] == 2
    with pytest.raises(ValueError, match="unknown train keys"):
        TeacherTrainConfig.from_dict({"num_frame": 3})
