"""Small, pure-torch distribution helpers shared by the multimodal VAEs (docs/methods.md §0).

Conventions:

* Diagonal Gaussians are given by ``(mu, logvar)``; Laplace distributions by ``(loc, logscale)``.
* Element-wise log-densities (:func:`gaussian_log_prob`, :func:`laplace_log_prob`) do **not** reduce; the
  per-sample functions (:func:`kl_normal`, :func:`log_mixture_normal`, :func:`log_likelihood`) say which
  dimensions they sum over.
* Nothing here draws random numbers except :func:`reparameterize`, which accepts a ``torch.Generator``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LOG_LIKELIHOODS",
    "gaussian_log_prob",
    "iwae_bound",
    "kl_normal",
    "laplace_log_prob",
    "log_likelihood",
    "log_mixture_normal",
    "product_of_experts",
    "reparameterize",
]

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


# --------------------------------------------------------------------------------------------- experts


def product_of_experts(
    mu: Tensor,
    logvar: Tensor,
    mask: Tensor | None = None,
    prior_expert: bool = True,
    eps: float = 1e-8,
) -> tuple[Tensor, Tensor]:
    """Product of diagonal Gaussian experts (MVAE; docs/methods.md §0.2).

    Args:
        mu, logvar: [M, B, D], one Gaussian expert per modality.
        mask: optional [B, M] bool, True where modality m of sample b is observed. Unobserved experts are
            left out of the product. Their ``mu``/``logvar`` entries may hold anything, NaN and inf included:
            they are replaced (with ``torch.where``) before any arithmetic, so they reach neither the result
            nor the gradients (their gradient is exactly 0).
        prior_expert: include the prior expert N(0, I) (always observed).
        eps: T_m = 1 / (var_m + eps).

    Returns:
        ``(mu, logvar)`` of the product, each [B, D]: T = sum_m T_m, var = 1/T, mu = sum_m mu_m T_m / T.

    Raises:
        ValueError: bad shapes, or (with ``prior_expert=False``) a sample with no observed expert.
    """
    if mu.dim() != 3 or mu.shape != logvar.shape:
        raise ValueError(
            f"product_of_experts expects mu and logvar of the same shape [M, B, D]; got {tuple(mu.shape)} "
            f"and {tuple(logvar.shape)}"
        )
    n_experts, batch, _ = mu.shape
    if mask is not None:
        if mask.shape != (batch, n_experts):
            raise ValueError(f"mask must have shape [B, M] = [{batch}, {n_experts}]; got {tuple(mask.shape)}")
        observed = mask.to(device=mu.device, dtype=torch.bool).transpose(0, 1).unsqueeze(-1)  # [M, B, 1]
        if not prior_expert and not bool(observed.any(dim=0).all()):
            raise ValueError(
                "product_of_experts: a sample has no observed expert and prior_expert=False, so its product is "
                "undefined"
            )
        # Sanitise first: where() passes a zero gradient to the unselected branch, so NaN/inf never leak.
        mu = torch.where(observed, mu, torch.zeros((), dtype=mu.dtype, device=mu.device))
        logvar = torch.where(observed, logvar, torch.zeros((), dtype=logvar.dtype, device=logvar.device))
        precision = torch.where(
            observed, 1.0 / (logvar.exp() + eps), torch.zeros((), dtype=logvar.dtype, device=logvar.device)
        )
    else:
        if not prior_expert and n_experts == 0:
            raise ValueError("product_of_experts: no experts and prior_expert=False")
        precision = 1.0 / (logvar.exp() + eps)

    total = precision.sum(dim=0)
    weighted_mu = (mu * precision).sum(dim=0)
    if prior_expert:
        total = total + 1.0 / (1.0 + eps)  # N(0, I): var 1, mean 0 adds nothing to weighted_mu
    var = 1.0 / total
    return weighted_mu * var, var.log()


# --------------------------------------------------------------------------------------------- Gaussians


def kl_normal(
    mu_q: Tensor,
    logvar_q: Tensor,
    mu_p: Tensor | None = None,
    logvar_p: Tensor | None = None,
) -> Tensor:
    """KL(N(mu_q, var_q) || N(mu_p, var_p)) for diagonal Gaussians, summed over the last dim.

    ``mu_p``/``logvar_p`` default (each on its own) to 0, i.e. the standard normal when both are None.
    Inputs broadcast; for [B, D] inputs the result is [B].
    """
    if mu_p is None:
        mu_p = torch.zeros_like(mu_q)
    if logvar_p is None:
        logvar_p = torch.zeros_like(logvar_q)
    var_ratio = (logvar_q - logvar_p).exp()
    mahalanobis = (mu_q - mu_p).pow(2) * (-logvar_p).exp()
    return 0.5 * (var_ratio + mahalanobis - 1.0 - (logvar_q - logvar_p)).sum(dim=-1)


def gaussian_log_prob(x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """Element-wise log N(x; mu, exp(logvar)); no reduction."""
    return -0.5 * (_LOG_2PI + logvar + (x - mu).pow(2) * (-logvar).exp())


def laplace_log_prob(x: Tensor, loc: Tensor, logscale: Tensor) -> Tensor:
    """Element-wise log Laplace(x; loc, exp(logscale)); no reduction."""
    return -(x - loc).abs() * (-logscale).exp() - logscale - _LOG_2


def log_mixture_normal(z: Tensor, mu: Tensor, logvar: Tensor, dim: int = 0) -> Tensor:
    """Log-density of z under an equal-weight mixture of C diagonal Gaussians (docs/methods.md §0.4).

    log (1/C) sum_c N(z; mu_c, var_c) = logsumexp_c(sum_d log N(z_d; mu_cd, var_cd)) - log C.

    Args:
        z: [..., D] points.
        mu, logvar: components stacked along ``dim`` (default 0), e.g. [C, ..., D]; after ``z.unsqueeze(dim)``
            they must broadcast with z. For a VampPrior-style mixture over a set of C component vectors
            [C, D] evaluated at a batch z [B, D], pass ``mu.unsqueeze(1)`` ([C, 1, D]).
        dim: the component dimension of ``mu``/``logvar`` (counted in their own shape; must not be -1,
            which is the event dim).

    Returns:
        [...]: log-density per point (summed over D, the last dim).
    """
    n_dims = mu.dim()
    dim = dim % n_dims
    if dim == n_dims - 1:
        raise ValueError("log_mixture_normal: the component dim cannot be the last (event) dim")
    n_components = mu.shape[dim]
    per_component = gaussian_log_prob(z.unsqueeze(dim), mu, logvar).sum(dim=-1)
    return torch.logsumexp(per_component, dim=dim) - math.log(n_components)


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw z = mu + exp(logvar / 2) * e with e ~ N(0, I) (differentiable in mu and logvar)."""
    noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + (0.5 * logvar).exp() * noise


