"""Minibatch estimators of mutual information between latent variables (docs/methods.md §2.3).

* :func:`mws_mutual_information`: I(z; w) under the *aggregate* posterior q(z, w) = E_data[q(z|x) q(w|x)], estimated
  on a minibatch by minibatch-weighted sampling (MWS; Chen, Li, Grosse, Duvenaud, "Isolating Sources of
  Disentanglement in VAEs", NeurIPS 2018): each aggregate density at a sample is a weighted sum of the minibatch's
  posteriors evaluated at that sample. Used as a penalty (the information-bottleneck term of DCMEM).
* :func:`info_nce`: the InfoNCE loss on cosine similarities, whose negative lower-bounds I(a; b) up to log B
  (van den Oord et al. 2018); used as an alignment term on posterior means.

Conventions: samples and posterior parameters are [B, D] (row i of the parameters is the posterior of minibatch
item i, and row i of the samples was drawn from it); diagonal Gaussians are ``(mu, logvar)`` as in
:mod:`bench.nn.dists`. Leading dims [..., B, D] batch independent estimates, and a boolean ``mask`` [..., B]
restricts each estimate to its True rows, as if the others were not in the minibatch: one call then replaces a
Python loop of boolean-indexed calls (and its host syncs). Nothing here draws random numbers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.nn.dists import gaussian_log_prob

__all__ = ["info_nce", "log_aggregate_density", "mws_mutual_information", "pairwise_log_density"]


def pairwise_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """[..., B, B]: entry (i, j) = log q(z_i | x_j), sample i scored under row j's diagonal Gaussian (summed over D)."""
    return gaussian_log_prob(z.unsqueeze(-2), mu.unsqueeze(-3), logvar.unsqueeze(-3)).sum(-1)


def _mask_columns(scores: Tensor, mask: Tensor) -> Tensor:
    """``scores`` [..., B, B] with the columns of rows outside ``mask`` [..., B] set to the lowest finite value: they
    add exactly 0 to a log-sum-exp over a row, and a row with no column left stays finite (no NaN gradients)."""
    return scores.masked_fill(~mask.unsqueeze(-2), torch.finfo(scores.dtype).min)


def _masked_row_mean(values: Tensor, mask: Tensor) -> Tensor:
    """[...]: the mean of ``values`` [..., B] over the True rows of ``mask``; 0 where there are none."""
    return torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum(-1) / mask.sum(
        -1).clamp(min=1)


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


def log_aggregate_density(log_q: Tensor, dataset_size: int | None = None, mask: Tensor | None = None) -> Tensor:
    """[..., B]: log q^(z_i) = log sum_j pi_ij q(z_i | x_j) from ``log_q`` [..., B, B] of :func:`pairwise_log_density`.

    ``dataset_size`` None weights every minibatch item 1/B (the aggregate posterior of the minibatch itself).
    With the size N of the data set, sample i's own posterior gets 1/N and each other item (N - 1) / (N (B - 1)):
    the MWS idea with weights that sum to one, so that a density which does not depend on x is recovered exactly.
    (Chen et al.'s printed MWS weights every item 1/(N B), which sums to 1/N and offsets every log-density by
    -log N; the offset cancels in gradients but not in the value.)
    ``mask`` [..., B] (with ``dataset_size`` None only): the minibatch is the True rows, each weighted 1/|rows|.
    """
    if mask is None:
        return torch.logsumexp(log_q + _log_weights(log_q.shape[-1], dataset_size, log_q), dim=-1)
    if dataset_size is not None:
        raise ValueError(f"a row mask needs dataset_size=None (weights 1/|rows|), got dataset_size={dataset_size}")
    n = mask.sum(-1).clamp(min=1).to(log_q.dtype)
    return torch.logsumexp(_mask_columns(log_q, mask), dim=-1) - n.log().unsqueeze(-1)


def mws_mutual_information(z: Tensor, z_mu: Tensor, z_logvar: Tensor, w: Tensor, w_mu: Tensor, w_logvar: Tensor,
                           dataset_size: int | None = None, mask: Tensor | None = None) -> Tensor:
    """Scalar MWS estimate of I(z; w) = KL(q(z, w) || q(z) q(w)) under the aggregate posterior (docs/methods.md §2.3):

        I^ = (1/B) sum_i [ log q^(z_i, w_i) - log q^(z_i) - log q^(w_i) ],

    where q(z, w | x_j) = q(z | x_j) q(w | x_j) (the encoders factorise) and each q^ is
    :func:`log_aggregate_density`. About 0 when z and w are independent under the aggregate; at most about log B
    (the entropy of the minibatch index) when w determines z. An empty w (D_w = 0) gives exactly 0.

    Args:
        z, z_mu, z_logvar: [B, Dz] samples z_i ~ q(z | x_i) and the posteriors' parameters.
        w, w_mu, w_logvar: [B, Dw] likewise for w (drawn independently of z given x_i).
        dataset_size: see :func:`log_aggregate_density`.
        mask: [..., B] the rows forming each minibatch (see the module's conventions); 0 for an empty one.

    Returns a scalar for [B, D] inputs, [...] for leading dims.
    """
    log_qz = pairwise_log_density(z, z_mu, z_logvar)
    log_qw = pairwise_log_density(w, w_mu, w_logvar)
    joint = log_aggregate_density(log_qz + log_qw, dataset_size, mask)
    per_row = joint - log_aggregate_density(log_qz, dataset_size, mask) - log_aggregate_density(log_qw, dataset_size,
                                                                                             mask)
    return per_row.mean(-1) if mask is None else _masked_row_mean(per_row, mask)


def info_nce(a: Tensor, b: Tensor, tau: float = 0.1, symmetric: bool = True, mask: Tensor | None = None) -> Tensor:
    """InfoNCE loss of paired rows a_i, b_i [..., B, D] on cosine similarities (DCMEM's L_NCE, methods/dcmem/__init__.py):

        CE(cos(a_i, b_j) / tau over j, target i), averaged over i;

    ``symmetric`` averages it with the same loss for b against a. log B - loss lower-bounds I(a; b). Equals log B
    when every row is the same vector (nothing to tell apart) and tends to 0 for distinct matched rows as tau -> 0.
    ``mask`` [..., B]: only the True rows are pairs and candidates (0 where there are none). A scalar for [B, D]
    inputs, [...] for leading dims.
    """
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(-2, -1) / tau
    loss = _one_way_nce(logits, mask)
    return 0.5 * (loss + _one_way_nce(logits.transpose(-2, -1), mask)) if symmetric else loss


def _one_way_nce(logits: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over rows i of -log softmax_j(logits_ij) at j = i (the cross-entropy with target i), over masked rows."""
    if mask is None:
        return -torch.log_softmax(logits, -1).diagonal(dim1=-2, dim2=-1).mean(-1)
    return _masked_row_mean(-torch.log_softmax(_mask_columns(logits, mask), -1).diagonal(dim1=-2, dim2=-1), mask)
