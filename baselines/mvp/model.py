from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.method import MultimodalMethod
from bench.nn.dists import kl_normal, log_likelihood, product_of_experts, reparameterize
from bench.nn.modules import GaussianExperts, build_decoder, likelihood_mean, without
from bench.nn.subsets import set_poe
from bench.registry import register_method

# The official reconstruction error is F.l1_loss (Laplace data) or F.mse_loss (Normal data), summed over pixels
# (gaoxin492/MVP:model/ICMVLoss.py). Up to constants that is 1x the unit-scale Laplace NLL and 2x the unit-variance
# Gaussian NLL of bench.nn.dists; we scale our NLL to match, so that the code's weights (rec 2, perm 5, common 2.5)
# keep their balance. Bernoulli and categorical data have no counterpart in the code: plain NLL [reconstructed].
RECON_SCALE = {"gaussian": 2.0}


def random_cyclic_permutations(
    mask: torch.Tensor, n_draws: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per sample, ``n_draws`` uniformly random cyclic permutations of its observed views.

    Returns Long [B, n_draws, M] with ``perm[b, c, i] = sigma(i)``: on the observed views of sample b, sigma is a
    single cycle through all of them (so a derangement when two or more are observed: the official code's Sattolo
    cycles, ``gaoxin492/MVP:dataprovider/cyclic_permutation.py``); unobserved views, and a lone observed view, map
    to themselves (``dataset_fingerprint_MMNIST.py total_permutation``) [paper]. Construction: order the observed
    views at random, a_0 .. a_{n-1}, and set sigma(a_k) = a_{k+1 mod n}; each n-cycle arises from exactly n
    orderings, so the cycle is uniform (as Sattolo's algorithm) [reconstructed: the official code samples from a
    precomputed list of cycles and their inverses, which is the same distribution up to the list's truncation].
    """
    b, m = mask.shape
    keys = torch.rand(b, n_draws, m, generator=generator, device="cpu").to(mask.device)
    keys = torch.where(mask.unsqueeze(1), keys, torch.full_like(keys, 2.0))  # unobserved sort last
    order = keys.argsort(-1)  # [B, C, M]: positions 0..n-1 hold the observed views in random order
    n = mask.sum(1).clamp(min=1).view(b, 1, 1)
    pos = torch.arange(m, device=mask.device).expand(b, n_draws, m)
    succ = torch.where(pos < n, (pos + 1) % n, pos)
    return torch.empty_like(order).scatter_(-1, order, order.gather(-1, succ))


class GroupedMLP(nn.Module):
    """G independent MLPs of one shape (LeakyReLU between layers), run as one batched matmul per layer.

    The official model holds one ``nn.Sequential`` per ordered view pair and per statistic (``transforms_mu``,
    ``transforms_logvar``: 2 M (M - 1) MLPs); batching them is the same computation with far fewer kernel calls.
    Init: Xavier-normal weights (``gaoxin492/MVP:training/trainer_img.py`` applies ``xavier_normal_`` to every
    Linear) and PyTorch's default Linear bias init, per group.
    """

    def __init__(self, groups: int, in_dim: int, hidden: tuple[int, ...], out_dim: int):
        super().__init__()
        dims = (in_dim, *hidden, out_dim)
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(groups, a, b)) for a, b in zip(dims[:-1], dims[1:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(groups, 1, b)) for b in dims[1:])
        for w, bias in zip(self.weights, self.biases):
            fan_in, fan_out = w.shape[1], w.shape[2]
            nn.init.normal_(w, std=math.sqrt(2.0 / (fan_in + fan_out)))
            nn.init.uniform_(bias, -1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [G, B, in] -> [G, B, out]."""
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = F.leaky_relu(x)
        return x


def symmetric_kl(mu0, logvar0, mu1, logvar1, both: bool) -> torch.Tensor:
    """KL(0 || 1), or the mean of both directions when ``both`` (the official code symmetrises only once the
    permuted branch is also reconstructed)."""
    kl = kl_normal(mu0, logvar0, mu1, logvar1)
    return 0.5 * (kl + kl_normal(mu1, logvar1, mu0, logvar0)) if both else kl


@register_method("mvp")
class MVP(MultimodalMethod):
    kind = "baseline"
    version = 1

    @dataclass(frozen=True)
    class Config:
        # D: each view's Gaussian; the first common_dim coordinates are the common part (class_dim in the code).
        # 2:1 as in the official PolyMNIST setting (96/48); common_dim 16 matches the other baselines' 16-d joint.
        latent_dim: int = 32
        common_dim: int = 16
        hidden: int = 128
        # hidden widths of each inter-view correspondence MLP (code argparse default; PolyMNIST uses 256,1024,256)
        transform_hidden: tuple[int, ...] = (128, 256, 128)
        rec_weight: float = 2.0  # normalizing_factor[0]
        perm_weight: float = 5.0  # weight[0] * normalizing_factor[1]: the permutation divergence on the matrix
        common_weight: float = 2.5  # weight[1] * normalizing_factor[1]: the divergence of the common parts
        # fraction of the epochs with only the original branch reconstructed and a one-sided KL (200 of 500)
        warmup_fraction: float = 0.4
        # Xavier-normal init of every nn.Linear, as the official trainer (the correspondence MLPs always use it)
        xavier_init: bool = True

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        mods = spec.modalities
        if not 0 < cfg.common_dim <= cfg.latent_dim:
            raise ValueError(f"common_dim must be in (0, latent_dim={cfg.latent_dim}], got {cfg.common_dim}")
        m = len(mods)
        self.experts = GaussianExperts(mods, cfg.latent_dim, cfg.hidden)
        # decoder input: [c_v, z_v], the row-combined common part and the view's own full latent
        dec_in = cfg.common_dim + cfg.latent_dim
        self.decoders = nn.ModuleDict({x.name: build_decoder(x, dec_in, cfg.hidden) for x in mods})
        pairs = [(i, j) for i in range(m) for j in range(m) if i != j]
        self.n_pairs = len(pairs)
        # groups: the mu-transforms of every ordered pair, then the logvar-transforms
        self.transforms = (GroupedMLP(2 * len(pairs), cfg.latent_dim, tuple(cfg.transform_hidden), cfg.latent_dim)
                           if pairs else None)
        # where entry (row i, column j) of the M x M matrix lives in cat([experts (M), transforms (P)])
        layout = torch.zeros(m, m, dtype=torch.long)
        layout[range(m), range(m)] = torch.arange(m)
        for p, (i, j) in enumerate(pairs):
            layout[i, j] = m + p
        self.register_buffer("layout", layout.flatten(), persistent=False)
        self.register_buffer("pair_source", torch.tensor([i for i, _ in pairs], dtype=torch.long), persistent=False)
        if cfg.xavier_init:
            for mod in self.modules():
                if isinstance(mod, nn.Linear):
                    nn.init.xavier_normal_(mod.weight)

    # --- pieces ------------------------------------------------------------------------------------------
    def latent_matrix(self, mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The M x M matrix of Gaussians, [M_row, M_col, B, D]: row = source view, column = target view; the
        diagonal is each view's encoder, entry (i, j) is T_{i->j} applied to view i's mu and logvar."""
        m, b, d = mu.shape
        if self.transforms is None:
            return mu.view(1, 1, b, d), logvar.view(1, 1, b, d)
        out = self.transforms(torch.cat([mu[self.pair_source], logvar[self.pair_source]]))
        t_mu, t_logvar = out[: self.n_pairs], out[self.n_pairs :]
        full_mu = torch.cat([mu, t_mu])[self.layout].view(m, m, b, d)
        full_logvar = torch.cat([logvar, t_logvar])[self.layout].view(m, m, b, d)
        return full_mu, full_logvar

    @staticmethod
    def permute_columns(mat: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        """Zmat'[i, v] = Zmat[perm[b, v, i], v] (each column reordered across rows by its own permutation);
        mat [M, M, B, D], perm [B, M_col, M_row]."""
        idx = perm.permute(2, 1, 0).unsqueeze(-1).expand_as(mat)
        return mat.gather(0, idx)

    def row_common(self, mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """c_v: the PoE (no prior expert) over row v's entries of the first common_dim coordinates; [M, B, Dc]."""
        m, _, b, _ = mu.shape
        dc = self.cfg.common_dim
        cols_mu = mu[..., :dc].transpose(0, 1).reshape(m, m * b, dc)
        cols_logvar = logvar[..., :dc].transpose(0, 1).reshape(m, m * b, dc)
        c_mu, c_logvar = product_of_experts(cols_mu, cols_logvar, prior_expert=False)
        return c_mu.view(m, b, dc), c_logvar.view(m, b, dc)

    def double(self) -> bool:
        """Whether the permuted branch is reconstructed (and the divergences symmetrised) this epoch."""
        return self.epoch >= int(self.cfg.warmup_fraction * self.n_epochs)

    def reconstruction_nll(self, xs: dict, latents: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """[B] sum over observed views of the reconstruction error of x_v from [c_v, z_v] (-log p scaled by
        :data:`RECON_SCALE`), averaged over the branches; one decoder call per view covers every branch (the
        branches are stacked on the batch dim)."""
        n_branches, b = len(latents), mask.shape[0]
        nll = torch.zeros(b, device=mask.device, dtype=latents[0].dtype)
        for v, mod in enumerate(self.spec.modalities):
            params = self.decoders[mod.name](torch.cat([lat[v] for lat in latents]))
            x = torch.cat([xs[mod.name]] * n_branches) if n_branches > 1 else xs[mod.name]
            scale = RECON_SCALE.get(mod.likelihood, 1.0)
            per = -scale * log_likelihood(x, params, mod.likelihood).view(n_branches, b).mean(0)
            nll = nll + torch.where(mask[:, v], per, torch.zeros_like(per))
        return nll

    # --- contract ----------------------------------------------------------------------------------------
    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        mask = batch["mask"]
        m = len(self.modality_names)
        both = self.double()
        mu, logvar, xs = self.experts(batch)
        z_mu, z_logvar = self.latent_matrix(mu, logvar)
        perm = random_cyclic_permutations(mask, m)  # one permutation per target column
        p_mu, p_logvar = self.permute_columns(z_mu, perm), self.permute_columns(z_logvar, perm)
        c_mu, c_logvar = self.row_common(z_mu, z_logvar)
        cp_mu, cp_logvar = self.row_common(p_mu, p_logvar)

        diag = list(range(m))
        branches = [(c_mu, c_logvar, z_mu[diag, diag], z_logvar[diag, diag])]
        if both:  # z'_v = Zmat'[v, v] comes from another view: cross-view generation
            branches.append((cp_mu, cp_logvar, p_mu[diag, diag], p_logvar[diag, diag]))
        latents = [torch.cat([reparameterize(a, b), reparameterize(c, d)], -1) for a, b, c, d in branches]
        rec = self.reconstruction_nll(xs, latents, mask)

        rows = mask.transpose(0, 1)  # [M, B]: a row (source view) counts only if observed
        perm_kl = symmetric_kl(z_mu, z_logvar, p_mu, p_logvar, both) / m  # [M, M, B]
        perm_kl = torch.where(rows.unsqueeze(1), perm_kl, torch.zeros_like(perm_kl)).sum((0, 1))
        common_kl = symmetric_kl(c_mu, c_logvar, cp_mu, cp_logvar, both)  # [M, B]
        common_kl = torch.where(rows, common_kl, torch.zeros_like(common_kl)).sum(0)

        cfg = self.cfg
        total = cfg.rec_weight * rec + cfg.perm_weight * perm_kl + cfg.common_weight * common_kl
        return {"loss": total.mean(), "rec": rec.mean().detach(), "perm_kl": perm_kl.mean().detach(),
                "common_kl": common_kl.mean().detach()}

    def common_parts(self, batch: dict):
        mu, logvar, _ = self.experts(batch)
        z_mu, z_logvar = self.latent_matrix(mu, logvar)
        return z_mu, z_logvar, *self.row_common(z_mu, z_logvar)

    @torch.no_grad()
    def embed(self, batch: dict) -> dict[str, torch.Tensor]:
        """``joint``: the PoE over the observed rows of their common parts c_v (``trainer_img.py``
        "aggregated_mu"; ``evaluation_MMNIST.py inference``); per view: its own c_v (NaN rows where unobserved)."""
        mask = batch["mask"]
        _, _, c_mu, c_logvar = self.common_parts(batch)
        out = {"joint": set_poe(c_mu, c_logvar, mask)[0]}
        for v, name in enumerate(self.modality_names):
            out[name] = torch.where(mask[:, v : v + 1], c_mu[v], torch.full_like(c_mu[v], float("nan")))
        return out

    @torch.no_grad()
    def generate(self, batch: dict, target: str) -> torch.Tensor:
        """Decoder mean of ``target`` from the observed views other than target (``evaluation_MMNIST.py``
        inference, a missing view): c = the PoE of their common parts, z = the PoE over them of their
        translations into target's column, both at the mean. Where no other view is observed the latent is 0
        [reconstructed: MVP has no prior to fall back on]."""
        t = self.modality_names.index(target)
        cond = without(batch["mask"], t)
        z_mu, z_logvar, c_mu, c_logvar = self.common_parts(batch)
        c = set_poe(c_mu, c_logvar, cond)[0]
        z = set_poe(z_mu[:, t], z_logvar[:, t], cond)[0]
        return likelihood_mean(self.decoders[target](torch.cat([c, z], -1)), self.spec.modality(target).likelihood)
