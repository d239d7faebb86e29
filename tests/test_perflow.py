import pytest
import torch
from diffusers import DDIMScheduler

from fada.noise_schedule import NoiseSchedule
from fada.perflow import (
    PerflowWindows,
    ddim_solve,
    eps_target,
    gt_window_end,
    line_point,
    sample_t,
    window_end_from_eps,
)

SCHEDULE = NoiseSchedule()


def true_eps_fn(x0):
    """An ε-model that knows the data: exact on the DDPM marginal, so DDIM is exact too."""
    table = SCHEDULE.alphas_cumprod

    def eps_fn(z, index):
        a = table[index].to(z.dtype).reshape(-1, *([1] * (z.dim() - 1)))
        return (z - a.sqrt() * x0) / (1 - a).sqrt()

    return eps_fn


def test_window_bounds_and_lookup():
    windows = PerflowWindows()
    assert windows.bounds == [(0.75, 1.0), (0.5, 0.75), (0.25, 0.5), (0.0, 0.25)]
    t = torch.tensor([1.0, 0.9, 0.76, 0.75, 0.74, 0.5, 0.26, 0.25, 0.1, 0.001])
    t_s, t_e = windows.locate(t)
    assert t_s.tolist() == [1.0, 1.0, 1.0, 0.75, 0.75, 0.5, 0.5, 0.25, 0.25, 0.25]
    assert t_e.tolist() == [0.75, 0.75, 0.75, 0.5, 0.5, 0.25, 0.25, 0.0, 0.0, 0.0]
    assert t_s.dtype == t.dtype
    # a window start computed in floating point belongs to that window (K = 3: 2/3 and 1/3 are inexact)
    t_s, t_e = PerflowWindows(3).locate(torch.tensor([1 - 1 / 3, 1 - 2 / 3, 0.5]))
    torch.testing.assert_close(t_s, torch.tensor([2 / 3, 1 / 3, 2 / 3]))
    torch.testing.assert_close(t_e, torch.tensor([1 / 3, 0.0, 1 / 3]))


def test_sample_t_in_half_open_unit_interval():
    t = sample_t(10000, generator=torch.Generator().manual_seed(0))
    assert t.shape == (10000,) and t.min() > 0 and t.max() <= 1
    assert 0.45 < t.mean() < 0.55
    assert torch.equal(t, sample_t(10000, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("num_steps", [1, 5])
def test_ddim_solve_matches_diffusers_ddim_per_window(num_steps):
    """Window i in n sub-steps = diffusers DDIM ("trailing", final ᾱ_prev = ᾱ[0] as SD1.5 sets it) with 4·n
    steps, run over that window's slice of its timesteps [999, 999 − 1000/(4n), …] (1000/(4n) whole)."""
    num_windows = 4
    ref = DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
        set_alpha_to_one=False, timestep_spacing="trailing", steps_offset=0, prediction_type="epsilon",
    )  # fmt: skip
    ref.set_timesteps(num_windows * num_steps)
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(3, 3, generator=gen, dtype=torch.float64) * 0.3
    bias = torch.randn(3, 1, 1, generator=gen, dtype=torch.float64)

    def eps_fn(z, index):  # a deterministic linear "network" that also depends on the timestep
        return torch.einsum("ij,bjhw->bihw", mix, z) + bias * (index.to(z.dtype) / 1000).reshape(-1, 1, 1, 1)

    windows = PerflowWindows(num_windows)
    t_s, t_e = windows.locate(torch.tensor([1.0, 0.7, 0.3, 0.2], dtype=torch.float64))
    z_s = torch.randn(4, 3, 2, 2, generator=gen, dtype=torch.float64)
    seen = []
    ours = ddim_solve(lambda z, i: (seen.append(i.tolist()), eps_fn(z, i))[1], z_s, t_s, t_e, num_steps, SCHEDULE)
    for b, window in enumerate([0, 1, 2, 3]):
        z = z_s[b : b + 1]
        timesteps = ref.timesteps[window * num_steps : (window + 1) * num_steps]
        assert [s[b] for s in seen] == timesteps.tolist()
        for timestep in timesteps:
            z = ref.step(eps_fn(z, timestep.reshape(1)), timestep, z).prev_sample
        torch.testing.assert_close(ours[b : b + 1], z, atol=1e-5, rtol=0)
    assert seen[0] == [999, 749, 499, 249]


def test_ddim_solve_full_range_matches_diffusers():
    ref = DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
        set_alpha_to_one=False, timestep_spacing="trailing",
    )  # fmt: skip
    ref.set_timesteps(10)
    assert ref.timesteps.tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    z = z_ref = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(1))
    eps_fn = lambda z, index: 0.1 * z + 0.05  # noqa: E731
    ours = ddim_solve(eps_fn, z, torch.ones(2), torch.zeros(2), 10, SCHEDULE)
    for timestep in ref.timesteps:
        z_ref = ref.step(eps_fn(z_ref, timestep), timestep, z_ref).prev_sample
    torch.testing.assert_close(ours, z_ref, atol=1e-5, rtol=0)


