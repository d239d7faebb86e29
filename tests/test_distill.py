"""PeRFlow distillation (fada.distill): the fresh student is the teacher, one step from a real view gives a
student the pipeline runs in both modes, r and w are logged, and a resumed run repeats the same losses."""

import json
import shutil

import pytest
import torch

from fada.cfg_conditioning import CFG_VARIANTS
from fada.checkpoint import CheckpointError
from fada.config import load_config
from fada.distill import DistillConfig, distill_student
from fada.model import FadaModel, student_from_teacher
from fada.training import read_log

NUM_FRAMES = 2
VIEW = "lenient"
FAST = {"solver_steps_per_window": 1, "windows_per_clip": 1, "shuffle_buffer": 4, "learning_rate": 1e-4,
        "ema_decay": 0.5}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on shared cores two threads wait on each other (a step ran ~10× slower)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from shards.synthetic_dataset import make_speaker_data_dir

    return make_speaker_data_dir(tmp_path_factory.mktemp("data"), n_clips=2, size=32, duration_s=1.0, view=VIEW)


@pytest.fixture(scope="module")
def teacher(data_dir, tmp_path_factory):
    from fada.train_teacher import train_teacher

    config = load_config("tiny")
    config["train"].update(num_frames=NUM_FRAMES, batch_size=1, windows_per_clip=1, shuffle_buffer=4)
    out = tmp_path_factory.mktemp("teacher")
    train_teacher(data_dir, VIEW, config, 1, out, device="cpu", progress=False)
    return out


def model_inputs(model: FadaModel, batch: int = 2, frames: int = NUM_FRAMES):
    generator = torch.Generator().manual_seed(1)
    m, context = model.config.num_motion_frames, model.audio_context_frames
    latents = torch.randn(batch, frames, 3, 32, 32, generator=generator)
    motion = torch.randn(batch, m, 3, 32, 32, generator=generator)
    reference = torch.randn(batch, 3, 32, 32, generator=generator)
    audio = torch.randn(batch, (frames + 2 * context) * 640, generator=generator) * 0.1
    timesteps = torch.tensor([999, 400])[:batch]
    scales = (torch.tensor([6.5, 4.0])[:batch], torch.tensor([2.0, 3.0])[:batch])
    return latents, motion, reference, audio, timesteps, scales


@pytest.mark.parametrize("variant", CFG_VARIANTS)
@torch.no_grad()
def test_fresh_student_reproduces_the_teacher(variant):
    torch.manual_seed(0)
    teacher = FadaModel(**load_config("tiny")["model"]).eval()
    for parameter in teacher.parameters():  # no zero-initialised layer left in the teacher
        parameter.add_(torch.randn_like(parameter) * 0.02)
    student = student_from_teacher(teacher, variant).eval()
    latents, motion, reference, audio, timesteps, scales = model_inputs(teacher)

    def eps(model, cfg_scales):
        return model(latents, timesteps, model.encode_audio(audio, NUM_FRAMES), model.encode_conditions(reference, motion),
                     cfg_scales=cfg_scales)

    expected = eps(teacher, None)
    assert torch.equal(eps(student, scales), expected)
    assert torch.equal(eps(student, None), expected)
    # the CFG conditioning is wired: once its zero-initialised layers move, the scales change the output
    zero = [p for name, p in student.named_parameters() if ("cfg" in name or "cond_proj" in name) and not p.any()]
    assert bool(zero) == (variant != "none")
    for parameter in zero:
        parameter.copy_(torch.randn_like(parameter) * 0.1)
    if variant != "none":
        assert not torch.allclose(eps(student, scales), expected)


def test_config_is_strict():
    with pytest.raises(ValueError, match="unknown distill keys"):
        DistillConfig.from_dict({"solver_steps": 2})
    with pytest.raises(ValueError, match="cfg_variant"):
        DistillConfig.from_dict({"cfg_variant": "tokens"})
    with pytest.raises(ValueError, match="loss_mode"):
        DistillConfig.from_dict({"loss_mode": "adaptive-limited"})
    with pytest.raises(ValueError, match="guidance_audio_range"):
        DistillConfig.from_dict({"guidance_audio_range": [9, 4]})
    config = DistillConfig.from_dict({"guidance_reference_range": [1, 2]})
    assert config.guidance_reference_range == (1.0, 2.0) and config.num_windows == 4
    assert config.solver_steps_per_window == 8 and config.cfg_variant == "layer-tokens"
    assert (config.lambda_gt, config.alpha, config.r_peak, config.r_dead) == (0.25, 0.2, 30.0, 100.0)


