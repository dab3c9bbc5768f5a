"""Subsets of modalities and mixture-component selection, for subset-based multimodal VAEs (MoPoE; docs/methods.md §6,
§0.3b).

Conventions:

* A family of subsets is a bool tensor ``[K, M]`` (row k = subset k, True = modality m is in it).
  :func:`nonempty_subsets` orders them by size, then lexicographically by modality index, so the M singletons come
  first (row m = {m}) and the full set is last.
* Experts are ``(mu, logvar)`` of shape ``[M, B, D]``, as in :func:`bench.nn.dists.product_of_experts`; per-subset
  results are ``[K, B, D]``.
* The only random function is :func:`select_components`, which takes a ``torch.Generator``.
"""

from __future__ import annotations

from itertools import combinations

import torch
from torch import Tensor

from bench.nn.dists import product_of_experts

__all__ = [
    "nonempty_subsets",
    "select_components",
    "set_poe",
    "subset_contained",
    "subset_poe",
]


def nonempty_subsets(n_modalities: int, device: torch.device | str | None = None) -> Tensor:
    """All 2^M - 1 non-empty subsets of M modalities as a bool tensor [K, M].

    MoPoE builds the powerset and skips the empty set (code ``thomassutter/MoPoE:utils/BaseExperiment.py
    set_subsets``; ``BaseMMVae.inference``). Order: by size, then lexicographic, so row m is the singleton {m} and
    the last row is the full set.
    """
    if n_modalities < 1:
        raise ValueError(f"nonempty_subsets needs at least one modality, got {n_modalities}")
    rows = [c for k in range(1, n_modalities + 1) for c in combinations(range(n_modalities), k)]
    out = torch.zeros(len(rows), n_modalities, dtype=torch.bool, device=device)
    for i, members in enumerate(rows):
        out[i, list(members)] = True
    return out


def subset_contained(subsets: Tensor, mask: Tensor) -> Tensor:
    """[B, K] bool: subset k lies inside the observed set of sample b (every member observed).

    These are the mixture components a sample with missing modalities can use.
    """
    return ~(subsets.unsqueeze(0) & ~mask.unsqueeze(1)).any(-1)


def subset_poe(
    mu: Tensor, logvar: Tensor, subsets: Tensor, prior: Tensor | bool = False, eps: float = 1e-8
) -> tuple[Tensor, Tensor]:
    """Product of Gaussian experts for every subset at once (docs/methods.md §0.2, vectorised over subsets).

    Args:
        mu, logvar: [M, B, D] experts.
        subsets: [K, M] bool.
        prior: include the N(0, I) expert: one bool for all subsets, or a [K] bool per subset.
        eps: T_m = 1 / (var_m + eps), as :func:`bench.nn.dists.product_of_experts`.

    Returns:
        ``(mu, logvar)`` each [K, B, D]; row k equals ``product_of_experts(mu, logvar, subsets[k] broadcast to [B, M],
        prior_expert=prior[k])``. A subset with no member and no prior is undefined (precision 0); callers never
        form one. Experts outside a subset get weight exactly 0 in the sums, so they are still *computed with*: pass
        finite values (zero-filled inputs, see :func:`bench.nn.modules.fill_missing`), and mask invalid subsets with
        ``torch.where`` downstream.
    """
    if mu.dim() != 3 or mu.shape != logvar.shape:
        raise ValueError(
            f"subset_poe expects mu and logvar of one shape [M, B, D]; got {tuple(mu.shape)}, {tuple(logvar.shape)}"
        )
    if subsets.dim() != 2 or subsets.shape[1] != mu.shape[0]:
        raise ValueError(f"subsets must be [K, M={mu.shape[0]}]; got {tuple(subsets.shape)}")
    weights = subsets.to(mu.dtype)
    precision = 1.0 / (logvar.exp() + eps)
    total = torch.einsum("km,mbd->kbd", weights, precision)
    weighted_mu = torch.einsum("km,mbd->kbd", weights, mu * precision)
    prior_t = torch.as_tensor(prior, device=mu.device).to(mu.dtype).expand(subsets.shape[0])
    total = total + (prior_t / (1.0 + eps)).view(-1, 1, 1)
    var = 1.0 / total
    return weighted_mu * var, var.log()


def set_poe(mu: Tensor, logvar: Tensor, sets: Tensor, prior: Tensor | bool = False) -> tuple[Tensor, Tensor]:
    """Product of the experts in a per-sample set, with a per-sample choice of the N(0, I) expert.

    Args:
        mu, logvar: [M, B, D]; sets: [B, M] bool; prior: bool or [B] bool.

    Returns:
        ``(mu, logvar)`` [B, D]. A sample with an empty set and no prior gets N(0, I) (the only defined
        answer; e.g. generating a modality from nothing). Built on :func:`product_of_experts` with the prior
        passed as an extra expert, so unselected experts may hold anything.
    """
    prior_t = torch.as_tensor(prior, device=sets.device).expand(sets.shape[0])
    use_prior = prior_t | ~sets.any(1)
    zeros = torch.zeros_like(mu[:1])
    return product_of_experts(torch.cat([mu, zeros]), torch.cat([logvar, zeros]),
                              torch.cat([sets, use_prior.unsqueeze(1)], 1), prior_expert=False)


def select_components(weights: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One mixture component per sample, partitioning the batch in proportion to the weights (docs/methods.md §0.3 (b)).

    MoPoE draws a sample of its mixture posterior by giving contiguous blocks of the (shuffled) batch to the
    components, block sizes proportional to the mixture weights (code ``thomassutter/MoPoE:utils/utils.py
    mixture_component_selection``) [paper]. We generalise this to per-sample weights (with missing modalities each
    sample has its own valid components) [reconstructed]: the samples get the stratified quantiles
    t_b = (r_b + 1/2) / B of a random ranking r of the batch, and sample b takes the component where its own
    cumulative weights first exceed t_b. With equal rows of uniform weights this is the official partition into
    blocks of ~B/K (randomly placed instead of by position); marginally each sample takes component k with
    probability w_bk up to the 1/B grid.

    Args:
        weights: [B, K] non-negative, each row summing to 1 (rows need not be equal).
        generator: for the random ranking.

    Returns:
        Long [B]: the component index of each sample (every sample gets exactly one; weight-0 components never).
    """
    b, k = weights.shape
    rank = torch.randperm(b, generator=generator, device="cpu").to(weights.device)
    t = (rank.to(weights.dtype) + 0.5) / b
    cdf = weights.cumsum(1)
    # ties at a cdf step go to the later component; weight-0 components have cdf equal to their predecessor's
    # step so they can never be the first one strictly above t
    comp = (cdf <= t.unsqueeze(1)).sum(1)
    # round-off at the top of the cdf: fall back to the last component with positive weight
    last = k - 1 - (weights > 0).flip(1).to(torch.int8).argmax(1)
    return torch.minimum(comp, last)