def test_ddim_solve_has_no_gradients():
    weight = torch.tensor(0.5, requires_grad=True)
    out = ddim_solve(lambda z, i: weight * z, torch.randn(2, 3), torch.ones(2), torch.full((2,), 0.75), 2, SCHEDULE)
    assert not out.requires_grad


def test_line_point_endpoints_and_middle():
    z_s, z_e = torch.zeros(2, 3, 4), torch.ones(2, 3, 4)
    t_s, t_e = torch.tensor([1.0, 0.5]), torch.tensor([0.75, 0.25])
    torch.testing.assert_close(line_point(z_s, z_e, t_s, t_s, t_e), z_s)
    torch.testing.assert_close(line_point(z_s, z_e, t_e, t_s, t_e), z_e)
    mid = line_point(z_s, z_e, torch.tensor([0.875, 0.3]), t_s, t_e)
    assert mid[0].unique().tolist() == [0.5] and mid[1].unique().item() == pytest.approx(0.8)


@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (4, 2, 3, 4, 4)])
def test_straight_teacher_gives_exact_targets(shape):
    """With an exact teacher the DDIM end is the GT end, its ε target is ε itself (step 6), and inverting
    the target from any point on the line (step 9) gives the window end back."""
    gen = torch.Generator().manual_seed(0)
    x0, eps = (
        torch.randn(shape, generator=gen, dtype=torch.float64),
        torch.randn(shape, generator=gen, dtype=torch.float64),
    )
    t = torch.tensor([1.0, 0.8, 0.5, 0.1], dtype=torch.float64)
    t_s, t_e = PerflowWindows().locate(t)
    alpha_s, alpha_e = SCHEDULE.alpha_bar(t_s), SCHEDULE.alpha_bar(t_e)
    z_s = SCHEDULE.add_noise(x0, eps, t_s)
    z_e = ddim_solve(true_eps_fn(x0), z_s, t_s, t_e, 8, SCHEDULE)
    z_gt = gt_window_end(x0, eps, alpha_e)
    torch.testing.assert_close(z_e, z_gt, atol=1e-5, rtol=0)
    final = SCHEDULE.final_alpha_cumprod  # last window ends at the final ᾱ (ᾱ[0], SD1.5's set_alpha_to_one=False)
    torch.testing.assert_close(z_gt[3], final**0.5 * x0[3] + (1 - final) ** 0.5 * eps[3])

    target = eps_target(z_s, z_e, alpha_s, alpha_e)
    torch.testing.assert_close(target, eps, atol=1e-4, rtol=0)
    torch.testing.assert_close(eps_target(z_s, z_gt, alpha_s, alpha_e), eps)  # GT branch target is ε
    z_t = line_point(z_s, z_e, t, t_s, t_e)
    torch.testing.assert_close(window_end_from_eps(target, z_t, t, t_s, t_e, alpha_s, alpha_e), z_e)


def test_window_end_from_eps_round_trip_on_arbitrary_lines():
    gen = torch.Generator().manual_seed(5)
    z_s, z_e = torch.randn(5, 4, 6, 6, generator=gen), torch.randn(5, 4, 6, 6, generator=gen)
    t = torch.tensor([0.99, 0.75, 0.6, 0.3, 0.01])
    t_s, t_e = PerflowWindows().locate(t)
    alpha_s, alpha_e = SCHEDULE.alpha_bar(t_s), SCHEDULE.alpha_bar(t_e)
    target = eps_target(z_s, z_e, alpha_s, alpha_e)
    z_t = line_point(z_s, z_e, t, t_s, t_e)
    torch.testing.assert_close(
        window_end_from_eps(target, z_t, t, t_s, t_e, alpha_s, alpha_e), z_e, atol=1e-4, rtol=1e-4
    )
    # a wrong ε gives a wrong end: the inversion depends on the prediction
    wrong = window_end_from_eps(target + 0.1, z_t, t, t_s, t_e, alpha_s, alpha_e)
    assert (wrong - z_e).abs().amin(dim=(1, 2, 3)).min() > 1e-3


def test_lambda_eta_by_hand():
    """ε* = (z_e − λ z_s)/η with λ = √(ᾱ_e/ᾱ_s), η = √(1−ᾱ_e) − √(ᾱ_e(1−ᾱ_s)/ᾱ_s), for ᾱ_s = 0.25, ᾱ_e = 1."""
    z_s, z_e = torch.tensor([[2.0]]), torch.tensor([[1.0]])
    # λ = 2, η = 0 − √(3) → ε* = (1 − 4)/(−√3) = √3
    assert eps_target(z_s, z_e, torch.tensor([0.25]), torch.tensor([1.0])).item() == pytest.approx(3**0.5)