def iwae_bound(log_w: Tensor, dim: int = 0) -> Tensor:
    """IWAE bound log (1/K) sum_k exp(log_w_k) over the K samples stacked on ``dim`` (default 0, e.g. [K, B])."""
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


# --------------------------------------------------------------------------------------------- likelihoods


def _bernoulli(x: Tensor, logits: Tensor) -> Tensor:
    # -BCE with logits also accepts x in [0, 1] (the usual relaxation for grey-level images).
    return -F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none")


def _gaussian(x: Tensor, mean: Tensor) -> Tensor:
    return -0.5 * (x - mean).pow(2) - 0.5 * _LOG_2PI


def _laplace(x: Tensor, loc: Tensor) -> Tensor:
    return -(x - loc).abs() - _LOG_2


def _categorical(x: Tensor, logits: Tensor) -> Tensor:
    return -F.cross_entropy(logits, x.long(), reduction="none")


#: kind -> element-wise log-likelihood ``f(x, params)``; :func:`log_likelihood` sums it per sample.
LOG_LIKELIHOODS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "bernoulli": _bernoulli,  # params: logits, same shape as x
    "gaussian": _gaussian,  # params: mean, unit variance
    "laplace": _laplace,  # params: loc, unit scale
    "categorical": _categorical,  # params: logits [B, C, ...]; x: integer classes [B, ...]
}


def log_likelihood(x: Tensor, params: Tensor, kind: str, laplace_scale: float = 1.0) -> Tensor:
    """Per-sample log p(x | params), summed over every non-batch dim; returns [B].

    kinds: ``bernoulli`` (params = logits), ``gaussian`` (params = mean, unit variance),
    ``laplace`` (params = loc, fixed scale ``laplace_scale``, 1 by default), ``categorical`` (params = logits with
    the class dim at position 1, i.e. logits [B, C, ...] for integer x [B, ...]).
    """
    try:
        fn = LOG_LIKELIHOODS[kind]
    except KeyError:
        raise ValueError(
            f"unknown likelihood kind {kind!r}; valid kinds: {', '.join(sorted(LOG_LIKELIHOODS))}"
        ) from None
    if kind == "laplace" and laplace_scale != 1.0:
        # MoPoE's and MMVAE+'s image decoders fix the scale at 0.75 (thomassutter/MoPoE, epalu/mmvaeplus)
        if not laplace_scale > 0:
            raise ValueError(f"laplace_scale must be positive, got {laplace_scale}")
        logscale = torch.full((), math.log(laplace_scale), dtype=params.dtype, device=params.device)
        elementwise = laplace_log_prob(x.to(params.dtype), params, logscale)
    else:
        elementwise = fn(x, params)
    return elementwise.flatten(1).sum(dim=1) if elementwise.dim() > 1 else elementwise
