"""DCMEM: shared and private latents per modality, MEME-style mutual supervision, an anchor prior for unpaired
samples, an information-bottleneck penalty on I(z; w) and an InfoNCE alignment of shared means (docs/methods.md §2)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from bench.data.contracts import Modality
from bench.method import MultimodalMethod
from bench.nn.dists import gaussian_log_prob, iwae_bound, kl_normal, log_likelihood, log_mixture_normal, reparameterize
from bench.nn.mi import info_nce, mws_mutual_information
from bench.nn.modules import (IMAGE_LIKELIHOODS, GaussianHead, build_decoder, build_encoder, likelihood_mean,
                              modality_likelihoods, observed_inputs, observed_mean, pick_observed,
                              posterior_embeddings, without)
from bench.registry import register_method

#: posterior standard deviations are floored at 1e-3, as MEME clamps them (``thwjoy/meme:models/networks.py``)
LOGVAR_MIN = 2 * math.log(1e-3)
CLS_PRIVATE = ("prior", "posterior")
ANCHOR_SPACES = ("data", "feature")
GENERATE_Z = ("sample", "mean")


class Posteriors(NamedTuple):
    """The unimodal Gaussian posteriors, each [M, B, D]: q(z_m | x_m) (shared) and q(w_m | x_m) (private)."""

    z_mu: Tensor
    z_logvar: Tensor
    w_mu: Tensor
    w_logvar: Tensor


# --- pure pieces of the objective ------------------------------------------------------------------------------
def split_rows(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Which rows of a mixed batch feed which term: ``paired`` [B] (at least two modalities observed: the mutual
    supervision terms over their ordered pairs) and ``unpaired`` [B, M] (row b observes modality m alone: the
    anchor-prior ELBO of m). A pure function of the mask, so the split needs no sampler."""
    n_obs = mask.sum(1)
    return n_obs >= 2, mask & (n_obs == 1).unsqueeze(1)


def importance_ratio(log_q: Tensor) -> tuple[Tensor, Tensor]:
    """MEME's weight and cross-modal evidence from log q(t | z^(k)) [K+1, ..., B] (k = 0: the sample the other terms
    use; leading dims such as the ordered pairs broadcast):

    log q^(t | s) = logmeanexp_k log q(t | z^(k)) and r = stopgrad(q(t | z^(0)) / q^(t | s)), both [..., B].
    r averages to 1 over the K+1 positions and is at most K+1."""
    log_q_hat = iwae_bound(log_q, dim=0)  # the log-mean-exp over the K+1 draws
    return (log_q[0] - log_q_hat).exp().detach(), log_q_hat


def direction_objective(rec: Tensor, log_q: Tensor, kl_z: Tensor, kl_w: Tensor, alpha: float) -> Tensor:
    """[B] L_{s|t} of docs/methods.md §2.3 (to maximise), from per-sample terms of direction s|t:

        r (log p(s | z_s, w_s) - log q(t | z_s) - KL(q(z_s|s) || p(z_s|t))) - KL(q(w_s|s) || p(w_s)) + alpha log q^(t|s)

    ``rec`` = log p(s | z^(0), w_s), ``log_q`` = log q(t | z^(k)) [K+1, B], ``kl_z``, ``kl_w`` [B]; a leading dim
    after K+1 (e.g. [K+1, P, B] and [P, B] for P ordered pairs) computes several directions at once."""
    r, log_q_hat = importance_ratio(log_q)
    return r * (rec - log_q[0] - kl_z) - kl_w + alpha * log_q_hat


