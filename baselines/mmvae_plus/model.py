from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from bench.method import MultimodalMethod
from bench.nn.dists import laplace_log_prob, log_likelihood
from bench.nn.iwae import ESTIMATORS, needs_detached_q
from bench.nn.laplace import LaplaceHead, laplace_log_density, laplace_rsample, log_mixture_laplace, softmax_scale
from bench.nn.modules import (IMAGE_LIKELIHOODS, build_decoder, build_encoder, likelihood_mean, modality_likelihoods,
                              observed_inputs, observed_mean, pick_observed, posterior_embeddings,
                              reconstruction_weights, without)
from bench.registry import register_method

GENERATE_Z = ("component", "mean")


class Posteriors(NamedTuple):
    """The unimodal Laplace posteriors, each [M, B, D]: q(z | x_m) and q(w_m | x_m)."""

    z_loc: Tensor
    z_scale: Tensor
    w_loc: Tensor
    w_scale: Tensor

    def detached(self) -> "Posteriors":
        return Posteriors(*(t.detach() for t in self))


def prior_log_density(x: Tensor) -> Tensor:
    """log Laplace(x; 0, 1) summed over the last dim: p(z) and p(w_m), whose frozen softmax-scale logits are zero
    (scale softmax(0) * D = 1; ``epalu/mmvaeplus:src/models/vae_polymnist.py`` ``_pu_params``)."""
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    return laplace_log_prob(x, zero, zero).sum(-1)


