from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench.method import MultimodalMethod
from bench.nn.dists import kl_normal, log_likelihood, reparameterize
from bench.nn.modules import (GaussianExperts, build_decoder, data_size_weights, decode_means, likelihood_mean,
                              modality_likelihoods, posterior_embeddings, reconstruction_weights, without)
from bench.nn.subsets import nonempty_subsets, select_components, set_poe, subset_contained, subset_poe
from bench.registry import register_method

PRIOR_RULES = ("full", "always", "never")
RECON_SCALINGS = ("none", "data_size")


def prior_for(sets: torch.Tensor, rule: str) -> torch.Tensor:
    """[...] bool: which subset posteriors include the N(0, I) expert, for sets [..., M].

    "full" is the official code: the prior expert is appended only when the subset holds every modality
    (``thomassutter/MoPoE:utils/BaseMMVae.py poe_fusion``) [paper]; "always" is its ``modality_poe`` variant;
    "never" is the plain product of the unimodal experts.
    """
    if rule == "full":
        return sets.all(-1)
    return torch.full_like(sets[..., 0], rule == "always")


def mixture_weights(valid: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[B, K] uniform weights over each sample's valid subsets: the official uniform weights, restricted per sample
    to the subsets of its observed modalities (with a complete sample, all 2^M - 1) [reconstructed for missing data]."""
    w = valid.to(dtype)
    return w / w.sum(1, keepdim=True)


@register_method("mopoe")
class MoPoE(MultimodalMethod):
    kind = "baseline"
    version = 1

    @dataclass(frozen=True)
    class Config:
        latent_dim: int = 16
        hidden: int = 128
        beta: float = 1.0
        # which subset posteriors get the N(0, I) expert: "full" (official), "always", "never"
        prior_expert: str = "full"
        # per-modality reconstruction weights, in modality order; empty = all 1
        recon_weights: tuple[float, ...] = ()
        # "data_size": recon_weights are further multiplied by (largest modality's size) / (this one's), the
        # official rescaling on MNIST-SVHN-Text (bench.nn.modules.data_size_weights); "none": not
        recon_scaling: str = "none"
        # "auto": each modality's own likelihood; "laplace": images get Laplace(mean, laplace_scale), as every
        # official image decoder does (thomassutter/MoPoE */networks/ConvNetworksImg*.py return scale 0.75)
        image_likelihood: str = "auto"
        laplace_scale: float = 0.75

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        mods = spec.modalities
        if cfg.prior_expert not in PRIOR_RULES:
            raise ValueError(f"prior_expert must be one of {PRIOR_RULES}, got {cfg.prior_expert!r}")
        if cfg.recon_scaling not in RECON_SCALINGS:
            raise ValueError(f"recon_scaling must be one of {RECON_SCALINGS}, got {cfg.recon_scaling!r}")
        if not cfg.laplace_scale > 0:
            raise ValueError(f"laplace_scale must be positive, got {cfg.laplace_scale}")
        self.likelihoods = modality_likelihoods(mods, cfg.image_likelihood)
        scaling = data_size_weights(mods) if cfg.recon_scaling == "data_size" else (1.0,) * len(mods)
        self.weights = tuple(w * s for w, s in zip(reconstruction_weights(cfg.recon_weights, len(mods)), scaling))
        self.experts = GaussianExperts(mods, cfg.latent_dim, cfg.hidden)
        self.decoders = nn.ModuleDict({m.name: build_decoder(m, cfg.latent_dim, cfg.hidden) for m in mods})
        subsets = nonempty_subsets(len(mods))
        # buffers (not persistent: they are a function of M) so they follow the module to its device
        self.register_buffer("subsets", subsets, persistent=False)
        self.register_buffer("subset_prior", prior_for(subsets, cfg.prior_expert), persistent=False)

    # --- pieces ------------------------------------------------------------------------------------------
    def set_posterior(self, mu, logvar, sets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Subset posterior [B, D] of a per-sample set ``sets`` [B, M] under the ``prior_expert`` rule (an empty
        set gives the prior)."""
        return set_poe(mu, logvar, sets, prior_for(sets, self.cfg.prior_expert))

    def reconstruction(self, z: torch.Tensor, xs: dict, mask: torch.Tensor) -> torch.Tensor:
        """[B] sum over the *observed* modalities of lambda_m log p(x_m | z); each decoder runs once."""
        rec = torch.zeros(z.shape[0], device=z.device, dtype=z.dtype)
        for j, mod in enumerate(self.spec.modalities):
            params = self.decoders[mod.name](z)
            ll = log_likelihood(xs[mod.name], params, self.likelihoods[j], self.cfg.laplace_scale)
            rec = rec + self.weights[j] * torch.where(mask[:, j], ll, torch.zeros_like(ll))
        return rec

    # --- contract ----------------------------------------------------------------------------------------
    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        mask = batch["mask"]
        mu, logvar, xs = self.experts(batch)
        q_mu, q_logvar = subset_poe(mu, logvar, self.subsets, self.subset_prior)  # [K, B, D]
        valid = subset_contained(self.subsets, mask)  # [B, K]
        weights = mixture_weights(valid, mu.dtype)
        # one draw from the mixture per sample: the batch is partitioned across the components (§0.3b)
        comp = select_components(mixture_weights(valid))
        rows = torch.arange(mask.shape[0], device=mask.device)
        z = reparameterize(q_mu[comp, rows], q_logvar[comp, rows])
        rec = self.reconstruction(z, xs, mask)
        # KL of the mixture replaced by the weighted mean of the component KLs (an upper bound; official code)
        kls = kl_normal(q_mu, q_logvar).transpose(0, 1)  # [B, K]
        kl = (weights * torch.where(valid, kls, torch.zeros_like(kls))).sum(1)
        elbo = rec - self.cfg.beta * kl
        return {"loss": -elbo.mean(), "rec": rec.mean().detach(), "kl": kl.mean().detach()}

    @torch.no_grad()
    def embed(self, batch: dict) -> dict[str, torch.Tensor]:
        """``joint``: the subset-posterior mean of the observed set; per modality: its unimodal posterior mean
        (NaN rows where unobserved). MoPoE's own representation is the subset posterior mean
        (``thomassutter/MoPoE:eval_metrics/representation.py`` reads ``inference(...)['subsets'][s][0]``)."""
        mu, logvar, _ = self.experts(batch)
        return posterior_embeddings(mu, logvar, batch["mask"], self.modality_names, self.set_posterior)

    @torch.no_grad()
    def generate(self, batch: dict, target: str) -> torch.Tensor:
        """Decoder mean of ``target`` at the posterior mean of the subset of observed modalities other than target
        (the prior mean where that subset is empty)."""
        mu, logvar, _ = self.experts(batch)
        z = self.set_posterior(mu, logvar, without(batch["mask"], self.modality_names.index(target)))[0]
        return likelihood_mean(self.decoders[target](z), self.likelihoods[self.modality_names.index(target)])

    @torch.no_grad()
    def sample(self, n: int) -> dict[str, torch.Tensor]:
        z = torch.randn(n, self.cfg.latent_dim, device=next(self.parameters()).device)
        return decode_means(self.decoders, self.spec.modalities, z, self.likelihoods)
