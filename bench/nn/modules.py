"""Encoders and decoders per modality kind, shared by every method so that comparisons use the same networks.

An encoder maps a batch of one modality to a feature vector of size ``out_dim``; methods put their own heads on
top (Gaussian mean/log-variance, projections). A decoder maps a latent vector to the parameters of that modality's
likelihood (see :func:`bench.nn.dists.log_likelihood`): image -> [B, C, H, W], mask -> [B, n_classes, H, W] logits,
vector -> [B, D], text -> [B, V, L] logits. Builders are looked up by modality kind in a table, not by if/elif.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bench.data.contracts import Modality

CHANNELS = (32, 64, 128, 128, 256)


def conv_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 conv (k4, p1), halving until both sides are at most 4."""
    sizes = [(h, w)]
    while max(sizes[-1]) > 4 and len(sizes) <= len(CHANNELS):
        ph, pw = sizes[-1]
        sizes.append((max(ph // 2, 1), max(pw // 2, 1)))
    return sizes


def fill_missing(x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Replace the rows of unobserved samples by zeros so networks never see the NaN / -1 placeholders.

    The mask, not these zeros, tells a model what is missing; the zeros only keep NaN out of the arithmetic
    (0 * NaN is NaN, so masking after the fact would poison gradients).
    """
    shape = (-1,) + (1,) * (x.dim() - 1)
    return torch.where(observed.view(shape), x, torch.zeros((), dtype=x.dtype, device=x.device))


class ConvEncoder(nn.Module):
    def __init__(self, in_channels: int, h: int, w: int):
        super().__init__()
        sizes = conv_sizes(h, w)
        chans = (in_channels,) + CHANNELS[: len(sizes) - 1]
        self.net = nn.Sequential(*[
            m for i in range(len(sizes) - 1) for m in (nn.Conv2d(chans[i], chans[i + 1], 4, 2, 1), nn.ReLU())
        ])
        self.out_dim = chans[-1] * sizes[-1][0] * sizes[-1][1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class ImageEncoder(ConvEncoder):
    def __init__(self, modality: Modality, hidden: int = 128):
        c, h, w = modality.shape
        super().__init__(c, h, w)


class MaskEncoder(ConvEncoder):
    """Per-pixel class maps are one-hot encoded into channels."""

    def __init__(self, modality: Modality, hidden: int = 128):
        h, w = modality.shape
        self.n_classes = modality.n_classes
        super().__init__(self.n_classes, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        onehot = F.one_hot(x.clamp(min=0), self.n_classes).permute(0, 3, 1, 2).to(self.net[0].weight.dtype)
        return super().forward(onehot)


class VectorEncoder(nn.Module):
    def __init__(self, modality: Modality, hidden: int = 128):
        super().__init__()
        (d,) = modality.shape
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.out_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TextEncoder(nn.Module):
    """Token embedding, a 1-D convolution over positions, flattened."""

    def __init__(self, modality: Modality, hidden: int = 128, emb: int = 32):
        super().__init__()
        (length,) = modality.shape
        self.embed = nn.Embedding(modality.vocab_size, emb)
        self.conv = nn.Sequential(nn.Conv1d(emb, 64, 3, 1, 1), nn.ReLU())
        self.proj = nn.Sequential(nn.Linear(64 * length, hidden), nn.ReLU())
        self.out_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.clamp(min=0)).transpose(1, 2)
        return self.proj(self.conv(h).flatten(1))


class ConvDecoder(nn.Module):
    def __init__(self, latent_dim: int, out_channels: int, h: int, w: int):
        super().__init__()
        sizes = conv_sizes(h, w)
        chans = CHANNELS[: len(sizes) - 1][::-1]
        self.sizes = sizes[::-1]
        self.c0 = chans[0] if chans else out_channels
        self.fc = nn.Linear(latent_dim, self.c0 * self.sizes[0][0] * self.sizes[0][1])
        outs = chans[1:] + (out_channels,)
        self.deconvs = nn.ModuleList(nn.ConvTranspose2d(ci, co, 4, 2, 1) for ci, co in zip(chans, outs))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(-1, self.c0, *self.sizes[0])
        for i, deconv in enumerate(self.deconvs):
            h = deconv(F.relu(h), output_size=self.sizes[i + 1])
        return h


class ImageDecoder(ConvDecoder):
    def __init__(self, modality: Modality, latent_dim: int, hidden: int = 128):
        c, h, w = modality.shape
        super().__init__(latent_dim, c, h, w)


class MaskDecoder(ConvDecoder):
    def __init__(self, modality: Modality, latent_dim: int, hidden: int = 128):
        h, w = modality.shape
        super().__init__(latent_dim, modality.n_classes, h, w)


class VectorDecoder(nn.Module):
    def __init__(self, modality: Modality, latent_dim: int, hidden: int = 128):
        super().__init__()
        (d,) = modality.shape
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, d))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class TextDecoder(nn.Module):
    def __init__(self, modality: Modality, latent_dim: int, hidden: int = 128):
        super().__init__()
        (self.length,) = modality.shape
        self.vocab = modality.vocab_size
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, self.length * self.vocab))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, self.vocab, self.length)


ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "image": ImageEncoder, "mask": MaskEncoder, "vector": VectorEncoder, "text": TextEncoder,
}
DECODERS: dict[str, Callable[..., nn.Module]] = {
    "image": ImageDecoder, "mask": MaskDecoder, "vector": VectorDecoder, "text": TextDecoder,
}


def build_encoder(modality: Modality, hidden: int = 128) -> nn.Module:
    return ENCODERS[modality.kind](modality, hidden=hidden)


def build_decoder(modality: Modality, latent_dim: int, hidden: int = 128) -> nn.Module:
    return DECODERS[modality.kind](modality, latent_dim, hidden=hidden)


class GaussianHead(nn.Module):
    """Two linear heads: mean and log-variance of a diagonal Gaussian."""

    def __init__(self, in_dim: int, latent_dim: int):
        super().__init__()
        self.mu = nn.Linear(in_dim, latent_dim)
        self.logvar = nn.Linear(in_dim, latent_dim)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mu(h), self.logvar(h)


def likelihood_mean(params: torch.Tensor, likelihood: str) -> torch.Tensor:
    """The decoder mean in data space (probabilities for Bernoulli, argmax ids for categorical)."""
    return MEANS[likelihood](params)


MEANS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "bernoulli": torch.sigmoid,
    "gaussian": lambda p: p,
    "laplace": lambda p: p,
    "categorical": lambda p: p.argmax(1),
}


def observed_inputs(batch: dict, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The batch's modalities with unobserved rows zero-filled (see :func:`fill_missing`)."""
    mask = batch["mask"]
    return {m: fill_missing(batch["data"][m], mask[:, j]) for j, m in enumerate(names)}


class GaussianExperts(nn.Module):
    """One encoder and Gaussian head per modality: the unimodal experts of the PoE/MoE family.

    Calling it encodes each modality once (unobserved rows from their zero fill; callers mask those experts) and
    returns ``mu, logvar`` [M, B, D] with the NaN-free inputs, which the reconstruction terms reuse.
    """

    def __init__(self, modalities, latent_dim: int, hidden: int = 128):
        super().__init__()
        self.names = tuple(m.name for m in modalities)
        self.encoders = nn.ModuleDict({m.name: build_encoder(m, hidden) for m in modalities})
        self.heads = nn.ModuleDict({m.name: GaussianHead(self.encoders[m.name].out_dim, latent_dim) for m in modalities})

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        xs = observed_inputs(batch, self.names)
        mu, logvar = zip(*(self.heads[m](self.encoders[m](xs[m])) for m in self.names))
        return torch.stack(mu), torch.stack(logvar), xs


def posterior_embeddings(mu: torch.Tensor, logvar: torch.Tensor, mask: torch.Tensor, names: tuple[str, ...],
                         posterior: Callable) -> dict[str, torch.Tensor]:
    """``joint``: the posterior mean given each sample's observed set; per modality: the posterior mean given that
    modality alone, NaN where it is unobserved. ``posterior(mu, logvar, set [B, M]) -> (mean, logvar)``."""
    out = {"joint": posterior(mu, logvar, mask)[0]}
    for j, m in enumerate(names):
        single = torch.zeros_like(mask)
        single[:, j] = True
        z = posterior(mu, logvar, single)[0]
        out[m] = torch.where(mask[:, j : j + 1], z, torch.full_like(z, float("nan")))
    return out


def without(mask: torch.Tensor, j: int) -> torch.Tensor:
    """The observed set minus modality ``j``: what conditions a cross-modal generation of ``j``."""
    cond = mask.clone()
    cond[:, j] = False
    return cond


def decode_means(decoders: nn.ModuleDict, modalities, z: torch.Tensor,
                 likelihoods: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
    """Decoder means of every modality at ``z``; ``likelihoods`` (modality order) replaces the modalities' own."""
    kinds = likelihoods or tuple(m.likelihood for m in modalities)
    return {m.name: likelihood_mean(decoders[m.name](z), kind) for m, kind in zip(modalities, kinds)}


#: ``image_likelihood`` options: "auto" keeps each modality's own likelihood, "laplace" gives images a Laplace one
IMAGE_LIKELIHOODS = ("auto", "laplace")


def modality_likelihoods(modalities, image_likelihood: str) -> tuple[str, ...]:
    """The likelihood of each modality (modality order) under an ``image_likelihood`` option."""
    if image_likelihood not in IMAGE_LIKELIHOODS:
        raise ValueError(f"image_likelihood must be one of {IMAGE_LIKELIHOODS}, got {image_likelihood!r}")
    swap = image_likelihood == "laplace"
    return tuple("laplace" if swap and m.kind == "image" else m.likelihood for m in modalities)


def data_size_weights(modalities) -> tuple[float, ...]:
    """lambda_m = (elements of the largest modality) / (elements of modality m), in modality order.

    MoPoE's rescaling on MNIST-SVHN-Text, where SVHN is the largest: weights 3072/784, 1 and 3072/8 for a text of 8
    token ids (``thomassutter/MoPoE:mnistsvhntext/experiment.py set_rec_weights``); equal sizes give all 1, as its
    PolyMNIST experiment sets explicitly."""
    sizes = [math.prod(m.shape) for m in modalities]
    return tuple(max(sizes) / s for s in sizes)


def reconstruction_weights(weights: tuple[float, ...], n_modalities: int) -> tuple[float, ...]:
    """Per-modality likelihood weights lambda_m in modality order; empty means all 1."""
    if weights and len(weights) != n_modalities:
        raise ValueError(f"recon_weights has {len(weights)} entries, the benchmark has {n_modalities} modalities")
    return tuple(float(w) for w in weights) or (1.0,) * n_modalities


def observed_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, ...]: mean over the observed modalities of ``values`` [M, B, ...] (mask [B, M]); 0 where none is."""
    keep = mask.transpose(0, 1).reshape(mask.shape[::-1] + (1,) * (values.dim() - 2))
    total = torch.where(keep, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum(0)
    count = mask.sum(1).clamp(min=1).to(values.dtype)
    return total / count.reshape((-1,) + (1,) * (total.dim() - 1))


def pick_observed(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, ...]: per sample, ``values`` [M, B, ...] of one observed modality drawn uniformly (one draw of the
    mixture's component); 0 where no modality is observed."""
    empty = ~mask.any(1)
    probs = torch.where(empty.unsqueeze(1), torch.ones_like(mask), mask).float()
    comp = torch.multinomial(probs, 1).squeeze(1)
    picked = values[comp, torch.arange(mask.shape[0], device=mask.device)]
    return torch.where(empty.reshape((-1,) + (1,) * (picked.dim() - 1)), torch.zeros_like(picked), picked)
