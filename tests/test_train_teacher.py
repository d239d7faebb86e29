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


def test_image_stage_trains_the_reference_path_then_the_video_stage_everything(data_dir, tmp_path):
    """image_steps = 2 of 4: the image stage (one-frame windows, no motion, no audio) leaves the audio encoder,
    audio attention and temporal attention as initialised and trains the rest; the video stage then trains
    those too; both stages keep their own checkpoints, so a rerun resumes instead of retraining."""
    import torch
    from safetensors.torch import load_file

    from fada.train_teacher import IMAGE_STAGE_DIR, build_model, video_only_parameters

    config = tiny_config()
    config["train"]["image_steps"] = 2
    train_teacher(data_dir, "train", config, 4, tmp_path / "run", device="cpu", progress=False)
    torch.manual_seed(0)  # train_teacher's initialisation (TrainingRunConfig.seed)
    initial, _ = build_model(config)
    names = {id(p): n for n, p in initial.named_parameters()}
    video_only = {names[id(p)] for p in video_only_parameters(initial)}
    assert any(n.startswith("audio_encoder.") for n in video_only) and any(".temporal_" in n for n in video_only)
    assert any(".attn2." in n for n in video_only) and not any(n.startswith("reference_net.") for n in video_only)

    def changed(directory) -> set[str]:
        """Parameters whose raw training weights differ from the initialisation."""
        state = load_file(str(training_states(directory)[-1] / "model.safetensors"))
        reference = initial.state_dict()
        return {n for n in reference if not torch.equal(state[n], reference[n])}

    image_changed = changed(tmp_path / "run" / IMAGE_STAGE_DIR)
    assert image_changed and not image_changed & video_only  # the video-only layers stayed as initialised
    assert any(n.startswith("reference_net.") for n in image_changed)
    assert changed(tmp_path / "run") & video_only  # the video stage trains them
    stage_log = read_log(tmp_path / "run" / IMAGE_STAGE_DIR)
    assert [row["step"] for row in stage_log] == [1, 2] and len(read_log(tmp_path / "run")) == 2
    meta = json.loads((tmp_path / "run" / "final" / "fada.json").read_text())
    assert meta["image_stage"] == {"steps": 2, "dir": IMAGE_STAGE_DIR}
    again = train_teacher(data_dir, "train", config, 4, tmp_path / "run", device="cpu", progress=False)
    assert again.resumed_from == 2 and len(read_log(tmp_path / "run" / IMAGE_STAGE_DIR)) == 2


def test_image_stage_must_leave_steps_for_the_video_stage(data_dir, tmp_path):
    config = tiny_config()
    config["train"]["image_steps"] = 4
    with pytest.raises(ValueError, match="image_steps"):
        train_teacher(data_dir, "train", config, 4, tmp_path / "run", device="cpu", progress=False)
