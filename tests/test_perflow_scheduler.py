import numpy as np
import pytest
import torch

from fada.noise_schedule import NoiseSchedule
from fada.perflow import PerflowWindows, window_end_from_eps
from fada.perflow_scheduler import PeRFlowScheduler, window_step_counts

SCHEDULE = NoiseSchedule()


@pytest.mark.parametrize(
    "n, counts", [(4, [1, 1, 1, 1]), (5, [2, 1, 1, 1]), (6, [2, 2, 1, 1]), (7, [2, 2, 2, 1]), (8, [2, 2, 2, 2])]
)
def test_window_step_counts(n, counts):
    assert window_step_counts(n, 4) == counts


def test_too_few_steps_is_an_error():
    with pytest.raises(ValueError, match="at least one step per window"):
        window_step_counts(3, 4)
    with pytest.raises(ValueError, match="prediction_type"):
        PeRFlowScheduler(prediction_type="epsilon")


def test_set_timesteps_six_steps():
    scheduler = PeRFlowScheduler()
    scheduler.set_timesteps(6)
    assert scheduler.timesteps.dtype == torch.long
    assert scheduler.timesteps.tolist() == [1000, 875, 750, 625, 500, 250]  # ⌊1000·t⌋, as the public scheduler
    scheduler.set_timesteps(4)
    assert scheduler.timesteps.tolist() == [1000, 750, 500, 250]
    assert scheduler.window(1.0) == (1.0, 0.75) and scheduler.window(0.75) == (0.75, 0.5) and scheduler.window(0.25) == (0.25, 0.0)
    sample = torch.zeros(2)
    assert scheduler.scale_model_input(sample, 1000) is sample
    assert scheduler.init_noise_sigma == 1.0


def test_save_and_load(tmp_path):
    scheduler = PeRFlowScheduler(num_time_windows=3, beta_schedule="linear", beta_start=0.0001, beta_end=0.02)
    scheduler.save_pretrained(tmp_path)
    assert (tmp_path / "scheduler_config.json").exists()
    loaded = PeRFlowScheduler.from_pretrained(tmp_path)
    assert loaded.config.num_time_windows == 3 and loaded.config.beta_schedule == "linear"
    assert loaded.config.prediction_type == "ddim_eps"
    assert torch.equal(loaded.schedule.alphas_cumprod, scheduler.schedule.alphas_cumprod)
    loaded.set_timesteps(6)
    assert loaded.timesteps.tolist() == [1000, 833, 666, 500, 333, 166]  # t = 1, 5/6, 2/3, 1/2, 1/3, 1/6
    with pytest.raises(ValueError, match="t_noise=1"):
        PeRFlowScheduler(t_clean=0.1)


# --- parity with PeRFlow's public scheduler ---------------------------------------------------------------
# PUBLIC_* below restate, formula by formula, `PeRFlowScheduler` of the PeRFlow repository
# (magic-research/piecewise-rectified-flow, src/scheduler_perflow.py, "ddim_eps"), written independently of
# fada's code so that the test can say no.

PUBLIC_CONFIG_KEYS = {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "set_alpha_to_one",
                      "prediction_type", "t_noise", "t_clean", "num_time_windows"}  # its trained_betas aside


