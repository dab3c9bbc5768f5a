"""Observation-ratio splits and the validation hold-out.

The observation ratio rho is the fraction of training samples whose modalities are all observed. The other
samples keep exactly one modality, assigned round-robin over the modalities, so every modality gets an unpaired
pool of equal size (to one sample). ``missing="mcar"`` instead drops each non-anchor modality with probability
1 - rho, always keeping at least one (MultiVae's partial PolyMNIST protocol). The test split is always complete.
Every split is a pure function of (benchmark config, rho, protocol, seed).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from bench.data.contracts import MultimodalDataset
from bench.errors import BenchError

PROTOCOLS = ("paired", "mcar")


def split_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts (stable across processes, unlike ``hash``)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def check_obs_ratio(rho: float) -> float:
    try:
        rho = float(rho)
    except (TypeError, ValueError):
        raise BenchError(f"obs_ratio must be a number in (0, 1], got {rho!r}") from None
    if not (0.0 < rho <= 1.0):
        raise BenchError(f"obs_ratio must be in (0, 1] (the fraction of fully observed training samples), got {rho}")
    return rho


def observation_mask(n: int, n_modalities: int, rho: float, seed: int, protocol: str = "paired") -> torch.Tensor:
    """The [n, M] boolean observation mask of a training split."""
    rho = check_obs_ratio(rho)
    if protocol not in PROTOCOLS:
        raise BenchError(f"unknown missing protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    gen = torch.Generator().manual_seed(seed)
    mask = torch.ones(n, n_modalities, dtype=torch.bool)
    if rho == 1.0 or n_modalities == 1:
        return mask
    if protocol == "paired":
        order = torch.randperm(n, generator=gen)
        n_paired = int(round(rho * n))
        unpaired = order[n_paired:]
        mask[unpaired] = False
        keep = torch.arange(len(unpaired)) % n_modalities
        mask[unpaired, keep] = True
        return mask
    # mcar: modality 0 is the anchor, the others are Bernoulli(rho); a sample losing all keeps a random one
    drop = torch.rand(n, n_modalities - 1, generator=gen) >= rho
    mask[:, 1:] = ~drop
    return mask


def stratified_split(labels: np.ndarray | torch.Tensor, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test), stratified by label, each sorted; deterministic in ``seed``."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = int(round(test_fraction * len(idx)))
        test.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def apply_observation(train: MultimodalDataset, rho: float, seed: int, protocol: str = "paired") -> MultimodalDataset:
    mask = observation_mask(len(train), len(train.modalities), rho, seed, protocol)
    return train.with_mask(mask)


def load_splits(benchmark, rho: float, seed: int, protocol: str = "paired", val_fraction: float = 0.1):
    """(train, val, test) for a benchmark instance: train carries the observation mask; val and test are complete.

    The validation set is a stratified hold-out of the complete training split, taken before masking, so that
    the per-epoch validation metric measures the same thing at every rho.
    """
    rho = check_obs_ratio(rho)
    full_train, test = benchmark.build()
    ident = (benchmark.name, benchmark.version, repr(benchmark.cfg))
    if val_fraction > 0:
        tr_idx, va_idx = stratified_split(full_train.labels.numpy(), val_fraction, split_seed(*ident, "val", seed))
        val, full_train = full_train.subset(torch.as_tensor(va_idx)), full_train.subset(torch.as_tensor(tr_idx))
    else:
        val = None
    train = apply_observation(full_train, rho, split_seed(*ident, "obs", rho, protocol, seed), protocol)
    return train, val, test
