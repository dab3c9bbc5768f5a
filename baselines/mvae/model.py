from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench.method import MultimodalMethod
from bench.nn.dists import kl_normal, log_likelihood, product_of_experts, reparameterize
from bench.nn.modules import (GaussianExperts, build_decoder, decode_means, likelihood_mean, posterior_embeddings,
                              reconstruction_weights, without)
from bench.registry import register_method


@register_method("mvae")
class MVAE(MultimodalMethod):
    kind = "baseline"
    version = 1

    @dataclass(frozen=True)
    class Config:
        latent_dim: int = 16
        hidden: int = 128
        beta: float = 1.0
        # beta rises linearly from beta/warmup to beta over the first warmup epochs (the paper's KL annealing)
        warmup_epochs: int = 0
        # extra random subsets per step (the many-modality variant of the paper); 0 = joint + singles only
        n_random_subsets: int = 0
        # per-modality reconstruction weights lambda_m, in modality order; empty = all 1
        recon_weights: tuple[float, ...] = ()

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        mods = spec.modalities
        self.weights = reconstruction_weights(cfg.recon_weights, len(mods))
        self.experts = GaussianExperts(mods, cfg.latent_dim, cfg.hidden)
        self.decoders = nn.ModuleDict({m.name: build_decoder(m, cfg.latent_dim, cfg.hidden) for m in mods})

    # --- pieces ------------------------------------------------------------------------------------------
    def beta(self) -> float:
        w = self.cfg.warmup_epochs
        return self.cfg.beta * (min(1.0, (self.epoch + 1) / w) if w > 0 else 1.0)

    def subset_elbo(self, mu, logvar, xs, subset: torch.Tensor, beta: float) -> torch.Tensor:
        """Per-sample ELBO of the modalities in ``subset`` [B, M] (PoE posterior with the prior expert)."""
        q_mu, q_logvar = product_of_experts(mu, logvar, subset, prior_expert=True)
        z = reparameterize(q_mu, q_logvar)
        rec = torch.zeros(z.shape[0], device=z.device, dtype=z.dtype)
        for j, m in enumerate(self.modality_names):
            if not subset[:, j].any():
                continue
            mod = self.spec.modalities[j]
            ll = log_likelihood(xs[m], self.decoders[m](z), mod.likelihood)
            rec = rec + self.weights[j] * torch.where(subset[:, j], ll, torch.zeros_like(ll))
        return rec - beta * kl_normal(q_mu, q_logvar)

    def subsets(self, mask: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(subset [B, M], rows that count [B]) pairs: the observed set, each single observed modality, and
        random sub-subsets. A sample with one observed modality counts it once (its joint *is* the single)."""
        several = mask.sum(1) > 1
        out = [(mask, torch.ones_like(several))]
        for j in range(mask.shape[1]):
            single = torch.zeros_like(mask)
            single[:, j] = mask[:, j]
            out.append((single, mask[:, j] & several))
        for _ in range(self.cfg.n_random_subsets):
            pick = (torch.rand(mask.shape, device=mask.device) < 0.5) & mask
            first = torch.nn.functional.one_hot(mask.float().argmax(1), mask.shape[1]).bool()
            pick = torch.where(pick.any(1, keepdim=True), pick, first)
            out.append((pick, several))
        return out

    # --- contract ----------------------------------------------------------------------------------------
    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        mu, logvar, xs = self.experts(batch)
        beta = self.beta()
        total = 0.0
        terms = {}
        for i, (subset, rows) in enumerate(self.subsets(batch["mask"])):
            elbo = self.subset_elbo(mu, logvar, xs, subset, beta)
            term = torch.where(rows, elbo, torch.zeros_like(elbo)).sum()
            total = total + term
            if i == 0:
                terms["elbo_joint"] = (term / rows.sum().clamp(min=1)).detach()
        return {"loss": -total / batch["mask"].shape[0], **terms}

    def posterior(self, mu, logvar, subset):
        return product_of_experts(mu, logvar, subset, prior_expert=True)

    @torch.no_grad()
    def embed(self, batch: dict) -> dict[str, torch.Tensor]:
        mu, logvar, _ = self.experts(batch)
        return posterior_embeddings(mu, logvar, batch["mask"], self.modality_names, self.posterior)

    @torch.no_grad()
    def generate(self, batch: dict, target: str) -> torch.Tensor:
        """Decoder mean of ``target`` from the posterior mean given the observed modalities other than target."""
        mu, logvar, _ = self.experts(batch)
        z = self.posterior(mu, logvar, without(batch["mask"], self.modality_names.index(target)))[0]
        return likelihood_mean(self.decoders[target](z), self.spec.modality(target).likelihood)

    @torch.no_grad()
    def sample(self, n: int) -> dict[str, torch.Tensor]:
        z = torch.randn(n, self.cfg.latent_dim, device=next(self.parameters()).device)
        return decode_means(self.decoders, self.spec.modalities, z)
