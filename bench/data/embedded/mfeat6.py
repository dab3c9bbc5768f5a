"""``mfeat6``: the six real views of the UCI "Multiple Features" handwritten digits (docs/datasets.md, "Embedded benchmarks").

2000 digits '0'-'9' (200 per class), each described by six heterogeneous feature sets, one vector modality each:

====  ====  ===========================================  =================================
name  dim   content                                      measured 5-fold logistic accuracy
====  ====  ===========================================  =================================
fou   76    Fourier coefficients of the character shape  0.816
fac   216   profile correlations                         0.977
kar   64    Karhunen-Loève coefficients                  0.946
pix   240   2x3-window pixel averages (a 16x15 image)    0.964
zer   47    Zernike moments                              0.816
mor   6     morphological features                       0.736
====  ====  ===========================================  =================================

The data ship as ``mfeat6.npz`` next to this module (package data; provenance, licence and the regeneration script
in ``MFEAT_CITATION.md`` and ``_make_mfeat6.py``). The split is stratified 70/30 (1400 / 600, 140 / 60 per class),
a pure function of ``Config.seed``; every feature is then standardised with the mean and standard deviation of the
*training* split only (a feature constant on the training split is only centred). ``Config.views`` selects a subset
of the views, in the order given.
"""

from __future__ import annotations

import functools
import importlib.resources
from dataclasses import dataclass

import numpy as np
import torch

from bench.data.contracts import (PREDICTION_METRICS, REPRESENTATION_METRICS, Benchmark, BenchmarkSpec, Modality,
                                  MultimodalDataset)
from bench.data.splits import split_seed, stratified_split
from bench.errors import BenchError
from bench.registry import register_benchmark

VIEW_DIMS: dict[str, int] = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
VIEWS: tuple[str, ...] = tuple(VIEW_DIMS)
DATA_FILE = "mfeat6.npz"
TEST_FRACTION = 0.3
N_CLASSES = 10


def standardize_on_train(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train, test, mean, std) as float32, both splits scaled with the training split's per-feature statistics.

    A feature with zero training variance keeps std 1 (it is centred only), so nothing divides by zero.
    """
    train = np.asarray(train, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return (
        ((train - mean) / std).astype(np.float32),
        ((test - mean) / std).astype(np.float32),
        mean,
        std,
    )


@functools.lru_cache(maxsize=1)
def load_raw() -> dict[str, np.ndarray]:
    """The packaged arrays: the six views (original values, 2000 rows) and ``labels`` (int64, 0-9)."""
    with importlib.resources.files(__package__).joinpath(DATA_FILE).open("rb") as fh:
        with np.load(fh, allow_pickle=False) as npz:
            raw = {k: npz[k] for k in npz.files}
    raw["labels"] = raw["labels"].astype(np.int64)
    for view, dim in VIEW_DIMS.items():
        if raw[view].shape != (2000, dim):
            raise RuntimeError(f"{DATA_FILE}: view {view!r} has shape {raw[view].shape}, expected (2000, {dim})")
    return raw


def _check_views(views) -> tuple[str, ...]:
    if isinstance(views, str):
        views = (views,)
    views = tuple(views)
    bad = [v for v in views if v not in VIEW_DIMS]
    if bad:
        raise BenchError(f"mfeat6: unknown view(s) {', '.join(map(repr, bad))}; valid views: {', '.join(VIEWS)}")
    if not views:
        raise BenchError(f"mfeat6: views must name at least one of: {', '.join(VIEWS)}")
    if len(set(views)) != len(views):
        raise BenchError(f"mfeat6: views {views} repeat a name; valid views: {', '.join(VIEWS)}")
    return views


@functools.lru_cache(maxsize=8)
def _build(seed: int, views: tuple[str, ...]) -> tuple[MultimodalDataset, MultimodalDataset]:
    raw = load_raw()
    labels = raw["labels"]
    tr, te = stratified_split(labels, TEST_FRACTION, split_seed("mfeat6", "split", seed))
    modalities = _modalities(views)
    data_tr, data_te, stats = {}, {}, {}
    for v in views:
        x_tr, x_te, mean, std = standardize_on_train(raw[v][tr], raw[v][te])
        data_tr[v], data_te[v] = torch.from_numpy(x_tr), torch.from_numpy(x_te)
        stats[v] = (mean, std)
    common = {"feature_mean": {v: s[0] for v, s in stats.items()}, "feature_std": {v: s[1] for v, s in stats.items()}}
    train = MultimodalDataset.complete(modalities, data_tr, labels[tr], {**common, "source_index": torch.from_numpy(tr)})
    test = MultimodalDataset.complete(modalities, data_te, labels[te], {**common, "source_index": torch.from_numpy(te)})
    return train, test


def _modalities(views: tuple[str, ...]) -> tuple[Modality, ...]:
    return tuple(Modality(v, "vector", (VIEW_DIMS[v],), likelihood="gaussian") for v in views)


@register_benchmark("mfeat6")
class MFeat6(Benchmark):
    """Six real heterogeneous views of 2000 handwritten digits; 1400 / 600 stratified split, train-standardised.

    ``extras`` of both splits: ``feature_mean`` / ``feature_std`` (dicts view -> float64 [D], the training
    statistics used) and ``source_index`` (row of each sample in the original 2000, int64 tensor).
    """

    version = 1

    @dataclass(frozen=True)
    class Config:
        seed: int = 0
        views: tuple[str, ...] = VIEWS

        def __post_init__(self) -> None:
            object.__setattr__(self, "views", _check_views(self.views))

    def spec(self) -> BenchmarkSpec:
        return BenchmarkSpec(
            name="mfeat6",
            modalities=_modalities(self.cfg.views),
            n_classes=N_CLASSES,
            tasks=("representation", "retrieval"),
            default_metrics=REPRESENTATION_METRICS + PREDICTION_METRICS + ("retrieval_r1", "retrieval_r5"),
        )

    def build(self) -> tuple[MultimodalDataset, MultimodalDataset]:
        return _build(int(self.cfg.seed), _check_views(self.cfg.views))
