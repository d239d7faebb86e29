import pytest
import torch
from diffusers import DDPMScheduler

from fada.noise_schedule import NoiseSchedule, per_sample


@pytest.mark.parametrize(
    "kwargs",
    [
        {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},  # SD1.5 (our default)
        {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02},
    ],
)
def test_alphas_cumprod_is_diffusers_ddpm(kwargs):
    ours = NoiseSchedule(**kwargs)
    if kwargs["beta_schedule"] == "scaled_linear":
        assert torch.equal(NoiseSchedule().alphas_cumprod, ours.alphas_cumprod)
    ref = DDPMScheduler(**kwargs).alphas_cumprod
    assert ours.alphas_cumprod.dtype == torch.float64 and ours.alphas_cumprod.shape == (1000,)
    assert torch.equal(ours.alphas_cumprod, ref.to(torch.float64))


def test_sd15_defaults_and_unknown_schedule():
    ours = NoiseSchedule()
    assert ours.alphas_cumprod[0].item() == pytest.approx(1 - 0.00085, rel=1e-6)
    assert ours.alphas_cumprod[-1].item() == pytest.approx(0.004660, rel=1e-3)  # SD1.5's terminal ᾱ
    with pytest.raises(ValueError, match="scaled_linear"):
        NoiseSchedule(beta_schedule="cosine")


def test_timestep_index_is_floor_1000t_minus_one_clamped():
    schedule = NoiseSchedule()
    t = torch.tensor([1.0, 0.75, 0.7, 0.3, 0.875, 0.9999, 0.0025, 0.0015, 0.0005, 0.0])
    expected = [999, 749, 699, 299, 874, 998, 1, 0, 0, 0]
    assert schedule.timestep_index(t).tolist() == expected  # float32 0.7 = 0.69999999 still maps to 699
    assert schedule.timestep_index(t.double()).tolist() == expected
    assert schedule.timestep_index(t).dtype == torch.long


def test_alpha_bar_lookup_and_clean_end():
    schedule = NoiseSchedule()
    t = torch.tensor([[1.0, 0.5], [0.0, 0.0005]])
    alpha_bar = schedule.alpha_bar(t)
    assert alpha_bar.dtype == torch.float32 and alpha_bar.shape == (2, 2)
    table = schedule.alphas_cumprod.float()
    assert alpha_bar[0, 0] == table[999] and alpha_bar[0, 1] == table[499]
    assert alpha_bar[1, 0] == table[0]  # t = 0: the final ᾱ, ᾱ[0] with set_alpha_to_one=False (SD1.5, PeRFlow)
    assert NoiseSchedule(set_alpha_to_one=True).alpha_bar(torch.zeros(1)).item() == 1.0
    assert alpha_bar[1, 1] == table[0]  # just above 0: first training step


@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (3, 2, 4, 5, 6)])
def test_add_noise_per_sample(shape):
    schedule = NoiseSchedule()
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    t = torch.tensor([1.0, 0.5, 0.0])
    z = schedule.add_noise(x0, eps, t)
    for i, index in enumerate([999, 499, 0]):  # t = 0: the final ᾱ, ᾱ[0]
        a = schedule.alphas_cumprod[index].float()
        torch.testing.assert_close(z[i], a.sqrt() * x0[i] + (1 - a).sqrt() * eps[i])
    clean = NoiseSchedule(set_alpha_to_one=True).add_noise(x0, eps, t)
    torch.testing.assert_close(clean[2], x0[2])


def test_per_sample_broadcast():
    x = torch.zeros(2, 3, 4)
    v = per_sample(torch.tensor([1.0, 2.0], dtype=torch.float64), x)
    assert v.shape == (2, 1, 1) and v.dtype == torch.float32
    assert per_sample(2.5, x) == 2.5
