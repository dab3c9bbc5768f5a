"""Multi-sample objectives from K log importance weights: the ELBO, the IWAE bound and the DReG surrogate
(docs/methods.md §0.5).

Log-weights are stacked with the K samples on ``dim`` (default 0, e.g. [K, B]); every estimator returns the tensor
with that dim reduced. Nothing here draws random numbers.

DReG (Tucker, Lawson, Gu, Maddison, ICLR 2019) needs two things from the caller, which only the caller can do:
the log q terms inside ``log_w`` must be evaluated with the encoder's distribution parameters *detached* (the
samples stay reparameterised), and the reparameterised samples are passed here so that their gradients can be
reweighted.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from bench.nn.dists import iwae_bound

__all__ = ["ESTIMATORS", "dreg_surrogate", "elbo_estimate", "importance_weights", "iwae_estimate", "needs_detached_q"]


def importance_weights(log_w: Tensor, dim: int = 0) -> Tensor:
    """Self-normalised importance weights softmax_k(log_w_k), detached (they are constants of the estimators)."""
    return torch.softmax(log_w.detach(), dim=dim)


def elbo_estimate(log_w: Tensor, latents: Sequence[Tensor] = (), dim: int = 0) -> Tensor:
    """The K-sample ELBO: the mean of the log-weights."""
    return log_w.mean(dim)


def iwae_estimate(log_w: Tensor, latents: Sequence[Tensor] = (), dim: int = 0) -> Tensor:
    """The IWAE bound log (1/K) sum_k exp(log_w_k), with its ordinary gradient."""
    return iwae_bound(log_w, dim)


def dreg_surrogate(log_w: Tensor, latents: Sequence[Tensor] = (), dim: int = 0) -> Tensor:
    """A surrogate whose *value* is the IWAE bound and whose *gradient* is the DReG estimator.

    The gradient is that of sum_k w~_k log_w_k with w~ = :func:`importance_weights` (the surrogate of the official
    code, ``epalu/mmvaeplus:src/objectives.py m_dreg``), plus a hook on each latent that multiplies its incoming
    gradient by w~_k: with the log q parameters detached by the caller, the encoder path then gets the
    doubly-reparameterised sum_k w~_k^2 d log_w_k / d z_k, while the decoder gets the IWAE gradient
    sum_k w~_k d log_w_k / d theta. The value is shifted to the IWAE bound (by a detached constant, which changes no
    gradient) so that the logged loss means the same thing for every estimator.

    Args:
        log_w: [..., K, ...] log-weights, K on ``dim``.
        latents: reparameterised samples whose leading dims match ``log_w`` exactly (e.g. log_w [M, K, B] and
            latents [M, K, B, D]); each gets one hook. Tensors that do not require grad are skipped.
    """
    weights = importance_weights(log_w, dim)
    weighted = (weights * log_w).sum(dim)
    for z in latents:
        if z.requires_grad:
            scale = weights.reshape(weights.shape + (1,) * (z.dim() - weights.dim()))
            z.register_hook(lambda grad, scale=scale: grad * scale)
    return iwae_bound(log_w, dim).detach() + (weighted - weighted.detach())


#: name -> f(log_w, latents, dim); all reduce ``dim``.
ESTIMATORS: dict[str, Callable[..., Tensor]] = {
    "elbo": elbo_estimate,
    "iwae": iwae_estimate,
    "dreg": dreg_surrogate,
}


def needs_detached_q(estimator: str) -> bool:
    """Whether the caller must evaluate log q with detached distribution parameters (DReG's stop-gradient)."""
    return estimator == "dreg"
