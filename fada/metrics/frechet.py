"""Fréchet distance between two Gaussians fitted to feature sets.

Follows Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium"
(NeurIPS 2017), as implemented by pytorch-fid (mseitzer/pytorch-fid, ``calculate_frechet_distance``):

    d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½)

with ``scipy.linalg.sqrtm`` for the matrix square root, ``eps·I`` added to both covariances when it is not
finite, and a negligible imaginary part (numerical error) dropped.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-6  # added to the covariance diagonals when sqrtm(Σ₁Σ₂) is not finite
IMAG_ATOL = 1e-3  # largest imaginary part on the diagonal of sqrtm(Σ₁Σ₂) treated as numerical error


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) in float64 of ``features`` (N, D), one sample per row; N ≥ 2."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {features.shape}")
    if len(features) < 2:
        raise ValueError(f"a covariance needs at least 2 samples, got {len(features)}")
    return features.mean(axis=0), np.atleast_2d(np.cov(features, rowvar=False))


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    """``scipy.linalg.sqrtm`` without its ill-conditioning warning, which covariances from fewer samples than
    dimensions always raise (pytorch-fid silences it with ``disp=False``, deprecated since SciPy 1.16)."""
    import warnings

    from scipy import linalg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        return linalg.sqrtm(matrix)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = EPS) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    Raises ValueError when the shapes differ or when sqrtm(Σ₁Σ₂) keeps a non-negligible imaginary part.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched statistics: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")

    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(sigma1)) * eps
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=IMAG_ATOL):
            raise ValueError(f"sqrtm(sigma1 @ sigma2) has an imaginary component of {np.abs(covmean.imag).max():.3g}")
        covmean = covmean.real

    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
