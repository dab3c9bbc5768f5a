"""Fréchet distance between Gaussian feature statistics (FID; docs/methods.md §9.3).

FID = ||mu_1 - mu_2||^2 + Tr(Sigma_1 + Sigma_2 - 2 (Sigma_1 Sigma_2)^{1/2}).

This module only compares features; it never loads or downloads a feature extractor. Whoever supplies the features
says what they are (Inception pool3 for a real FID, or a classifier's penultimate layer for the "FID-proxy" of
§9.3, which is not comparable with published FIDs).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.linalg

from bench.eval.representation import as_embeddings

__all__ = ["feature_statistics", "fid_from_features", "frechet_distance"]


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    The matrix square root of sigma1 @ sigma2 is taken with ``scipy.linalg.sqrtm``. If it is not finite (a
    singular product), it is recomputed with ``eps * I`` added to both covariances. A complex result from rounding
    is reduced to its real part, but an imaginary part larger than 1e-3 raises ValueError. Negative values that can
    only come from rounding are clipped to 0.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,):
        raise ValueError(f"means must be vectors of the same length; got {mu1.shape} and {mu2.shape}")
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"covariances must be [{d}, {d}]; got {sigma1.shape} and {sigma2.shape}")
    for name, arr in (("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.isfinite(arr).all():
            raise ValueError(f"frechet_distance: {name} contains NaN/inf")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = eps * np.eye(d)
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if not np.isfinite(covmean).all():
        raise ValueError("frechet_distance: the matrix square root is not finite even with eps * I added")
    if np.iscomplexobj(covmean):
        imag = np.abs(np.diagonal(covmean).imag).max()
        if imag > 1e-3:
            raise ValueError(f"frechet_distance: matrix square root has an imaginary component of {imag:.3g}")
        covmean = covmean.real

    diff = mu1 - mu2
    fid = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return float(max(fid, 0.0))


def feature_statistics(feats: Any) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], unbiased covariance [D, D]) of features [N, D], N >= 2."""
    X = as_embeddings(feats, "features")
    if X.shape[0] < 2:
        raise ValueError(f"feature statistics need at least 2 samples; got {X.shape[0]}")
    return X.mean(axis=0), np.atleast_2d(np.cov(X, rowvar=False))


def fid_from_features(real_feats: Any, fake_feats: Any) -> float:
    """FID between two feature sets [N, D] (numpy or torch), each with N >= 2.

    Uses torch-fidelity's ``fid_features_to_statistics`` and ``fid_statistics_to_metric`` (mean and unbiased
    covariance; the trace of the square root from the eigenvalues of Sigma_1 Sigma_2). If torch-fidelity is not
    importable, the same statistics go through :func:`frechet_distance`. Rounding negatives are clipped to 0.
    """
    real = as_embeddings(real_feats, "real_feats")
    fake = as_embeddings(fake_feats, "fake_feats")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in dimension: {real.shape[1]} vs {fake.shape[1]}")
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 samples per set; got {real.shape[0]} and {fake.shape[0]}")
    try:
        import torch
        from torch_fidelity.metric_fid import (
            KEY_METRIC_FID,
            fid_features_to_statistics,
            fid_statistics_to_metric,
        )
    except ImportError:
        return frechet_distance(*feature_statistics(real), *feature_statistics(fake))

    def stats(X: np.ndarray) -> dict[str, np.ndarray]:
        out = fid_features_to_statistics(torch.from_numpy(X))  # float64 on both sides: its dtype checks agree
        return {"mu": np.atleast_1d(out["mu"]), "sigma": np.atleast_2d(out["sigma"])}

    fid = fid_statistics_to_metric(stats(real), stats(fake), verbose=False)[KEY_METRIC_FID]
    return float(max(fid, 0.0))