def ordered_pairs(n_modalities: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(sources, targets) of the M (M - 1) ordered modality pairs (s, t), s != t, in ``itertools.permutations``
    order."""
    pairs = tuple(itertools.permutations(range(n_modalities), 2))
    return tuple(s for s, _ in pairs), tuple(t for _, t in pairs)


def row_index(rows: Tensor, device: torch.device) -> Tensor | None:
    """The indices of the True entries of the host bool vector ``rows`` on ``device``, or None when all are True
    (the caller then uses the whole batch, with no gather)."""
    return None if bool(rows.all()) else rows.nonzero().flatten().to(device)


def take(x: Tensor, idx: Tensor | None, dim: int = 0) -> Tensor:
    """The rows ``idx`` of x along ``dim`` (all of x when idx is None)."""
    return x if idx is None else x.index_select(dim, idx)


def put(values: Tensor, idx: Tensor | None, size: int, dim: int = 0) -> Tensor:
    """``values`` placed at rows ``idx`` along ``dim`` of a zero tensor with ``size`` rows (differentiable in values);
    values itself when idx is None."""
    if idx is None:
        return values
    shape = list(values.shape)
    shape[dim] = size
    return values.new_zeros(shape).index_copy(dim, idx, values)


def unpaired_objective(rec: Tensor, log_q_z: Tensor, log_anchor: Tensor, kl_w: Tensor) -> Tensor:
    """[B] L_s(s) of docs/methods.md §2.3: an ELBO whose shared-latent KL is the single-sample estimate
    log q(z_s|s) - log p_anchor(z_s) at the same draw as the reconstruction."""
    return rec - (log_q_z - log_anchor) - kl_w


@register_method("dcmem")
class DCMEM(MultimodalMethod):
    kind = "method"
    version = 1

    @dataclass(frozen=True)
    class Config:
        # shared latent z_m (Dz) and private latent w_m (Dw) per modality; Dw = 0 is MEME (no private part)
        latent_dim: int = 16
        private_dim: int = 8
        hidden: int = 128
        # extra draws of z_s used to estimate q(t | s) (MEME: 10)
        k_samples: int = 10
        # weight of alpha log q^(t | s), MEME's classifier scale (10 on image-image data)
        alpha: float = 10.0
        # weight of the information-bottleneck penalty I^(z_m; w_m) (MWS estimate), summed over modalities
        beta_ib: float = 0.5
        # weight and temperature of the InfoNCE alignment of paired shared means
        gamma: float = 1.0
        tau_a: float = 0.1
        # learnable pseudo-inputs per modality for the anchor prior of the *other* modalities' unpaired samples
        n_pseudo: int = 128
        # private latent of the target in the "classifier" q(t | z_s): drawn from its prior or from q(w_t | t)
        cls_private: str = "prior"
        # "data": pseudo-inputs in data space (integer modalities, whose inputs are not continuous, fall back to the
        # encoder's feature space); "feature": in the feature space of every encoder
        anchor_space: str = "data"
        # "auto": each modality's own likelihood; "laplace": images get MEME's unit-scale Laplace likelihood
        image_likelihood: str = "auto"
        # z of generate(): "sample" = a draw from q(z | source) (one observed source per sample), "mean" = the
        # average of the sources' shared means
        generate_z: str = "sample"
        # True: the private head shares the shared head's feature extractor; False: a separate one (as MMVAE+)
        shared_trunk: bool = False

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        mods = spec.modalities
        self._validate(cfg, len(mods))
        self.likelihoods = modality_likelihoods(mods, cfg.image_likelihood)
        dz, dw = cfg.latent_dim, cfg.private_dim
        self.z_encoders = nn.ModuleDict({m.name: build_encoder(m, cfg.hidden) for m in mods})
        self.z_heads = nn.ModuleDict({m.name: GaussianHead(self.z_encoders[m.name].out_dim, dz) for m in mods})
        self.w_encoders = nn.ModuleDict(
            {} if dw == 0 or cfg.shared_trunk else {m.name: build_encoder(m, cfg.hidden) for m in mods}
        )
        trunks = self.z_encoders if cfg.shared_trunk else self.w_encoders
        self.w_heads = nn.ModuleDict(
            {} if dw == 0 else {m.name: GaussianHead(trunks[m.name].out_dim, dw) for m in mods}
        )
        self.decoders = nn.ModuleDict({m.name: build_decoder(m, dz + dw, cfg.hidden) for m in mods})
        self.in_feature_space = {m.name: cfg.anchor_space == "feature" or m.is_integer for m in mods}
        self.pseudo = nn.ParameterDict({m.name: nn.Parameter(self._initial_pseudo_inputs(m)) for m in mods})
        # sources and targets of the ordered pairs as index buffers, so that they move with the model (no host copy
        # per step)
        for name, idx in zip(("pair_src", "pair_tgt"), ordered_pairs(len(mods))):
            self.register_buffer(name, torch.tensor(idx, dtype=torch.long), persistent=False)
        taken = {"joint", *self.modality_names}
        self.private_keys = {m: f"private:{m}" for m in self.modality_names if dw > 0 and f"private:{m}" not in taken}

    @staticmethod
    def _validate(cfg, n_modalities: int) -> None:
        checks = [
            (n_modalities >= 2, f"dcmem needs at least two modalities, the benchmark has {n_modalities}"),
            (cfg.latent_dim >= 1 and cfg.private_dim >= 0,
             f"need latent_dim >= 1 and private_dim >= 0, got {cfg.latent_dim}, {cfg.private_dim}"),
            (cfg.hidden >= 1, f"hidden must be at least 1, got {cfg.hidden}"),
            (cfg.k_samples >= 0, f"k_samples must be at least 0, got {cfg.k_samples}"),
            (min(cfg.alpha, cfg.beta_ib, cfg.gamma) >= 0,
             f"alpha, beta_ib and gamma must be non-negative, got {cfg.alpha}, {cfg.beta_ib}, {cfg.gamma}"),
            (cfg.tau_a > 0, f"tau_a must be positive, got {cfg.tau_a}"),
            (cfg.n_pseudo >= 1, f"n_pseudo must be at least 1, got {cfg.n_pseudo}"),
            (cfg.cls_private in CLS_PRIVATE, f"cls_private must be one of {CLS_PRIVATE}, got {cfg.cls_private!r}"),
            (cfg.anchor_space in ANCHOR_SPACES,
             f"anchor_space must be one of {ANCHOR_SPACES}, got {cfg.anchor_space!r}"),
            (cfg.image_likelihood in IMAGE_LIKELIHOODS,
             f"image_likelihood must be one of {IMAGE_LIKELIHOODS}, got {cfg.image_likelihood!r}"),
            (cfg.generate_z in GENERATE_Z, f"generate_z must be one of {GENERATE_Z}, got {cfg.generate_z!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"dcmem: {message}")

    def _initial_pseudo_inputs(self, m: Modality) -> Tensor:
        """MEME starts its pseudo-inputs from a real batch; the method is built before it sees data, so they start
        as random inputs in the modality's range (images uniform in [0, 1], vectors standard normal, random token
        or class ids), or as the encoder's features of such inputs in feature space."""
        u = self.cfg.n_pseudo
        if m.is_integer:
            x = torch.randint(0, m.vocab_size if m.kind == "text" else m.n_classes, (u, *m.shape))
        else:
            x = torch.rand(u, *m.shape) if m.kind == "image" else torch.randn(u, *m.shape)
        if not self.in_feature_space[m.name]:
            return x
        with torch.no_grad():
            return self.z_encoders[m.name](x).clone()

    # --- pieces ------------------------------------------------------------------------------------------
    def _dtype(self) -> torch.dtype:
        return next(self.decoders.parameters()).dtype

    def _gaussian(self, head: nn.Module, h: Tensor) -> tuple[Tensor, Tensor]:
        # scores in float32 whatever the parameters' dtype: the objective sums hundreds of log-density terms
        mu, logvar = head(h)
        return mu.float(), logvar.float().clamp(min=LOGVAR_MIN)

    def encode(self, xs: dict[str, Tensor]) -> Posteriors:
        """Each modality encoded once (unobserved rows too, from their zero fill; callers mask them)."""
        z_mu, z_lv, w_mu, w_lv = [], [], [], []
        for m in self.modality_names:
            h = self.z_encoders[m](xs[m])
            mu, lv = self._gaussian(self.z_heads[m], h)
            z_mu.append(mu)
            z_lv.append(lv)
            if self.w_heads:
                mu, lv = self._gaussian(self.w_heads[m], h if self.cfg.shared_trunk else self.w_encoders[m](xs[m]))
            else:  # Dw = 0: an empty private part keeps every shape rule the same
                mu = lv = mu.new_zeros(mu.shape[0], 0)
            w_mu.append(mu)
            w_lv.append(lv)
        return Posteriors(*(torch.stack(t) for t in (z_mu, z_lv, w_mu, w_lv)))

    def pseudo_posterior(self, m: str) -> tuple[Tensor, Tensor]:
        """[U, Dz] twice: modality m's shared encoder q(z | u) at its pseudo-inputs u (the anchor's components)."""
        u = self.pseudo[m]
        h = u if self.in_feature_space[m] else self.z_encoders[m](u)
        return self._gaussian(self.z_heads[m], h)

    def anchor_log_density(self, j: int, z: Tensor,
                           components: dict[str, tuple[Tensor, Tensor]] | None = None) -> Tensor:
        """[B] log p_anchor(z) for modality j's shared latent z [B, Dz]: the equal-weight mixture of the other
        modalities' encoders at their pseudo-inputs, (1/(M-1)) sum_{t != j} (1/U) sum_u q_t(z | u_t); with two
        modalities, the VampPrior-like p_s(z_s) = (1/U) sum_u p_psi(z_s | u^t) of §2.3."""
        components = components if components is not None else {}
        parts = [components[t] if t in components else self.pseudo_posterior(t)
                 for t in self.modality_names if t != self.modality_names[j]]
        mu, logvar = (torch.cat(p) for p in zip(*parts))
        return log_mixture_normal(z, mu.unsqueeze(1), logvar.unsqueeze(1), dim=0)

    def modality_log_likelihood(self, j: int, x: Tensor, params: Tensor) -> Tensor:
        if not self.spec.modalities[j].is_integer:
            x = x.float()
        return log_likelihood(x, params.float(), self.likelihoods[j])

    def decode(self, j: int, z: Tensor, w: Tensor) -> Tensor:
        """Decoder parameters of modality j for latents z [..., Dz], w [..., Dw], in one pass over all leading
        dims (the decoder runs in the parameters' dtype)."""
        lead = z.shape[:-1]
        flat = torch.cat([z, w], -1).reshape(-1, z.shape[-1] + w.shape[-1]).to(self._dtype())
        params = self.decoders[self.modality_names[j]](flat)
        return params.reshape(*lead, *params.shape[1:])

    def log_lik(self, j: int, z: Tensor, w: Tensor, x: Tensor) -> Tensor:
        """[..., B] log p(x_j | z, w) for latents [..., B, .] and the batch x [B, ...]."""
        lead = z.shape[:-1]
        params = self.decode(j, z, w).flatten(0, len(lead) - 1)
        target = x.unsqueeze(0).expand(lead.numel() // x.shape[0], *x.shape).reshape(-1, *x.shape[1:])
        return self.modality_log_likelihood(j, target, params).view(lead)

    def draw(self, post: Posteriors) -> tuple[Tensor, Tensor, Tensor]:
        """The objective's random draws, in this order (tests replay it):

        1. z [M, K+1, B, Dz] ~ q(z_m | x_m) (k = 0 feeds the reconstruction, the KL estimates and the MI term);
        2. w [M, B, Dw] ~ q(w_m | x_m) (only when Dw > 0);
        3. w~ [M, K+1, B, Dw], the target's private latent in q(t | z_s): N(0, I) or q(w_t | t) (only when Dw > 0).
        """
        k1 = self.cfg.k_samples + 1
        m, b, dz = post.z_mu.shape
        z = reparameterize(post.z_mu.unsqueeze(1).expand(m, k1, b, dz), post.z_logvar.unsqueeze(1).expand(m, k1, b, dz))
        if self.cfg.private_dim == 0:
            empty = post.w_mu.new_zeros(m, k1, b, 0)
            return z, post.w_mu, empty
        w = reparameterize(post.w_mu, post.w_logvar)
        shape = (m, k1) + tuple(post.w_mu.shape[1:])
        if self.cfg.cls_private == "prior":
            w_cls = torch.randn(shape, dtype=w.dtype, device=w.device)
        else:
            w_cls = reparameterize(post.w_mu.unsqueeze(1).expand(shape), post.w_logvar.unsqueeze(1).expand(shape))
        return z, w, w_cls

    def objective(self, batch: dict) -> dict[str, Tensor]:
        """Per-sample objective ``objective`` [B] (to maximise; 0 for a row with nothing observed) and the
        batch-level penalties ``mi`` and ``nce`` (to minimise), with logged parts.

        Cost: the decoder passes are nearly all of it (an image decoder on (K+1) B latents per ordered pair), so
        each runs on the rows that use it only (at rho < 1 half the pairs' rows, or more, are unobserved). Which
        rows those are is read from one host copy of the mask; everything else is batched over modalities and
        ordered pairs, with masks instead of boolean indexing."""
        mask = batch["mask"]
        host = mask.cpu()  # the one host transfer: every row choice below is made from it
        xs = observed_inputs(batch, self.modality_names)
        post = self.encode(xs)
        z, w, w_cls = self.draw(post)
        n_obs = mask.sum(1)
        paired, unpaired = split_rows(mask)
        rec = self._reconstructions(host, xs, z[:, 0], w)  # [M, B]
        kl_w = kl_normal(post.w_mu, post.w_logvar)  # [M, B]
        # mutual supervision over the ordered pairs observed together; a row with n observed modalities averages
        # each source's n - 1 directions, so that with two modalities it is L_{s|t} + L_{t|s} and every source
        # counts once, as in an unpaired row
        src, tgt = self.pair_src, self.pair_tgt
        pair_rows = (mask[:, src] & mask[:, tgt]).T  # [P, B]
        log_q = self._cross_log_likelihoods(host, xs, z, w_cls)  # [K+1, P, B]: q(t | z_s^(k)), 0 off pair_rows
        kl_z = kl_normal(post.z_mu[src], post.z_logvar[src], post.z_mu[tgt], post.z_logvar[tgt])  # prior: t's encoder
        term = direction_objective(rec[src], log_q, kl_z, kl_w[src], self.cfg.alpha)  # [P, B]
        share = 1.0 / (n_obs - 1).clamp(min=1).to(z.dtype)
        zero = torch.zeros((), dtype=z.dtype, device=z.device)
        paired_obj = torch.where(pair_rows, term * share, zero).sum(0)
        log_q_hat = torch.where(pair_rows, iwae_bound(log_q.detach(), 0), zero)
        unpaired_obj = self._unpaired_objective(split_rows(host)[1], post, z[:, 0], rec, kl_w)
        return {"objective": paired_obj + unpaired_obj,
                "mi": self.mi_penalty(post, z[:, 0], w, mask), "nce": self.nce_penalty(post, mask),
                "paired": (paired_obj.sum() / paired.sum().clamp(min=1)).detach(),
                "unpaired": (unpaired_obj.sum() / unpaired.any(1).sum().clamp(min=1)).detach(),
                "log_q_cross": log_q_hat.sum() / pair_rows.sum().clamp(min=1)}

    def _reconstructions(self, host: Tensor, xs: dict[str, Tensor], z0: Tensor, w: Tensor) -> Tensor:
        """[M, B] log p(x_m | z_m^(0), w_m) on the rows observing m (0 elsewhere; every use of it is masked)."""
        b = host.shape[0]
        out = []
        for j, m in enumerate(self.modality_names):
            if not bool(host[:, j].any()):
                out.append(z0.new_zeros(b))
                continue
            idx = row_index(host[:, j], z0.device)
            out.append(put(self.log_lik(j, take(z0[j], idx), take(w[j], idx), take(xs[m], idx)), idx, b))
        return torch.stack(out)

    def _cross_log_likelihoods(self, host: Tensor, xs: dict[str, Tensor], z: Tensor, w_cls: Tensor) -> Tensor:
        """[K+1, P, B] log q(t | z_s^(k)) = log p(x_t | z_s^(k), w~_t^(k)) per ordered pair (s, t), on the rows
        observing both (0 elsewhere). One decoder call per pair: on CPU a conv decoder's cost per sample grows with
        the call's batch (1.7x from 1408 to 5632 latents, measured), so stacking the sources of a target would be
        slower there."""
        b = host.shape[0]
        out = []
        for s, t in zip(*ordered_pairs(host.shape[1])):
            rows = host[:, s] & host[:, t]
            if not bool(rows.any()):
                out.append(z.new_zeros(z.shape[1], b))
                continue
            idx = row_index(rows, z.device)
            x_t = take(xs[self.modality_names[t]], idx)
            out.append(put(self.log_lik(t, take(z[s], idx, 1), take(w_cls[t], idx, 1), x_t), idx, b, dim=1))
        return torch.stack(out, 1)

    def _unpaired_objective(self, unpaired: Tensor, post: Posteriors, z0: Tensor, rec: Tensor,
                            kl_w: Tensor) -> Tensor:
        """[B] L_s(s) on the rows observing s alone (``unpaired`` [B, M] of :func:`split_rows`, on the host), summed
        over s (0 on the other rows). The anchor's components (an encoder pass over pseudo-inputs) are computed once
        per batch, and only when some row needs them."""
        b = unpaired.shape[0]
        total = z0.new_zeros(b)
        components: dict[str, tuple[Tensor, Tensor]] = {}
        for j, m in enumerate(self.modality_names):
            rows = unpaired[:, j]
            if not bool(rows.any()):
                continue
            for t in self.modality_names:
                if t != m and t not in components:
                    components[t] = self.pseudo_posterior(t)
            idx = row_index(rows, z0.device)
            z_j = take(z0[j], idx)
            log_q_z = gaussian_log_prob(z_j, take(post.z_mu[j], idx), take(post.z_logvar[j], idx)).sum(-1)
            term = unpaired_objective(take(rec[j], idx), log_q_z, self.anchor_log_density(j, z_j, components),
                                      take(kl_w[j], idx))
            total = total + put(term, idx, b)
        return total

    def mi_penalty(self, post: Posteriors, z0: Tensor, w: Tensor, mask: Tensor) -> Tensor:
        """sum_m (|R_m| / B) I^(z_m; w_m), the MWS estimate over the rows R_m observing m. Weighting by the share of
        rows keeps each modality's penalty in proportion to its data, as interleaving paired and unpaired batches
        would (at rho = 1 it is the plain sum of §2.3). All modalities in one masked call."""
        if self.cfg.private_dim == 0:
            return z0.new_zeros(())
        rows = mask.T  # [M, B]
        mi = mws_mutual_information(z0, post.z_mu, post.z_logvar, w, post.w_mu, post.w_logvar, mask=rows)  # [M]
        return (rows.sum(1).to(mi.dtype) / mask.shape[0] * mi).sum()

    def nce_penalty(self, post: Posteriors, mask: Tensor) -> Tensor:
        """The mean over ordered pairs (s, t) of (|R_st| / B) InfoNCE(mu_z_s -> mu_z_t) on the rows R_st observing
        both: with two modalities and every row paired, the symmetric L_NCE of §2.3. All pairs in one masked call."""
        b, n_mod = mask.shape
        src, tgt = self.pair_src, self.pair_tgt
        rows = (mask[:, src] & mask[:, tgt]).T  # [P, B]
        nce = info_nce(post.z_mu[src], post.z_mu[tgt], self.cfg.tau_a, symmetric=False, mask=rows)  # [P]
        return (rows.sum(1).to(nce.dtype) / b * nce).sum() / (n_mod * (n_mod - 1))

    # --- contract ----------------------------------------------------------------------------------------
    def loss(self, batch: dict) -> dict[str, Tensor]:
        """-mean_b objective_b + beta_IB MI + gamma NCE. The mean runs over the whole mixed batch, so paired and
        unpaired rows weigh in proportion to their counts (what MEME's interleaving of paired and unpaired batches
        does in expectation); a weight of 0 leaves its term out of the loss (it is still logged)."""
        out = self.objective(batch)
        loss = -out["objective"].mean()
        if self.cfg.beta_ib > 0:
            loss = loss + self.cfg.beta_ib * out["mi"]
        if self.cfg.gamma > 0:
            loss = loss + self.cfg.gamma * out["nce"]
        return {"loss": loss, "paired": out["paired"], "unpaired": out["unpaired"], "mi": out["mi"].detach(),
                "nce": out["nce"].detach(), "log_q_cross": out["log_q_cross"]}

    @torch.no_grad()
    def embed(self, batch: dict) -> dict[str, Tensor]:
        """``joint``: the average of the observed modalities' shared means; ``<m>``: m's shared mean;
        ``private:<m>``: m's private mean (when Dw > 0); NaN rows where m is unobserved."""
        mask = batch["mask"]
        post = self.encode(observed_inputs(batch, self.modality_names))
        out = posterior_embeddings(post.z_mu, post.z_logvar, mask, self.modality_names,
                                   lambda mu, logvar, sets: (observed_mean(mu, sets), None))
        for j, m in enumerate(self.modality_names):
            if m in self.private_keys:
                out[self.private_keys[m]] = torch.where(mask[:, j : j + 1], post.w_mu[j],
                                                        torch.full_like(post.w_mu[j], math.nan))
        return out

    def cross_latents(self, post: Posteriors, cond: Tensor) -> tuple[Tensor, Tensor]:
        """(z [B, Dz], w [B, Dw]) for cross-generation from the sources in ``cond`` [B, M]: z from the sources
        (``generate_z``; 0 where a row has none) and the target's private w ~ p(w) = N(0, I), never its input."""
        if self.cfg.generate_z == "mean":
            z = observed_mean(post.z_mu, cond)
        else:
            z = pick_observed(reparameterize(post.z_mu, post.z_logvar), cond)
        w = torch.randn(z.shape[0], self.cfg.private_dim, dtype=z.dtype, device=z.device)
        return z, w

    def decode_mean(self, j: int, z: Tensor, w: Tensor) -> Tensor:
        return likelihood_mean(self.decode(j, z, w), self.likelihoods[j])

    @torch.no_grad()
    def generate(self, batch: dict, target: str) -> Tensor:
        """Decoder mean of ``target`` from the shared latent of the observed modalities other than target and the
        target's private latent drawn from its prior (docs/methods.md §2.8)."""
        j = self.modality_names.index(target)
        post = self.encode(observed_inputs(batch, self.modality_names))
        return self.decode_mean(j, *self.cross_latents(post, without(batch["mask"], j)))

    @torch.no_grad()
    def sample(self, n: int) -> dict[str, Tensor]:
        """z from the pooled anchor (one pseudo-input of any modality, uniformly, then z ~ its encoder's posterior)
        and an independent w_m ~ N(0, I) per modality, decoded to their means."""
        mu, logvar = (torch.cat(p) for p in zip(*(self.pseudo_posterior(m) for m in self.modality_names)))
        pick = torch.randint(0, mu.shape[0], (n,), device=mu.device)
        z = reparameterize(mu[pick], logvar[pick])
        return {m: self.decode_mean(j, z, torch.randn(n, self.cfg.private_dim, dtype=z.dtype, device=z.device))
                for j, m in enumerate(self.modality_names)}
