"""Teacher training from a real view: steps run, checkpoints record their data, resume is exact, configs are checked."""

from __future__ import annotations

import json

import pytest

from fada.checkpoint import CheckpointError, training_states
from fada.config import load_config
from fada.train_teacher import train_teacher
from fada.training import read_log
from shards.synthetic_dataset import make_speaker_data_dir


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_speaker_data_dir(tmp_path_factory.mktemp("speakers"), n_clips=2, size=32, duration_s=1.2)


def tiny_config() -> dict:
    config = load_config("tiny")
    config["train"].update(num_frames=2, batch_size=1, checkpoint_every=2, windows_per_clip=2, shuffle_buffer=4)
    return config


def losses(out_dir) -> list[float]:
    return [row["loss"] for row in read_log(out_dir)]


def test_resume_continues_the_exact_loss_sequence(data_dir, tmp_path):
    straight = train_teacher(data_dir, "train", tiny_config(), 4, tmp_path / "straight", device="cpu", progress=False)
    assert straight.resumed_from == 0
    train_teacher(data_dir, "train", tiny_config(), 2, tmp_path / "resumed", device="cpu", progress=False)
    resumed = train_teacher(data_dir, "train", tiny_config(), 4, tmp_path / "resumed", device="cpu", progress=False)
    assert resumed.resumed_from == 2
    assert len(losses(tmp_path / "straight")) == 4
    assert losses(tmp_path / "resumed") == pytest.approx(losses(tmp_path / "straight"), rel=1e-5, abs=1e-7)
    assert [p.name for p in training_states(tmp_path / "resumed")] == ["step-0000002", "step-0000004"]
    assert (tmp_path / "resumed" / "tensorboard").is_dir()


def test_checkpoint_records_the_view_and_shards_it_read(data_dir, tmp_path):
    train_teacher(data_dir, "train", tiny_config(), 2, tmp_path / "run", device="cpu", progress=False)
    meta = json.loads((tmp_path / "run" / "final" / "fada.json").read_text())
    assert meta["kind"] == "teacher" and meta["step"] == 2
    assert meta["view"] == "train" and meta["shards"] == ["shards/v1/clips-000000.tar"] and meta["clips"] == 2
    assert meta["config"]["train"]["num_frames"] == 2
    assert (tmp_path / "run" / "final" / "model" / "diffusion_pytorch_model.safetensors").is_file()
    scheduler = json.loads((tmp_path / "run" / "final" / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "DDIMScheduler" and scheduler["beta_schedule"] == "scaled_linear"
    assert (scheduler["beta_start"], scheduler["beta_end"], scheduler["steps_offset"]) == (0.00085, 0.012, 1)


def test_resuming_with_another_model_configuration_is_refused(data_dir, tmp_path):
    train_teacher(data_dir, "train", tiny_config(), 2, tmp_path / "run", device="cpu", progress=False)
    other = tiny_config()
    other["model"]["num_motion_frames"] = 1
    with pytest.raises(CheckpointError, match="another model configuration.*num_motion_frames"):
        train_teacher(data_dir, "train", other, 4, tmp_path / "run", device="cpu", progress=False)
