"""`DistillObjective` by hand on a tiny batch: the teacher's three CFG passes in their order, the straight-line
inputs and ε-form targets of both branches, unit scales on the ground-truth branch, and w without gradient."""

import pytest
import torch

from fada.config import load_config
from fada.distill import DistillConfig, DistillObjective
from fada.guidance import multi_cfg
from fada.model import FadaModel, student_from_teacher
from fada.perflow import PerflowWindows, eps_target, gt_window_end, line_point

B, FRAMES, MOTION = 2, 2, 2


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    teacher = FadaModel(**load_config("tiny")["model"]).eval()
    student = student_from_teacher(teacher, "layer-tokens", 2)
    with torch.no_grad():  # CFG layers start at zero (student = teacher); give them weight so the scales matter
        for name, p in student.named_parameters():
            if "cfg" in name:
                p.add_(0.05 * torch.randn_like(p))
    return teacher, student


def _batch(student):
    gen = torch.Generator().manual_seed(1)
    channels = student.config.unet["in_channels"]
    size = student.config.unet["sample_size"]
    latents = torch.randn(B, MOTION + FRAMES, channels, size, size, generator=gen)
    reference = torch.randn(B, channels, size, size, generator=gen)
    audio = torch.randn(B, (FRAMES + 2 * student.audio_context_frames) * 640, generator=gen) * 0.1
    return latents, reference, audio


def test_teacher_passes_are_r_a_then_r_then_none_combined_with_eq_9(models):
    teacher, student = models
    config = DistillConfig(num_frames=FRAMES, solver_steps_per_window=1)
    objective = DistillObjective(student, teacher, config)
    latents, reference, audio = _batch(student)
    motion, z_s = latents[:, :MOTION], latents[:, MOTION:]
    t_s, t_e = torch.tensor([1.0, 0.5]), torch.tensor([0.75, 0.25])
    s_a, s_r = torch.tensor([6.5, 3.0]), torch.tensor([2.0, 1.5])
    ones = torch.ones(B)
    ours = objective.teacher_window_end(motion, z_s, t_s, t_e, reference, audio, ones, ones, (s_a, s_r))

    schedule, index = objective.schedule, objective.schedule.timestep_index(t_s)
    tokens = teacher.encode_audio(audio, FRAMES)
    # reference and motion frames through the reference net; ε(∅,∅) drops both
    bank_r = teacher.encode_conditions(reference, motion)
    bank_none = teacher.encode_conditions(torch.zeros_like(reference), torch.zeros_like(motion))
    x = z_s
    with torch.no_grad():
        eps_ra = teacher(x, index, tokens, bank_r)
        eps_r = teacher(x, index, torch.zeros_like(tokens), bank_r)
        eps_none = teacher(x, index, torch.zeros_like(tokens), bank_none)
    eps = multi_cfg(eps_ra, eps_r, eps_none, s_r=s_r, s_a=s_a)
    a_s = schedule.alpha_bar(t_s).reshape(-1, 1, 1, 1, 1)
    a_e = schedule.alpha_bar(t_e).reshape(-1, 1, 1, 1, 1)
    x0 = (z_s - (1 - a_s).sqrt() * eps) / a_s.sqrt()  # one DDIM step from t_s to t_e
    torch.testing.assert_close(ours, a_e.sqrt() * x0 + (1 - a_e).sqrt() * eps, atol=1e-4, rtol=1e-4)
    swapped = multi_cfg(eps_r, eps_ra, eps_none, s_r=s_r, s_a=s_a)  # the order matters: a wrong one differs
    assert not torch.allclose(ours, a_e.sqrt() * (z_s - (1 - a_s).sqrt() * swapped) / a_s.sqrt()
                              + (1 - a_e).sqrt() * swapped, atol=1e-4)


def test_losses_targets_and_gt_branch_by_hand(models):
    teacher, student = models
    config = DistillConfig(num_frames=FRAMES, solver_steps_per_window=1, motion_drop_rate=0.0, motion_noise=0.0,
                           loss_mode="fixed", lambda_gt=0.25)
    objective = DistillObjective(student, teacher, config)
    latents, reference, audio = _batch(student)
    out = objective(latents, reference, audio, torch.Generator().manual_seed(7))

    # the draws, in the objective's order: motion keep, t, noise, scales
    gen = torch.Generator().manual_seed(7)
    torch.rand(B, generator=gen)
    t = 1 - torch.rand(B, generator=gen)
    x0 = latents[:, MOTION:]
    noise = torch.randn(x0.shape, generator=gen)
    u = torch.rand(2, B, generator=gen)
    (a_lo, a_hi), (r_lo, r_hi) = config.guidance_audio_range, config.guidance_reference_range
    s_a, s_r = a_lo + (a_hi - a_lo) * u[0], r_lo + (r_hi - r_lo) * u[1]
    torch.testing.assert_close(out["t"], t)
    torch.testing.assert_close(out["s_a"], s_a)

    schedule = objective.schedule
    t_s, t_e = PerflowWindows(config.num_windows).locate(t)
    a_s, a_e = schedule.alpha_bar(t_s), schedule.alpha_bar(t_e)
    z_s = schedule.add_noise(x0, noise, t_s)
    motion = latents[:, :MOTION]
    z_e = objective.teacher_window_end(motion, z_s, t_s, t_e, reference, audio, torch.ones(B), torch.ones(B), (s_a, s_r))
    z_gt = gt_window_end(x0, noise, a_e)
    torch.testing.assert_close(eps_target(z_s, z_gt, a_s, a_e), noise, atol=1e-4, rtol=1e-4)  # GT target is ε (step 6)

    bank = student.encode_conditions(reference, motion)
    tokens = student.encode_audio(audio, FRAMES)
    timestep = schedule.model_timestep(t)  # N·t, as PeRFlow feeds its student

    def student_loss(z_end, scales):
        x = line_point(z_s, z_end, t, t_s, t_e)
        with torch.no_grad():
            pred = student(x, timestep, tokens, bank, cfg_scales=scales)
        return (pred - eps_target(z_s, z_end, a_s, a_e)).pow(2).flatten(1).mean(1)

    l_distill = student_loss(z_e, (s_a, s_r))
    l_gt = student_loss(z_gt, (torch.ones(B), torch.ones(B)))  # unit scales: the conditional prediction
    torch.testing.assert_close(out["l_distill"], l_distill, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["l_gt"], l_gt, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(student_loss(z_gt, (s_a, s_r)), l_gt, atol=1e-6)  # the scales do reach the GT branch

    # 7. L = mean(L_distill + w·L_gt), w = λ_gt (fixed) computed without gradient
    assert not out["w"].requires_grad and torch.equal(out["w"], torch.full((B,), 0.25))
    torch.testing.assert_close(out["loss"], (out["l_distill"] + 0.25 * out["l_gt"]).mean(), atol=1e-5, rtol=1e-5)
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())