@register_method("mmvae_plus")
class MMVAEPlus(MultimodalMethod):
    kind = "baseline"
    version = 1

    @dataclass(frozen=True)
    class Config:
        # shared latent z (Dz); the paper's PolyMNIST default is 32
        latent_dim: int = 16
        # private latent w_m per modality (Dw); 0 gives MMVAE (no private part); the paper's PolyMNIST default is 32
        private_dim: int = 16
        hidden: int = 128
        # weight of the prior-over-posterior terms inside the log-weight (the official code's beta; 1 = the bound)
        beta: float = 1.0
        # samples per source modality; the paper trains with "dreg" and K > 1 (e.g. 10)
        k_samples: int = 1
        # "elbo" (mean of the K log-weights), "iwae" (log-mean-exp) or "dreg" (IWAE value, DReG gradients)
        estimator: str = "elbo"
        # "auto": each modality's own likelihood; "laplace": images get Laplace(mean, laplace_scale), as the paper
        # does on PolyMNIST
        image_likelihood: str = "auto"
        # the fixed scale of every Laplace likelihood (0.75 in the official PolyMNIST decoder)
        laplace_scale: float = 0.75
        # True: w and z heads on one feature extractor; False: a separate extractor for w, as in the official encoder
        shared_trunk: bool = False
        # z used by generate(): "component" = the location of one observed source drawn per sample, "mean" = the
        # mixture mean (the average of the observed sources' locations)
        generate_z: str = "component"
        # per-modality reconstruction weights (the official llik_scaling), in modality order; empty = all 1
        recon_weights: tuple[float, ...] = ()

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        mods = spec.modalities
        self._validate(cfg, len(mods))
        self.weights = reconstruction_weights(cfg.recon_weights, len(mods))
        self.likelihoods = modality_likelihoods(mods, cfg.image_likelihood)
        dz, dw = cfg.latent_dim, cfg.private_dim
        self.z_encoders = nn.ModuleDict({m.name: build_encoder(m, cfg.hidden) for m in mods})
        self.z_heads = nn.ModuleDict({m.name: LaplaceHead(self.z_encoders[m.name].out_dim, dz) for m in mods})
        self.w_encoders = nn.ModuleDict(
            {} if dw == 0 or cfg.shared_trunk else {m.name: build_encoder(m, cfg.hidden) for m in mods}
        )
        trunks = self.z_encoders if cfg.shared_trunk else self.w_encoders
        self.w_heads = nn.ModuleDict({} if dw == 0 else {m.name: LaplaceHead(trunks[m.name].out_dim, dw) for m in mods})
        self.decoders = nn.ModuleDict({m.name: build_decoder(m, dz + dw, cfg.hidden) for m in mods})
        # the learned auxiliary priors r_m(w_m) = Laplace(0, softmax(logits_m) * Dw); only their scale is learned
        # (official ``_pw_params``: zero location frozen, scale logits with requires_grad)
        self.aux_logits = nn.Parameter(torch.zeros(len(mods), dw)) if dw > 0 else None
        taken = {"joint", *self.modality_names}
        self.private_keys = {m: f"{m}_w" for m in self.modality_names if dw > 0 and f"{m}_w" not in taken}

    @staticmethod
    def _validate(cfg, n_modalities: int) -> None:
        checks = [
            (cfg.estimator in ESTIMATORS, f"estimator must be one of {sorted(ESTIMATORS)}, got {cfg.estimator!r}"),
            (cfg.image_likelihood in IMAGE_LIKELIHOODS,
             f"image_likelihood must be one of {IMAGE_LIKELIHOODS}, got {cfg.image_likelihood!r}"),
            (cfg.generate_z in GENERATE_Z, f"generate_z must be one of {GENERATE_Z}, got {cfg.generate_z!r}"),
            (cfg.k_samples >= 1, f"k_samples must be at least 1, got {cfg.k_samples}"),
            (cfg.latent_dim >= 1 and cfg.private_dim >= 0,
             f"need latent_dim >= 1 and private_dim >= 0, got {cfg.latent_dim}, {cfg.private_dim}"),
            (cfg.laplace_scale > 0, f"laplace_scale must be positive, got {cfg.laplace_scale}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    # --- pieces ------------------------------------------------------------------------------------------
    def encode(self, xs: dict[str, Tensor]) -> Posteriors:
        """Each modality encoded once (unobserved rows too, from their zero fill; callers mask them)."""
        z_loc, z_scale, w_loc, w_scale = [], [], [], []
        for m in self.modality_names:
            h = self.z_encoders[m](xs[m])
            loc, scale = self.z_heads[m](h)
            z_loc.append(loc)
            z_scale.append(scale)
            if self.w_heads:
                loc, scale = self.w_heads[m](h if self.cfg.shared_trunk else self.w_encoders[m](xs[m]))
            else:  # Dw = 0: an empty private part keeps every shape rule the same
                loc = scale = h.new_zeros(h.shape[0], 0)
            w_loc.append(loc)
            w_scale.append(scale)
        return Posteriors(*(torch.stack(t) for t in (z_loc, z_scale, w_loc, w_scale)))

    def aux_scale(self, j: int) -> Tensor:
        """[Dw] scale of the auxiliary prior r_j (the priors' softmax parameterisation has no eta)."""
        return softmax_scale(self.aux_logits[j], eta=0.0)

    def draw(self, post: Posteriors, k: int) -> tuple[Tensor, Tensor]:
        """K reparameterised draws from every unimodal posterior: z [M, K, B, Dz] and w [M, K, B, Dw] (z first)."""
        def rsample(loc, scale):
            return laplace_rsample(loc.unsqueeze(1).expand(-1, k, -1, -1), scale.unsqueeze(1).expand(-1, k, -1, -1))

        return rsample(post.z_loc, post.z_scale), rsample(post.w_loc, post.w_scale)

    def modality_log_likelihood(self, j: int, x: Tensor, params: Tensor) -> Tensor:
        # the paper fixes the Laplace scale of images at 0.75 (laplace_scale)
        return log_likelihood(x, params, self.likelihoods[j], self.cfg.laplace_scale)

    def target_log_likelihood(self, j: int, z: Tensor, w: Tensor, x: Tensor) -> Tensor:
        """[S, K, B]: log p(x_j | z, w) of target j for latents z, w [S, K, B, .]; the decoder runs once on all
        S * K * B rows."""
        lead = z.shape[:-1]
        params = self.decoders[self.modality_names[j]](torch.cat([z, w], -1).reshape(-1, z.shape[-1] + w.shape[-1]))
        reps = lead.numel() // x.shape[0]
        target = x.unsqueeze(0).expand(reps, *x.shape).reshape(-1, *x.shape[1:])
        return self.modality_log_likelihood(j, target, params).view(lead)

    def reconstruction(self, xs: dict, mask: Tensor, z: Tensor, w: Tensor) -> Tensor:
        """[M, K, B]: sum over the observed targets d of lambda_d log p(x_d | z_r, w'_d) for each source r, where
        w'_d = w_r when d = r and w'_d ~ r_d (a fresh auxiliary-prior draw) otherwise (official ``mmvae.py``
        forward, variant 'mmvaeplus')."""
        rec = torch.zeros(z.shape[:-1], dtype=z.dtype, device=z.device)
        for j, m in enumerate(self.modality_names):
            if not bool(mask[:, j].any()):
                continue
            w_in = w
            if w.shape[-1] > 0:
                scale = self.aux_scale(j).to(w.dtype)
                aux = laplace_rsample(torch.zeros_like(scale), scale, tuple(w.shape[:-1]))
                w_in = torch.cat([aux[:j], w[j : j + 1], aux[j + 1 :]])
            ll = self.target_log_likelihood(j, z, w_in, xs[m])
            rec = rec + self.weights[j] * torch.where(mask[:, j], ll, torch.zeros_like(ll))
        return rec

    def regulariser(self, post: Posteriors, mask: Tensor, z: Tensor, w: Tensor) -> Tensor:
        """[M, K, B]: log p(w_r) + log p(z_r) - log q_mix(z_r | X_observed) - log q(w_r | x_r) at each source's
        draws; q_mix mixes the observed modalities of each sample only."""
        # a sample with nothing observed (the harness never makes one) would mix over no component: its log-weights
        # would be NaN, and so would DReG's importance weights, which its gradient hook multiplies in; let it mix
        # over all modalities instead, its terms are dropped by the caller anyway
        mask = mask | ~mask.any(1, keepdim=True)
        log_q_z = log_mixture_laplace(z, post.z_loc, post.z_scale, mask)
        log_q_w = laplace_log_density(w, post.w_loc.unsqueeze(1), post.w_scale.unsqueeze(1))
        return prior_log_density(z) + prior_log_density(w) - log_q_z - log_q_w

    def objective(self, batch: dict) -> dict[str, Tensor]:
        """Per-sample stratified objective [B] (to maximise) and its logged parts."""
        mask = batch["mask"]
        xs = observed_inputs(batch, self.modality_names)
        post = self.encode(xs)
        z, w = self.draw(post, self.cfg.k_samples)
        rec = self.reconstruction(xs, mask, z, w)
        # DReG's stop-gradient: the draws stay reparameterised, the densities they are scored under do not
        reg = self.regulariser(post.detached() if needs_detached_q(self.cfg.estimator) else post, mask, z, w)
        log_w = rec + self.cfg.beta * reg
        per_source = ESTIMATORS[self.cfg.estimator](log_w, (z, w), dim=1)  # [M, B]
        return {
            "objective": observed_mean(per_source, mask),
            "rec": observed_mean(rec.mean(1), mask).detach(),
            "kl": -observed_mean(reg.mean(1), mask).detach(),
        }

    def conditional_z(self, post: Posteriors, cond: Tensor) -> Tensor:
        """[B, Dz] z for cross-generation from the sources in ``cond`` [B, M]; the prior location 0 where empty."""
        if self.cfg.generate_z == "mean":
            return observed_mean(post.z_loc, cond)
        return pick_observed(post.z_loc, cond)

    def decode_mean(self, j: int, z: Tensor, w: Tensor) -> Tensor:
        return likelihood_mean(self.decoders[self.modality_names[j]](torch.cat([z, w], -1)), self.likelihoods[j])

    # --- contract ----------------------------------------------------------------------------------------
    def loss(self, batch: dict) -> dict[str, Tensor]:
        out = self.objective(batch)
        return {"loss": -out["objective"].mean(), "rec": out["rec"].mean(), "kl": out["kl"].mean()}

    @torch.no_grad()
    def embed(self, batch: dict) -> dict[str, Tensor]:
        """``joint``: the mean of q(z | X) = the average of the observed modalities' z locations (a uniform mixture
        of Laplace components has the average location as its mean); per modality: its z location, and under
        ``<m>_w`` its w location (the paper probes z, w and [w, z]); NaN rows where unobserved."""
        mask = batch["mask"]
        post = self.encode(observed_inputs(batch, self.modality_names))
        # the mean of a uniform Laplace mixture over a set is the average location: of one modality, its own
        out = posterior_embeddings(post.z_loc, post.z_scale, mask, self.modality_names,
                                   lambda loc, scale, sets: (observed_mean(loc, sets), None))
        for j, m in enumerate(self.modality_names):
            if m in self.private_keys:
                keep = mask[:, j : j + 1]
                out[self.private_keys[m]] = torch.where(keep, post.w_loc[j], torch.full_like(post.w_loc[j], math.nan))
        return out

    @torch.no_grad()
    def generate(self, batch: dict, target: str) -> Tensor:
        """Decoder mean of ``target`` from z given the observed modalities other than target (``generate_z``) and
        w_target at the location of r_target, which is 0 (official cross-generation draws w from a zero-located
        prior; its location is the deterministic choice)."""
        j = self.modality_names.index(target)
        post = self.encode(observed_inputs(batch, self.modality_names))
        z = self.conditional_z(post, without(batch["mask"], j))
        return self.decode_mean(j, z, z.new_zeros(z.shape[0], self.cfg.private_dim))

    @torch.no_grad()
    def sample(self, n: int) -> dict[str, Tensor]:
        """z ~ p(z) and an independent w_m ~ p(w_m) per modality, decoded to their means."""
        ref = next(self.parameters())
        zero = torch.zeros((), dtype=ref.dtype, device=ref.device)
        z = laplace_rsample(zero, zero + 1, (n, self.cfg.latent_dim))
        return {m: self.decode_mean(j, z, laplace_rsample(zero, zero + 1, (n, self.cfg.private_dim)))
                for j, m in enumerate(self.modality_names)}
