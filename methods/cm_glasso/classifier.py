"""The generative (QDA) classifier of docs/methods.md §3.7 [reconstructed: the paper's abstract says "generative
classification"; the form is standard QDA with the graphical-lasso precisions].

    score_k(x) = log pi_k + 1/2 logdet Theta_k - 1/2 (x - mu_k)^T Theta_k (x - mu_k),   pi_k = n_k / n

predict = argmax_k. log-determinants come from Cholesky factors (Theta_k = L_k L_k^T, logdet = 2 sum log diag L_k)
and the quadratic form is ||L_k^T (x - mu_k)||^2, so no inverse is ever formed. Computed in float64 torch on the
device of the parameters.

Ablation "shared": Theta_k = Theta_0 + diag(Delta_k), the shared graph with each class's own diagonal. That matrix
need not be positive definite (only Theta_0 + Delta_k is constrained); its eigenvalues are floored at 1e-6 times the
largest (an eigenvalue projection) and the floor is reported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from methods.cm_glasso.solver import DTYPE, JointGLassoResult

VARIANTS = ("joint", "shared")
EIG_FLOOR = 1e-6


def qda_scores(x: torch.Tensor, means: torch.Tensor, precisions: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
    """score_k(x) for x [B, p], means [K, p], precisions [K, p, p] (PD), log_prior [K] -> [B, K] (float64)."""
    x = x.to(DTYPE)
    chol = torch.linalg.cholesky(precisions.to(DTYPE))                       # Theta_k = L L^T
    logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # [K]
    diff = x.unsqueeze(1) - means.to(DTYPE).unsqueeze(0)                     # [B, K, p]
    proj = torch.einsum("bkp,kpq->bkq", diff, chol)                          # (L^T d)^T = d^T L
    return log_prior.to(DTYPE) + 0.5 * logdet - 0.5 * proj.square().sum(-1)


def project_pd(theta: np.ndarray, floor: float = EIG_FLOOR) -> tuple[np.ndarray, int]:
    """Symmetric matrices with eigenvalues below floor * (largest) raised to it; returns (matrices, #raised)."""
    vals, vecs = np.linalg.eigh(theta)
    lo = floor * np.maximum(vals[..., -1:], floor)
    raised = int((vals < lo).sum())
    vals = np.maximum(vals, lo)
    return np.einsum("...ij,...j,...kj->...ik", vecs, vals, vecs), raised


@dataclass
class GaussianClassifier:
    """Class means, precisions and priors; ``scores(x)`` are the §3.7 QDA scores (logits up to a constant)."""

    means: np.ndarray        # [K, p]
    precisions: np.ndarray   # [K, p, p]
    log_prior: np.ndarray    # [K]
    raised_eigenvalues: int = 0

    @classmethod
    def from_result(cls, result: JointGLassoResult, means: np.ndarray, counts: np.ndarray,
                    variant: str = "joint") -> "GaussianClassifier":
        """The classifier of a joint graphical-lasso fit: ``joint`` uses Omega_k (PD by construction),
        ``shared`` the ablation Theta_0 + diag(Delta_k)."""
        if variant not in VARIANTS:
            raise ValueError(f"GaussianClassifier: variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        counts = np.asarray(counts, dtype=np.float64)
        if (counts <= 0).any():
            raise ValueError(f"GaussianClassifier: every class needs samples, got counts {counts.tolist()}")
        raised = 0
        if variant == "joint":
            prec = result.precision
        else:
            diag = np.einsum("kii->ki", result.delta)
            prec, raised = project_pd(result.theta0[None] + np.einsum("ki,ij->kij", diag, np.eye(len(diag[0]))))
        return cls(np.asarray(means, dtype=np.float64), np.asarray(prec, dtype=np.float64),
                   np.log(counts / counts.sum()), raised)

    def with_equal_priors(self) -> "GaussianClassifier":
        """The same Gaussians with pi_k = 1/K: the rule for a metric that weighs every class equally (mean IoU),
        where the empirical priors of a background-dominated sample would decide most pixels."""
        k = len(self.log_prior)
        return dataclasses.replace(self, log_prior=np.full(k, -np.log(k)))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        dev = x.device
        return qda_scores(x, torch.as_tensor(self.means, device=dev), torch.as_tensor(self.precisions, device=dev),
                          torch.as_tensor(self.log_prior, device=dev))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(x).argmax(1)


def class_statistics(x: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n_k [K], mu_k [K, p], S_k [K, p, p]) with the 1/n_k covariance of §3.3. A class with fewer than two samples
    cannot give a covariance: the error names it."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    counts = np.bincount(y, minlength=n_classes)[:n_classes].astype(np.float64)
    small = [k for k in range(n_classes) if counts[k] < 2]
    if small:
        raise ValueError(f"class statistics: classes {small} have fewer than 2 samples "
                         f"(counts {counts.astype(int).tolist()})")
    means = np.stack([x[y == k].mean(0) for k in range(n_classes)])
    p = x.shape[1]
    covs = np.stack([np.cov(x[y == k], rowvar=False, bias=True).reshape(p, p) for k in range(n_classes)])
    return counts, means, covs


def bayes_log_posterior(scores: torch.Tensor) -> torch.Tensor:
    """log softmax of the scores: the class posterior of §3.8."""
    return scores - torch.logsumexp(scores, dim=1, keepdim=True)


__all__ = ["GaussianClassifier", "qda_scores", "class_statistics", "bayes_log_posterior", "project_pd", "VARIANTS"]
