"""Laplace posteriors and priors as MMVAE+ parameterises them (docs/methods.md §5), and the masked mixture density of
§0.4 for Laplace components.

Conventions:

* A diagonal Laplace distribution is given by ``(loc, scale)`` (the scale itself, not its log: the softmax
  parameterisation below produces scales directly, and may produce a scale of exactly ``eta``).
* Per-sample functions sum over the last (event) dim.
* The only random function is :func:`laplace_rsample`, which accepts a ``torch.Generator``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.nn.dists import laplace_log_prob

__all__ = [
    "LaplaceHead",
    "laplace_log_density",
    "laplace_rsample",
    "log_mixture_laplace",
    "masked_log_mean_exp",
    "softmax_scale",
]

#: the additive floor of the posterior scale in the official code (``epalu/mmvaeplus:src/utils.py Constants.eta``)
ETA = 1e-6


def softmax_scale(logits: Tensor, eta: float = ETA) -> Tensor:
    """scale = softmax(logits) * D + eta over the last dim (D = its size).

    The MMVAE+ parameterisation of every Laplace scale (``epalu/mmvaeplus:src/models/vae_polymnist.py``
    ``Enc.forward`` with eta = 1e-6; the priors use eta = 0). The scales of one distribution therefore sum to
    D (+ D eta): a posterior can only move scale between dimensions, not shrink all of them, and with D = 1 the scale
    is the constant 1 + eta. Zero logits give scale 1 (+ eta) in every dimension, i.e. the Laplace(0, 1) prior.
    """
    return F.softmax(logits, dim=-1) * logits.shape[-1] + eta


def laplace_rsample(loc: Tensor, scale: Tensor, sample_shape: tuple[int, ...] = (),
                    generator: torch.Generator | None = None) -> Tensor:
    """Reparameterised draws [*sample_shape, *loc.shape] from Laplace(loc, scale) (differentiable in both).

    Inverse-CDF: with u ~ U(-1, 1), x = loc - scale * sign(u) * log(1 - |u|). The uniform is drawn in float32 and
    kept away from -1 (where log(0) = -inf), then cast, so half-precision models get finite noise too.
    """
    shape = torch.Size(sample_shape) + torch.broadcast_shapes(loc.shape, scale.shape)
    u = torch.rand(shape, generator=generator, dtype=torch.float32, device=loc.device) * 2 - 1
    u = u.clamp(min=torch.finfo(torch.float32).eps - 1)
    noise = -u.sign() * torch.log1p(-u.abs())
    return loc + scale * noise.to(loc.dtype)


def laplace_log_density(x: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """log Laplace(x; loc, scale) summed over the last dim (inputs broadcast)."""
    return laplace_log_prob(x, loc, scale.log()).sum(-1)


def masked_log_mean_exp(values: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """log of the mean of exp(values) over the entries of ``dim`` where ``mask`` is True.

    ``mask`` broadcasts against ``values``. Left-out entries are replaced by -inf *before* the reduction (with
    ``torch.where``, whose gradient to the unselected branch is exactly 0), so they reach neither the value nor the
    gradients as long as they are finite. Every slice must keep at least one entry, else the result is -inf.
    """
    mask = mask.expand_as(values)
    kept = torch.where(mask, values, torch.full_like(values, -math.inf))
    count = mask.sum(dim).to(values.dtype)
    return torch.logsumexp(kept, dim=dim) - count.log()


def log_mixture_laplace(z: Tensor, loc: Tensor, scale: Tensor, mask: Tensor) -> Tensor:
    """log q_mix(z) with q_mix the uniform mixture of the *observed* Laplace components of each sample.

    Args:
        z: [..., B, D] points (e.g. [M, K, B, D]: K draws from each source modality's posterior).
        loc, scale: [C, B, D] components (one per modality).
        mask: [B, C] bool, True where component c of sample b is in the mixture.

    Returns:
        [..., B]: logsumexp over the kept components of log q_c(z) minus log(number kept) (docs/methods.md §0.4, with
        Laplace components; with every component kept this is the MMVAE+ ``log_mean_exp`` over modalities).
    """
    per_component = laplace_log_density(z.unsqueeze(-2), loc.transpose(0, 1), scale.transpose(0, 1))  # [..., B, C]
    return masked_log_mean_exp(per_component, mask, dim=-1)


class LaplaceHead(nn.Module):
    """Two linear heads on a feature vector: the location and the scale logits of a diagonal Laplace, the scale
    through :func:`softmax_scale`."""

    def __init__(self, in_dim: int, latent_dim: int, eta: float = ETA):
        super().__init__()
        self.loc = nn.Linear(in_dim, latent_dim)
        self.logits = nn.Linear(in_dim, latent_dim)
        self.eta = eta

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.loc(h), softmax_scale(self.logits(h), self.eta)