def public_timesteps(n: int, k: int = 4, num_train: int = 1000) -> list[int]:
    starts = [i / k for i in range(1, k + 1)][::-1]
    ends = starts[1:] + [0]
    times = [np.linspace(starts[i], ends[i], num=n // k + (i < n % k), endpoint=False) for i in range(k)]
    return (np.concatenate(times) * num_train).astype(np.int64).tolist()


def public_step(model_output, timestep: int, sample, timesteps: list[int], k: int = 4, num_train: int = 1000):
    alphas_cumprod = SCHEDULE.alphas_cumprod.float()  # SD1.5's β, float32 cumprod, as the public scheduler
    starts = [i / k for i in range(1, k + 1)][::-1]
    ends = starts[1:] + [0]
    t_c = timestep / num_train
    idx = 0
    while (t_c - 0.1 / num_train) <= ends[idx]:
        idx += 1
    t_s, t_e = starts[idx], ends[idx]
    a_start = alphas_cumprod[int(t_s * num_train - 1)]
    a_end = alphas_cumprod[max(int(t_e * num_train - 1), 0)]
    lambda_s = (a_end / a_start) ** 0.5
    eta_s = (1 - a_end) ** 0.5 - (a_end / a_start * (1 - a_start)) ** 0.5
    lambda_t = (lambda_s * (t_e - t_s)) / (lambda_s * (t_c - t_s) + (t_e - t_c))
    eta_t = (eta_s * (t_e - t_c)) / (lambda_s * (t_c - t_s) + (t_e - t_c))
    pred_win_end = lambda_t * sample + eta_t * model_output
    velocity = (pred_win_end - sample) / (t_e - t_c)
    i = timesteps.index(timestep)
    prev = timesteps[i + 1] if i + 1 < len(timesteps) else 0
    return sample + (prev - timestep) / num_train * velocity


def test_config_keys_are_the_public_ones():
    keys = {k for k in PeRFlowScheduler().config if not k.startswith("_")}
    assert keys == PUBLIC_CONFIG_KEYS


@pytest.mark.parametrize("n", [4, 5, 6, 7, 8, 10, 25])
def test_timesteps_and_steps_equal_the_public_scheduler(n):
    scheduler = PeRFlowScheduler()
    scheduler.set_timesteps(n)
    expected = public_timesteps(n)
    assert scheduler.timesteps.tolist() == expected
    gen = torch.Generator().manual_seed(n)
    sample = torch.randn(2, 4, 6, 6, generator=gen)
    ours = theirs = sample
    for timestep in expected:
        eps = torch.randn(2, 4, 6, 6, generator=gen)  # the same "model output" for both
        ours = scheduler.step(eps, timestep, ours).prev_sample
        theirs = public_step(eps, timestep, theirs, expected)
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert ours.abs().max() > 0  # moved


def perfect_student(x0, num_windows=4):
    """The student the distillation targets describe, for data x0 and an exact teacher: on each window's line
    z_t = (1−τ)·z_s + τ·z_e, with z_s, z_e on the DDPM marginal, its ε target is the noise ε (DESIGN step 6)."""
    windows = PerflowWindows(num_windows)

    def model(z, timestep):
        t = torch.tensor([int(timestep) / 1000], dtype=torch.float64)  # the scheduler's t for this timestep
        t_s, t_e = windows.locate(t)
        a_s, a_e = SCHEDULE.alpha_bar(t_s).double(), SCHEDULE.alpha_bar(t_e).double()
        tau = (t - t_s) / (t_e - t_s)
        signal = (1 - tau) * a_s.sqrt() + tau * a_e.sqrt()
        noise = (1 - tau) * (1 - a_s).sqrt() + tau * (1 - a_e).sqrt()
        return ((z - signal * x0) / noise).to(z.dtype)

    return model


@pytest.mark.parametrize("n", [4, 6, 8])
@pytest.mark.parametrize("shape", [(2, 4, 8, 8), (1, 4, 3, 8, 8)])
def test_full_schedule_lands_on_data(n, shape):
    gen = torch.Generator().manual_seed(n)
    x0, eps = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    model = perfect_student(x0)
    scheduler = PeRFlowScheduler()
    scheduler.set_timesteps(n)
    z = SCHEDULE.add_noise(x0, eps, torch.ones(shape[0]))  # pure noise z_1
    for timestep in scheduler.timesteps:
        z = scheduler.step(model(scheduler.scale_model_input(z, timestep), timestep), timestep, z).prev_sample
    final = SCHEDULE.final_alpha_cumprod  # t = 0 carries the final ᾱ (ᾱ[0]): a trace of noise remains
    torch.testing.assert_close(z, final**0.5 * x0 + (1 - final) ** 0.5 * eps, atol=1e-4, rtol=0)


def test_marginal_eps_model_lands_on_data_with_one_step_per_window():
    """With one step per window every step starts at a window start z_s, which is on the DDPM marginal, so the
    teacher's true ε is the target there. (Mid-window points are off the marginal: N = 6, 8 need the
    line-aware model above.)"""
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    scheduler = PeRFlowScheduler()
    scheduler.set_timesteps(4)
    z = SCHEDULE.add_noise(x0, eps, torch.ones(2))
    for timestep in scheduler.timesteps:
        a = SCHEDULE.alphas_cumprod[timestep - 1].float()  # window start t = timestep/1000: ᾱ[1000·t − 1]
        z = scheduler.step((z - a.sqrt() * x0) / (1 - a).sqrt(), timestep, z).prev_sample
    final = SCHEDULE.final_alpha_cumprod
    torch.testing.assert_close(z, final**0.5 * x0 + (1 - final) ** 0.5 * eps, atol=1e-4, rtol=0)


def test_step_moves_along_the_line_to_the_predicted_window_end():
    scheduler = PeRFlowScheduler()
    scheduler.set_timesteps(6)
    gen = torch.Generator().manual_seed(0)
    sample, model_output = torch.randn(2, 4, 5, 5, generator=gen), torch.randn(2, 4, 5, 5, generator=gen)
    a_s, a_e = SCHEDULE.alpha_bar(torch.tensor([1.0, 0.75]))
    z_e = window_end_from_eps(model_output, sample, 1.0, 1.0, 0.75, a_s, a_e)
    # step 0: t = 1 → 0.875, half-way along the window → half-way to its end
    half = scheduler.step(model_output, 1000, sample).prev_sample
    torch.testing.assert_close(half, sample + 0.5 * (z_e - sample))
    # step 1: t = 0.875 → 0.75 = t_e lands on the end predicted there
    z_e1 = window_end_from_eps(model_output, half, 0.875, 1.0, 0.75, a_s, a_e)
    (end,) = scheduler.step(model_output, torch.tensor(875), half, return_dict=False)
    torch.testing.assert_close(end, z_e1)
    with pytest.raises(ValueError, match="not one of"):
        scheduler.step(model_output, 999, sample)
