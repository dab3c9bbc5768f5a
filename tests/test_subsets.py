import math

import pytest
import torch

from bench.nn.dists import gaussian_log_prob, kl_normal, log_mixture_normal, product_of_experts
from bench.nn.subsets import nonempty_subsets, select_components, set_poe, subset_contained, subset_poe


@pytest.mark.parametrize("m", [1, 2, 3, 5, 6])
def test_nonempty_subsets_are_the_powerset_without_the_empty_set(m):
    s = nonempty_subsets(m)
    assert s.shape == (2**m - 1, m) and s.dtype == torch.bool
    assert s.any(1).all()
    assert len({tuple(r.tolist()) for r in s}) == 2**m - 1
    assert torch.equal(s[:m], torch.eye(m, dtype=torch.bool))  # singletons first, in modality order
    assert s[-1].all()  # the full set last
    assert (s.sum(1).diff() >= 0).all()  # ordered by size


def test_subset_contained_lists_the_subsets_of_the_observed_set():
    s = nonempty_subsets(3)
    mask = torch.tensor([[True, True, True], [True, False, True], [False, True, False]])
    valid = subset_contained(s, mask)
    assert valid.sum(1).tolist() == [7, 3, 1]
    for b in range(3):
        for k in range(len(s)):
            assert bool(valid[b, k]) == bool((~s[k] | mask[b]).all())


def test_subset_poe_matches_product_of_experts_for_every_subset():
    torch.manual_seed(0)
    mu, logvar = torch.randn(4, 6, 3), torch.randn(4, 6, 3)
    s = nonempty_subsets(4)
    prior = torch.rand(len(s)) < 0.5
    q_mu, q_logvar = subset_poe(mu, logvar, s, prior)
    assert q_mu.shape == (15, 6, 3)
    for k in range(len(s)):
        want_mu, want_logvar = product_of_experts(mu, logvar, s[k].expand(6, 4), prior_expert=bool(prior[k]))
        assert torch.allclose(q_mu[k], want_mu, atol=1e-6) and torch.allclose(q_logvar[k], want_logvar, atol=1e-6)


def test_set_poe_per_sample_prior_and_empty_sets():
    torch.manual_seed(1)
    mu, logvar = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    mu[1, 0], logvar[1, 0] = float("nan"), float("inf")  # unselected experts may hold anything
    mu.requires_grad_(True)
    sets = torch.tensor([[True, False, True], [False, True, False], [False, False, False], [True, True, True]])
    prior = torch.tensor([False, True, False, True])
    got_mu, got_logvar = set_poe(mu, logvar, sets, prior)
    assert torch.isfinite(got_mu).all() and torch.isfinite(got_logvar).all()
    for b in (0, 1, 3):
        want = product_of_experts(mu[:, b : b + 1], logvar[:, b : b + 1], sets[b : b + 1], prior_expert=bool(prior[b]))
        assert torch.allclose(got_mu[b], want[0][0], atol=1e-6) and torch.allclose(got_logvar[b], want[1][0], atol=1e-6)
    # the empty set falls back to N(0, I)
    assert torch.allclose(got_mu[2], torch.zeros(2)) and torch.allclose(got_logvar[2], torch.zeros(2), atol=1e-6)
    got_mu.sum().backward()
    assert torch.isfinite(mu.grad).all() and (mu.grad[1, 0] == 0).all()


def test_select_components_partitions_the_batch_in_proportion():
    b, k = 70, 7
    g = torch.Generator().manual_seed(0)
    comp = select_components(torch.full((b, k), 1.0 / k), g)
    assert comp.shape == (b,)  # every batch index gets exactly one component
    assert torch.bincount(comp, minlength=k).tolist() == [10] * k  # the official partition: blocks of B/K


def test_select_components_never_picks_a_weight_zero_component_and_is_unbiased():
    g = torch.Generator().manual_seed(0)
    w = torch.tensor([[0.0, 0.5, 0.0, 0.5], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.25, 0.25, 0.25, 0.25]])
    w = w.repeat(8, 1)  # B = 32
    counts = torch.zeros_like(w)
    n = 400
    for _ in range(n):
        comp = select_components(w, g)
        assert (w[torch.arange(len(w)), comp] > 0).all()
        counts[torch.arange(len(w)), comp] += 1
    freq = counts.view(8, 4, 4).sum(0) / (8 * n)
    assert torch.allclose(freq, w[:4], atol=0.03)


def test_mean_of_component_kls_bounds_the_mixture_kl():
    """MoPoE's regulariser (1/K) sum_k KL(q_k || p) >= KL((1/K) sum_k q_k || p) (convexity; docs/methods.md §6)."""
    torch.manual_seed(0)
    k, d, n = 5, 3, 20000
    mu, logvar = torch.randn(k, 1, d), 0.5 * torch.randn(k, 1, d)
    comp = torch.randint(0, k, (n,))
    z = mu[comp, 0] + (0.5 * logvar[comp, 0]).exp() * torch.randn(n, d)
    log_q = log_mixture_normal(z, mu, logvar)
    log_p = gaussian_log_prob(z, torch.zeros(d), torch.zeros(d)).sum(-1)
    mixture_kl = (log_q - log_p).mean()
    mean_kl = kl_normal(mu[:, 0], logvar[:, 0]).mean()
    assert mean_kl >= mixture_kl
    # and the gap is at most log K (the mixture's entropy bonus)
    assert mean_kl - mixture_kl <= math.log(k) + 0.05