def test_one_step_gives_a_student_the_pipeline_runs_in_both_modes(data_dir, teacher, tmp_path):
    from fada.motion_frames import no_motion
    from fada.pipeline import FadaPipeline

    out = tmp_path / "student"
    result = distill_student(data_dir, VIEW, teacher, out, config=FAST, steps=1, device="cpu", progress=False)
    assert result.steps == 1 and result.resumed_from == 0
    meta = json.loads((out / "final" / "fada.json").read_text())
    assert meta["kind"] == "student" and meta["step"] == 1 and meta["view"] == VIEW
    assert meta["teacher"]["path"] == str((teacher / "final").resolve()) and meta["teacher"]["view"] == VIEW
    assert meta["config"]["train"]["num_frames"] == NUM_FRAMES  # the teacher's clip length by default
    assert meta["config"]["train"]["cfg_variant"] == "layer-tokens"
    assert meta["config"]["model"]["cfg_variant"] == "layer-tokens"
    assert meta["shards"] and meta["clips"] == 2

    pipe = FadaPipeline.from_checkpoint(out, mode="fast", device="cpu")
    assert pipe.clip_frames == NUM_FRAMES and pipe.model.config.cfg_variant == "layer-tokens"
    assert pipe.scheduler.config.num_time_windows == 4 and (pipe.steps, pipe.s_r, pipe.s_a) == (6, 2.0, 6.5)
    reference = torch.zeros(1, 3, 32, 32)
    bank_one, _ = pipe.reference_banks(reference)
    motion = no_motion(reference, 2)
    audio = torch.zeros((NUM_FRAMES + 2 * pipe.model.audio_context_frames) * 640)
    pipe.nfe.reset()
    latents = pipe.denoise_clip(motion, audio, bank_one, torch.Generator().manual_seed(0))
    assert latents.shape == (1, NUM_FRAMES, 3, 32, 32) and torch.isfinite(latents).all()
    assert pipe.nfe.total == 6
    # balanced mode would combine ε(r,∅) and ε(∅,∅) passes this CFG-distilled student never learnt: refused
    with pytest.raises(ValueError, match="fast mode"):
        FadaPipeline.from_checkpoint(out, mode="balanced", device="cpu")


def test_without_gt_loss_the_weight_is_zero_and_r_w_are_logged(data_dir, teacher, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fada.pipeline import FadaPipeline

    out = tmp_path / "perflow"
    distill_student(data_dir, VIEW, teacher, out,
                    config={**FAST, "loss_mode": "none", "cfg_variant": "none", "num_windows": 2},
                    steps=1, device="cpu", progress=False)
    # the checkpoint carries the PeRFlow scheduler of its 2 windows, and the pipeline samples with it
    scheduler = json.loads((out / "final" / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "PeRFlowScheduler" and scheduler["num_time_windows"] == 2
    assert FadaPipeline.from_checkpoint(out, "balanced", device="cpu").scheduler.config.num_time_windows == 2
    (row,) = read_log(out)
    assert row["w_mean"] == 0.0
    assert row["loss"] == pytest.approx(row["l_distill"], rel=1e-6)
    assert row["r_mean"] > 0 and row["l_gt"] > 0
    assert "s_a_mean" not in row  # no CFG distillation: no scales drawn
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"r", "w"} <= set(events.Tags()["histograms"])
    assert {"loss", "l_distill", "l_gt", "r_mean", "w_mean"} <= set(events.Tags()["scalars"])


def test_resume_repeats_the_uninterrupted_losses(data_dir, teacher, tmp_path):
    config = {**FAST, "batch_size": 2, "windows_per_clip": 2, "loss_mode": "fixed"}
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    distill_student(data_dir, VIEW, teacher, straight, config=config, steps=4, device="cpu", progress=False)
    distill_student(data_dir, VIEW, teacher, resumed, config=config, steps=2, device="cpu", progress=False)
    result = distill_student(data_dir, VIEW, teacher, resumed, config=config, steps=4, device="cpu", progress=False)
    assert result.resumed_from == 2
    keys = ("step", "loss", "l_distill", "l_gt", "r_mean", "w_mean", "s_a_mean", "s_r_mean")
    assert [[row[k] for k in keys] for row in read_log(resumed)] == [[row[k] for k in keys] for row in read_log(straight)]
    assert [row["w_mean"] for row in read_log(straight)] == [0.25] * 4

    other = tmp_path / "other-teacher"
    shutil.copytree(teacher, other)
    with pytest.raises(CheckpointError, match="teacher"):
        distill_student(data_dir, VIEW, other, resumed, config=config, steps=5, device="cpu", progress=False)


def test_a_fresh_run_starts_from_an_earlier_student_of_the_same_teacher(data_dir, teacher, tmp_path):
    from fada.checkpoint import newest_checkpoint
    from safetensors.torch import load_file

    runs = tmp_path / "students"
    assert newest_checkpoint(runs, "student") is None  # no student yet: a retraining starts from the teacher
    first = runs / "first"
    distill_student(data_dir, VIEW, teacher, first, config=FAST, steps=1, device="cpu", progress=False)
    assert newest_checkpoint(runs, "student") == first / "final"
    second = runs / "second"  # learning rate 0: the weights stay the ones it started from
    distill_student(data_dir, VIEW, teacher, second, config={**FAST, "learning_rate": 0.0}, steps=1, device="cpu",
                    init_student=first, progress=False)
    meta = json.loads((second / "final" / "fada.json").read_text())
    assert meta["init_student"] == {"path": str((first / "final").resolve()), "view": VIEW, "step": 1}
    weights = [load_file(next((run / "final" / "model").glob("*.safetensors"))) for run in (first, second)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert newest_checkpoint(runs, "student") == second / "final"

    with pytest.raises(CheckpointError, match="not a student"):
        distill_student(data_dir, VIEW, teacher, runs / "third", config=FAST, steps=1, device="cpu",
                        init_student=teacher, progress=False)
    other = tmp_path / "other-teacher"
    shutil.copytree(teacher, other)
    with pytest.raises(CheckpointError, match="distilled from teacher"):
        distill_student(data_dir, VIEW, other, runs / "third", config=FAST, steps=1, device="cpu",
                        init_student=first, progress=False)
