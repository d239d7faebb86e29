"""`fada train-tiny-decoder`: a tiny AutoencoderTiny distilled from a small random SD-layout VAE on generated clips
read through shards/, then used by `fada generate --tiny-decoder` (everything built here, nothing downloaded)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as sample_images

from fada.codec import VaeCodec, load_tiny_decoder
from fada.tiny_decoder import DISTILL_FILE, tiny_autoencoder_for

SIZE = 64


def small_vae():
    """An SD-layout `AutoencoderKL` (4 levels, 8× smaller latents, 4 channels) with few channels."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(8, 8, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, latent_channels=4,
                         norm_num_groups=8, sample_size=SIZE)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Three generated speakers: two in view ``train``, the third alone in the held-out view ``test``."""
    from shards.synthetic_dataset import make_speaker_data_dir

    root = make_speaker_data_dir(tmp_path_factory.mktemp("speakers"), n_clips=3, size=SIZE, duration_s=1.0, view="all")
    (shard, keys), = json.loads((root / "views" / "all.json").read_text())["shards"].items()
    for name, chosen in (("train", keys[:2]), ("test", keys[2:])):
        (root / "views" / f"{name}.json").write_text(json.dumps({"name": name, "shards": {shard: chosen}}))
    return root


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("sd") / "vae"
    small_vae().save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture(scope="module")
def trained(data_dir, vae_dir, tmp_path_factory):
    from flows.cli import main

    out = tmp_path_factory.mktemp("tiny") / "decoder"
    code = main(["train-tiny-decoder", "--data", str(data_dir), "--view", "train", "--vae", str(vae_dir), "--out", str(out),
                 "--steps", "60", "--batch-size", "4", "--width", "16", "--size", str(SIZE), "--device", "cpu", "--quiet"])
    assert code == 0
    return out


def test_the_tiny_layout_matches_the_vae_latents_and_resolution():
    vae = small_vae()
    tiny = tiny_autoencoder_for(vae, width=16)
    latents = torch.randn(2, 4, SIZE // 8, SIZE // 8)
    assert tiny.decode(latents).sample.shape == vae.decode(latents).sample.shape == (2, 3, SIZE, SIZE)
    assert tiny.encode(torch.zeros(2, 3, SIZE, SIZE)).latents.shape == latents.shape


@pytest.mark.slow
def test_distilled_decoder_learns_and_approaches_the_vae_decoder_on_held_out_frames(trained):
    summary = json.loads((trained / DISTILL_FILE).read_text())
    losses = [row["loss_decoder"] for row in summary["losses"]]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
    assert summary["eval_view"] == "test" and summary["held_out"]["frames"] > 0
    # held-out frames (another speaker): the trained decoder is far closer to the VAE decoder than an untrained one
    assert summary["held_out"]["mse"] < 0.3 * summary["held_out_untrained"]["mse"]
    assert summary["held_out"]["psnr_db"] > summary["held_out_untrained"]["psnr_db"] + 5


@pytest.mark.slow
def test_saved_decoder_loads_and_decodes_like_the_vae(trained, vae_dir, data_dir):
    from fada.tiny_decoder import held_out_frames
    from shards.reader import to_unit_range

    from diffusers import AutoencoderKL

    codec = VaeCodec(AutoencoderKL.from_pretrained(vae_dir), SIZE)
    frames = to_unit_range(held_out_frames(data_dir, "test", SIZE, 8, seed=1))
    latents = codec.encode(frames)
    reference = codec.decode(latents)
    codec.use_tiny_decoder(load_tiny_decoder(trained))
    tiny = codec.decode(latents)
    untrained = VaeCodec(codec.vae, SIZE, tiny_decoder=tiny_autoencoder_for(codec.vae, width=16)).decode(latents)
    assert tiny.shape == reference.shape
    assert (tiny - reference).pow(2).mean() < 0.3 * (untrained - reference).pow(2).mean()


@pytest.mark.slow
def test_generate_uses_the_distilled_decoder(trained, vae_dir, tmp_path):
    import soundfile
    from diffusers import AutoencoderKL

    from fada.checkpoint import save_inference_checkpoint
    from fada.config import load_config
    from fada.model import FadaModel
    from fada.pipeline import FadaPipeline

    config = load_config("tiny")
    config["model"]["unet"].update(in_channels=4, out_channels=4, sample_size=SIZE // 8)
    config["train"]["num_frames"] = 4
    torch.manual_seed(0)
    save_inference_checkpoint(tmp_path / "ckpt", FadaModel(**config["model"]), VaeCodec(AutoencoderKL.from_pretrained(vae_dir), SIZE),
                              {"kind": "teacher", "config": config})
    Image.fromarray(sample_images.astronaut()).save(tmp_path / "face.png")
    soundfile.write(tmp_path / "a.wav", 0.1 * np.sin(np.arange(4000) / 5.0), 16000)
    pipeline = FadaPipeline.from_checkpoint(tmp_path / "ckpt", "teacher", device="cpu", tiny_decoder=str(trained),
                                            num_inference_steps=2)
    assert pipeline.codec.tiny_decoder is not None
    result = pipeline.generate(tmp_path / "face.png", tmp_path / "a.wav", tmp_path / "out.mp4", progress=False)
    assert result.frames == 7 and (tmp_path / "out.mp4").is_file()


def test_a_decoder_for_other_latents_is_refused(vae_dir):
    from diffusers import AutoencoderKL, AutoencoderTiny

    codec = VaeCodec(AutoencoderKL.from_pretrained(vae_dir), SIZE)
    with pytest.raises(ValueError, match="8-channel latents"):
        codec.use_tiny_decoder(AutoencoderTiny(latent_channels=8, encoder_block_out_channels=(8,) * 4,
                                               decoder_block_out_channels=(8,) * 4))


def test_missing_vae_or_view_exit_2_with_one_line(data_dir, tmp_path, capsys):
    from flows.cli import main

    assert main(["train-tiny-decoder", "--data", str(data_dir), "--view", "train", "--vae", str(tmp_path / "none"),
                 "--out", str(tmp_path / "o"), "--steps", "1", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error: no AutoencoderKL")
    assert not (tmp_path / "o").exists()


def test_reader_uint8_frames_convert_to_the_float_windows(data_dir):
    from shards.reader import ClipWindowDataset, to_unit_range

    windows = {}
    for uint8 in (False, True):
        dataset = ClipWindowDataset(data_dir, "train", n_frames=4, n_motion_frames=2, shuffle_buffer=0, uint8_frames=uint8)
        windows[uint8] = next(iter(dataset))
    assert windows[True]["frames"].dtype == torch.uint8 and windows[True]["frames"].shape == (4, 3, SIZE, SIZE)
    assert windows[True]["start_frame"] == windows[False]["start_frame"]
    for part in ("frames", "motion_frames"):
        torch.testing.assert_close(to_unit_range(windows[True][part]), windows[False][part])
