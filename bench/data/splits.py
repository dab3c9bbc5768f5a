"""Observation-ratio splits and the validation hold-out.

The observation ratio rho is the fraction of training samples whose modalities are all observed. The other
samples keep exactly one modality, assigned round-robin over the modalities, so every modality gets an unpaired
pool of equal size (to one sample). ``missing="mcar"`` instead drops each non-anchor modality with probability
1 - rho, always keeping at least one (MultiVae's partial PolyMNIST protocol). The test split is always complete.
Every split is a pure function of (benchmark identity, rho, protocol, seed): the identity is the benchmark's
name, version and config without the data root (bench.spec.data_key), so neither the data root nor the name of
the config class changes the data. The method is not an input: every method sees the same splits.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from bench.config import config_dict
from bench.data.contracts import MultimodalDataset
from bench.errors import BenchError
from bench.spec import canonical_json, data_key, derive_seed, seed_from_text

PROTOCOLS = ("paired", "mcar")


def split_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts, joined by \\x1f (the embedded datasets are generated with it)."""
    return seed_from_text("\x1f".join(map(str, parts)))


def benchmark_section(benchmark) -> dict:
    """The spec's ``benchmark`` section of a benchmark instance (as bench.run.resolve_spec writes it)."""
    if not dataclasses.is_dataclass(benchmark.cfg):
        raise BenchError(f"benchmark {benchmark.name!r}: its config must be a dataclass instance (its fields are "
                         f"the data's identity), got {type(benchmark.cfg).__name__}")
    return {"name": benchmark.name, "version": int(benchmark.version), "config": config_dict(benchmark.cfg)}


def split_seeds(section: dict, rho: float, seed: int, protocol: str) -> tuple[int, int]:
    """(validation hold-out seed, observation-mask seed) of a spec_version >= 2 run. The hold-out depends on the
    data and the seed only, so that it is the same set at every rho and protocol."""
    key, seed = data_key(section), int(seed)
    val = derive_seed(key, canonical_json({"split": "val", "seed": seed}))
    obs = derive_seed(key, canonical_json({"split": "obs", "seed": seed, "obs_ratio": float(rho), "missing": protocol}))
    return val, obs


def legacy_split_seeds(benchmark, rho: float, seed: int, protocol: str) -> tuple[int, int]:
    """The seeds of spec_version 1 runs, from the repr of the config (class name and field reprs included),
    kept so that a version-1 record reruns with the splits it was trained on."""
    ident = (benchmark.name, benchmark.version, repr(benchmark.cfg))
    return split_seed(*ident, "val", seed), split_seed(*ident, "obs", rho, protocol, seed)


def check_obs_ratio(rho: float) -> float:
    try:
        rho = float(rho)
    except (TypeError, ValueError):
        raise BenchError(f"obs_ratio must be a number in (0, 1], got {rho!r}") from None
    if not (0.0 < rho <= 1.0):
        raise BenchError(f"obs_ratio must be in (0, 1] (the fraction of fully observed training samples), got {rho}")
    return rho


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise BenchError(f"unknown missing protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    return protocol


def observation_mask(n: int, n_modalities: int, rho: float, seed: int, protocol: str = "paired") -> torch.Tensor:
    """The [n, M] boolean observation mask of a training split."""
    rho, protocol = check_obs_ratio(rho), check_protocol(protocol)
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


def load_splits(benchmark, rho: float, seed: int, protocol: str = "paired", val_fraction: float = 0.1,
                legacy_seeds: bool = False):
    """(train, val, test) for a benchmark instance: train carries the observation mask; val and test are complete.

    The validation set is a stratified hold-out of the complete training split, taken before masking, so that
    the per-epoch validation metric measures the same thing at every rho. ``legacy_seeds`` reproduces the
    splits of a spec_version 1 run (docs/run-identity.md).
    """
    rho, protocol = check_obs_ratio(rho), check_protocol(protocol)  # before the build, which may take minutes
    if legacy_seeds:
        val_seed, obs_seed = legacy_split_seeds(benchmark, rho, seed, protocol)
    else:
        val_seed, obs_seed = split_seeds(benchmark_section(benchmark), rho, seed, protocol)
    full_train, test = benchmark.build()
    if val_fraction > 0:
        tr_idx, va_idx = stratified_split(full_train.labels.numpy(), val_fraction, val_seed)
        val, full_train = full_train.subset(torch.as_tensor(va_idx)), full_train.subset(torch.as_tensor(tr_idx))
    else:
        val = None
    train = apply_observation(full_train, rho, obs_seed, protocol)
    return train, val, test
