"""Fréchet distance, Gaussian statistics and the FID/FVD argument checks (no feature network needed)."""

import numpy as np
import pytest

from fada.metrics.fid import compute_fid, fid_from_features
from fada.metrics.frechet import frechet_distance, gaussian_stats
from fada.metrics.fvd import compute_fvd


def _random_covariance(rng: np.random.Generator, dim: int) -> np.ndarray:
    a = rng.normal(size=(dim, dim))
    return a @ a.T + 0.1 * np.eye(dim)


def test_gaussian_stats_are_float64_mean_and_covariance():
    features = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    mu, sigma = gaussian_stats(features)
    assert mu.dtype == sigma.dtype == np.float64
    assert mu.shape == (4,) and sigma.shape == (4, 4)
    np.testing.assert_allclose(mu, features.astype(np.float64).mean(axis=0))
    np.testing.assert_allclose(sigma, np.cov(features.astype(np.float64), rowvar=False))
    assert gaussian_stats(features[:, :1])[1].shape == (1, 1)


def test_identical_statistics_give_zero():
    rng = np.random.default_rng(1)
    mu, sigma = rng.normal(size=8), _random_covariance(rng, 8)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)


def test_shift_with_equal_covariance_is_squared_mean_distance():
    rng = np.random.default_rng(2)
    mu, sigma, shift = rng.normal(size=8), _random_covariance(rng, 8), rng.normal(size=8)
    assert frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(shift @ shift, rel=1e-8)


def test_one_dimensional_and_diagonal_closed_forms():
    # 1-D: (μ₁ − μ₂)² + (σ₁ − σ₂)²; N(0, 2²) vs N(1, 3²) → 1 + 1.
    assert frechet_distance(np.array([0.0]), np.array([[4.0]]), np.array([1.0]), np.array([[9.0]])) == pytest.approx(2.0)
    # Diagonal: ‖Δμ‖² + Σ (√a − √b)².
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)


def test_large_imaginary_part_raises():
    # Σ₁Σ₂ = diag(1, −1) has no real square root: not a pair of covariances.
    with pytest.raises(ValueError, match="imaginary component"):
        frechet_distance(np.zeros(2), np.diag([1.0, 1.0]), np.zeros(2), np.diag([1.0, -1.0]))


def test_mismatched_statistics_raise():
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


@pytest.mark.parametrize(("n_real", "n_fake", "dim"), [(20, 15, 128), (2, 3, 32), (40, 50, 16)])
def test_fid_from_features_matches_full_dimensional_distance(n_real, n_fake, dim):
    rng = np.random.default_rng(3)
    real = rng.normal(size=(n_real, dim)) * rng.uniform(0.5, 2.0, dim)
    fake = rng.normal(size=(n_fake, dim)) + 0.3
    full = frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))
    assert fid_from_features(real, fake) == pytest.approx(full, rel=1e-6)
    assert fid_from_features(real, real) == pytest.approx(0.0, abs=1e-6)


def test_fewer_than_two_samples_raise_before_loading_weights(tmp_path):
    missing = tmp_path / "absent.pth"
    frames = np.zeros((4, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="at least 2 fake samples"):
        fid_from_features(np.zeros((3, 4)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="at least 2 real frames"):
        compute_fid(frames[:1], frames, missing)
    with pytest.raises(ValueError, match="at least 2 fake frames"):
        compute_fid(frames, [], missing)
    with pytest.raises(ValueError, match="at least 2 fake videos"):
        compute_fvd([frames, frames], [frames], missing)
