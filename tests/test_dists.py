"""Tests for bench.nn.dists (docs/methods.md §0)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Laplace, Normal, kl_divergence

from bench.nn.dists import (
    LOG_LIKELIHOODS,
    gaussian_log_prob,
    iwae_bound,
    kl_normal,
    laplace_log_prob,
    log_likelihood,
    log_mixture_normal,
    product_of_experts,
    reparameterize,
)


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _normal(mu: torch.Tensor, logvar: torch.Tensor) -> Normal:
    return Normal(mu, (0.5 * logvar).exp())


# --------------------------------------------------------------------------------------------- KL


def test_kl_zero_for_equal_distributions(gen):
    mu, logvar = torch.randn(5, 7, generator=gen), torch.randn(5, 7, generator=gen)
    assert torch.allclose(kl_normal(mu, logvar, mu, logvar), torch.zeros(5), atol=1e-12)
    assert torch.allclose(kl_normal(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3), atol=1e-12)


def test_kl_matches_torch(gen):
    mu_q, lv_q, mu_p, lv_p = (torch.randn(6, 9, generator=gen) for _ in range(4))
    expected = kl_divergence(_normal(mu_q, lv_q), _normal(mu_p, lv_p)).sum(-1)
    got = kl_normal(mu_q, lv_q, mu_p, lv_p)
    assert got.shape == (6,)
    assert torch.allclose(got, expected, atol=1e-10)
    expected_std = kl_divergence(_normal(mu_q, lv_q), Normal(torch.zeros(()), torch.ones(()))).sum(-1)
    assert torch.allclose(kl_normal(mu_q, lv_q), expected_std, atol=1e-10)


# --------------------------------------------------------------------------------------------- PoE


def test_poe_single_expert_unchanged(gen):
    mu, logvar = torch.randn(1, 4, 3, generator=gen), torch.randn(1, 4, 3, generator=gen)
    pm, plv = product_of_experts(mu, logvar, prior_expert=False)
    assert pm.shape == (4, 3) and plv.shape == (4, 3)
    assert torch.allclose(pm, mu[0], atol=1e-6)
    assert torch.allclose(plv, logvar[0], atol=1e-6)


def test_poe_identical_experts(gen):
    m = 4
    mu = torch.randn(1, 5, 3, generator=gen).expand(m, 5, 3)
    logvar = torch.randn(1, 5, 3, generator=gen).expand(m, 5, 3)
    pm, plv = product_of_experts(mu, logvar, prior_expert=False)
    assert torch.allclose(pm, mu[0], atol=1e-6)
    assert torch.allclose(plv.exp(), logvar[0].exp() / m, atol=1e-6)


def test_poe_order_invariant(gen):
    mu, logvar = torch.randn(5, 4, 3, generator=gen), torch.randn(5, 4, 3, generator=gen)
    mask = torch.rand(4, 5, generator=gen) > 0.4
    perm = torch.randperm(5, generator=gen)
    a = product_of_experts(mu, logvar, mask)
    b = product_of_experts(mu[perm], logvar[perm], mask[:, perm])
    assert torch.allclose(a[0], b[0], atol=1e-12) and torch.allclose(a[1], b[1], atol=1e-12)


def test_poe_prior_plus_unit_expert(gen):
    mu = torch.randn(1, 6, 2, generator=gen)
    pm, plv = product_of_experts(mu, torch.zeros(1, 6, 2), prior_expert=True)
    assert torch.allclose(plv.exp(), torch.full((6, 2), 0.5), atol=1e-6)
    assert torch.allclose(pm, mu[0] / 2, atol=1e-6)


def test_poe_mask_excludes_experts_and_nan(gen):
    mu = torch.randn(3, 4, 2, generator=gen)
    logvar = torch.randn(3, 4, 2, generator=gen)
    mask = torch.tensor([[True, False, True], [True, True, True], [False, False, True], [True, False, False]])
    # NaN / inf in every unobserved expert's parameters
    mu_bad = torch.where(mask.T.unsqueeze(-1), mu, torch.full_like(mu, float("nan"))).requires_grad_(True)
    lv_bad = torch.where(mask.T.unsqueeze(-1), logvar, torch.full_like(logvar, float("inf"))).requires_grad_(True)
    pm, plv = product_of_experts(mu_bad, lv_bad, mask)
    assert torch.isfinite(pm).all() and torch.isfinite(plv).all()
    (pm.sum() + plv.sum()).backward()
    assert torch.isfinite(mu_bad.grad).all() and torch.isfinite(lv_bad.grad).all()
    assert (mu_bad.grad[~mask.T] == 0).all() and (lv_bad.grad[~mask.T] == 0).all()
    # each sample equals the PoE of its observed experts alone
    for b in range(4):
        obs = mask[b]
        em, elv = product_of_experts(mu[obs, b : b + 1], logvar[obs, b : b + 1])
        assert torch.allclose(pm[b], em[0], atol=1e-12) and torch.allclose(plv[b], elv[0], atol=1e-12)


def test_poe_only_prior_is_standard_normal():
    mu = torch.full((2, 3, 4), float("nan"))
    mask = torch.zeros(3, 2, dtype=torch.bool)
    pm, plv = product_of_experts(mu, mu.clone(), mask, prior_expert=True)
    assert torch.allclose(pm, torch.zeros(3, 4)) and torch.allclose(plv, torch.zeros(3, 4), atol=1e-6)


def test_poe_no_expert_and_no_prior_raises():
    mu = torch.zeros(2, 3, 4)
    mask = torch.tensor([[True, False], [False, False], [False, True]])
    with pytest.raises(ValueError, match="no observed expert"):
        product_of_experts(mu, mu, mask, prior_expert=False)


def test_poe_bad_mask_shape_raises():
    mu = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="mask"):
        product_of_experts(mu, mu, torch.ones(2, 3, dtype=torch.bool))


# --------------------------------------------------------------------------------------------- densities


def test_gaussian_and_laplace_log_prob(gen):
    x, mu, lv = (torch.randn(4, 3, generator=gen) for _ in range(3))
    assert torch.allclose(gaussian_log_prob(x, mu, lv), _normal(mu, lv).log_prob(x), atol=1e-12)
    assert torch.allclose(laplace_log_prob(x, mu, lv), Laplace(mu, lv.exp()).log_prob(x), atol=1e-12)


def test_mixture_with_one_component_is_gaussian(gen):
    z, mu, lv = (torch.randn(5, 3, generator=gen) for _ in range(3))
    got = log_mixture_normal(z, mu.unsqueeze(0), lv.unsqueeze(0))
    assert got.shape == (5,)
    assert torch.allclose(got, gaussian_log_prob(z, mu, lv).sum(-1), atol=1e-12)


def test_mixture_matches_brute_force(gen):
    z = torch.randn(5, 3, generator=gen)
    mu, lv = torch.randn(4, 1, 3, generator=gen), torch.randn(4, 1, 3, generator=gen)  # 4 shared components
    dens = torch.stack([_normal(mu[c, 0], lv[c, 0]).log_prob(z).sum(-1).exp() for c in range(4)]).mean(0)
    assert torch.allclose(log_mixture_normal(z, mu, lv), dens.log(), atol=1e-10)


def test_reparameterize_seeded_and_differentiable():
    mu = torch.zeros(2000, 2, requires_grad=True)
    lv = torch.full((2000, 2), math.log(4.0), requires_grad=True)
    a = reparameterize(mu, lv, torch.Generator().manual_seed(1))
    b = reparameterize(mu, lv, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert abs(a.std().item() - 2.0) < 0.1
    a.sum().backward()
    assert torch.allclose(mu.grad, torch.ones_like(mu))


def test_iwae_bound():
    lw = torch.log(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))  # [K=2, B=2]
    assert torch.allclose(iwae_bound(lw), torch.log(torch.tensor([2.0, 3.0])))
    assert torch.allclose(iwae_bound(lw.T, dim=1), torch.log(torch.tensor([2.0, 3.0])))


# --------------------------------------------------------------------------------------------- likelihoods


def test_log_likelihood_bernoulli(gen):
    logits = torch.randn(4, 1, 5, 5, generator=gen)
    x = (torch.rand(4, 1, 5, 5, generator=gen) > 0.5).double()
    expected = Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(log_likelihood(x, logits, "bernoulli"), expected, atol=1e-10)


def test_log_likelihood_gaussian_and_laplace(gen):
    x, mu = torch.randn(4, 6, generator=gen), torch.randn(4, 6, generator=gen)
    assert torch.allclose(log_likelihood(x, mu, "gaussian"), Normal(mu, 1.0).log_prob(x).sum(1), atol=1e-10)
    assert torch.allclose(log_likelihood(x, mu, "laplace"), Laplace(mu, 1.0).log_prob(x).sum(1), atol=1e-10)


def test_log_likelihood_categorical(gen):
    logits = torch.randn(3, 7, 5, generator=gen)  # [B, C, L]
    x = torch.randint(0, 7, (3, 5), generator=gen)
    expected = Categorical(logits=logits.transpose(1, 2)).log_prob(x).sum(1)
    got = log_likelihood(x, logits, "categorical")
    assert got.shape == (3,)
    assert torch.allclose(got, expected, atol=1e-10)
    # no extra dims: logits [B, C], x [B]
    flat = torch.randn(3, 7, generator=gen)
    y = torch.randint(0, 7, (3,), generator=gen)
    assert torch.allclose(log_likelihood(y, flat, "categorical"), Categorical(logits=flat).log_prob(y), atol=1e-10)


def test_log_likelihood_unknown_kind():
    with pytest.raises(ValueError, match="bernoulli.*categorical.*gaussian.*laplace"):
        log_likelihood(torch.zeros(2, 3), torch.zeros(2, 3), "poisson")
    assert set(LOG_LIKELIHOODS) == {"bernoulli", "gaussian", "laplace", "categorical"}
