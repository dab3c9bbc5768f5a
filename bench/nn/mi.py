"""Minibatch estimators of mutual information between latent variables (METHODS.md §2.3).

* :func:`mws_mutual_information`: I(z; w) under the *aggregate* posterior q(z, w) = E_data[q(z|x) q(w|x)], estimated
  on a minibatch by minibatch-weighted sampling (MWS; Chen, Li, Grosse, Duvenaud, "Isolating Sources of
  Disentanglement in VAEs", NeurIPS 2018): each aggregate density at a sample is a weighted sum of the minibatch's
  posteriors evaluated at that sample. Used as a penalty (the information-bottleneck term of DCMEM).
* :func:`info_nce`: the InfoNCE loss on cosine similarities, whose negative lower-bounds I(a; b) up to log B
  (van den Oord et al. 2018); used as an alignment term on posterior means.

Conventions: samples and posterior parameters are [B, D] (row i of the parameters is the posterior of minibatch
item i, and row i of the samples was drawn from it); diagonal Gaussians are ``(mu, logvar)`` as in
:mod:`bench.nn.dists`. Nothing here draws random numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.nn.dists import gaussian_log_prob

__all__ = ["info_nce", "log_aggregate_density", "mws_mutual_information", "pairwise_log_density"]


def pairwise_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """[B, B]: entry (i, j) = log q(z_i | x_j), sample i scored under row j's diagonal Gaussian (summed over D)."""
    return gaussian_log_prob(z.unsqueeze(1), mu.unsqueeze(0), logvar.unsqueeze(0)).sum(-1)


def _log_weights(batch: int, dataset_size: int | None, like: Tensor) -> Tensor:
    """[B, B] log pi_ij, the weight of minibatch posterior j in the aggregate density at sample i (rows sum to 1)."""
    if dataset_size is None or batch == 1:
        return torch.full((batch, batch), -math.log(batch), dtype=like.dtype, device=like.device)
    if dataset_size < batch:
        raise ValueError(f"dataset_size ({dataset_size}) cannot be smaller than the minibatch ({batch})")
    # sample i was drawn from its own posterior (weight 1/N in the aggregate); the other B - 1 rows stand for the
    # remaining N - 1 data points
    other = math.log(dataset_size - 1) - math.log(dataset_size) - math.log(batch - 1)
    out = torch.full((batch, batch), other, dtype=like.dtype, device=like.device)
    return out.fill_diagonal_(-math.log(dataset_size))


def log_aggregate_density(log_q: Tensor, dataset_size: int | None = None) -> Tensor:
    """[B]: log q^(z_i) = log sum_j pi_ij q(z_i | x_j) from the matrix ``log_q`` [B, B] of :func:`pairwise_log_density`.

    ``dataset_size`` None weights every minibatch item 1/B (the aggregate posterior of the minibatch itself).
    With the size N of the data set, sample i's own posterior gets 1/N and each other item (N - 1) / (N (B - 1)):
    the MWS idea with weights that sum to one, so that a density which does not depend on x is recovered exactly.
    (Chen et al.'s printed MWS weights every item 1/(N B), which sums to 1/N and offsets every log-density by
    -log N; the offset cancels in gradients but not in the value.)
    """
    b = log_q.shape[0]
    return torch.logsumexp(log_q + _log_weights(b, dataset_size, log_q), dim=1)


def mws_mutual_information(z: Tensor, z_mu: Tensor, z_logvar: Tensor, w: Tensor, w_mu: Tensor, w_logvar: Tensor,
                           dataset_size: int | None = None) -> Tensor:
    """Scalar MWS estimate of I(z; w) = KL(q(z, w) || q(z) q(w)) under the aggregate posterior (METHODS.md §2.3):

        I^ = (1/B) sum_i [ log q^(z_i, w_i) - log q^(z_i) - log q^(w_i) ],

    where q(z, w | x_j) = q(z | x_j) q(w | x_j) (the encoders factorise) and each q^ is
    :func:`log_aggregate_density`. About 0 when z and w are independent under the aggregate; at most about log B
    (the entropy of the minibatch index) when w determines z. An empty w (D_w = 0) gives exactly 0.

    Args:
        z, z_mu, z_logvar: [B, Dz] samples z_i ~ q(z | x_i) and the posteriors' parameters.
        w, w_mu, w_logvar: [B, Dw] likewise for w (drawn independently of z given x_i).
        dataset_size: see :func:`log_aggregate_density`.
    """
    log_qz = pairwise_log_density(z, z_mu, z_logvar)
    log_qw = pairwise_log_density(w, w_mu, w_logvar)
    joint = log_aggregate_density(log_qz + log_qw, dataset_size)
    return (joint - log_aggregate_density(log_qz, dataset_size) - log_aggregate_density(log_qw, dataset_size)).mean()


def info_nce(a: Tensor, b: Tensor, tau: float = 0.1, symmetric: bool = True) -> Tensor:
    """Scalar InfoNCE loss of paired rows a_i, b_i [B, D] on cosine similarities (METHODS.md §2.3 L_NCE):

        CE(cos(a_i, b_j) / tau over j, target i), averaged over i;

    ``symmetric`` averages it with the same loss for b against a. log B - loss lower-bounds I(a; b). Equals log B
    when every row is the same vector (nothing to tell apart) and tends to 0 for distinct matched rows as tau -> 0.
    """
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(0, 1) / tau
    target = torch.arange(a.shape[0], device=a.device)
    loss = F.cross_entropy(logits, target)
    return 0.5 * (loss + F.cross_entropy(logits.transpose(0, 1), target)) if symmetric else loss
