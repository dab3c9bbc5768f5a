"""``ggm-synth``: class-conditional Gaussian graphical models with a known shared graph and known class edges.

Generative model (all from ``numpy.random.SeedSequence(Config.seed)``; the graph and precisions use one child
stream, the training and test samples one child stream each):

1. **Shared graph** (identical in every class): the chain ``j -- j+1`` over all p variables (if ``chain``) plus
   ``n_shared_edges`` further random edges (default ``p // 2``; class-specific default ``max(1, p // 4)``, so
   the defaults p = 30, K = 3 give 29 + 15 shared edges and 7 edges per class). Every shared edge gets one weight, magnitude uniform in
   ``edge_weight`` with a random sign, used by all classes.
2. **Class-specific edges**: ``n_specific_edges`` per class, drawn without replacement from the pairs that are not
   shared, and disjoint across classes (so a specific edge of class k is absent in every other class), each with
   its own random weight.
3. **Precision**: ``W_k`` = the weighted adjacency; ``Theta_k = W_k + (delta - lambda_min(W_k)) I`` has smallest
   eigenvalue ``delta`` (``min_eigenvalue``), so it is symmetric positive definite by construction. It is then
   rescaled, ``Theta_k <- D_k Theta_k D_k`` with ``D_k = diag(Sigma_k)^(1/2)``, so that every variable has unit
   marginal variance; rescaling keeps the support (the graph) exact. (The shared *support* is identical across
   classes; after the per-class shift and rescaling the shared entries' values differ slightly between classes.)
4. **Samples**: ``x ~ N(mu_k, Theta_k^-1)``, ``n_per_class`` per class for training and ``n_test_per_class`` for
   test, rows grouped by class. ``mu_k = 0`` unless ``class_mean_shift > 0``, in which case each class gets a fixed
   random direction of that Euclidean norm.

No standardisation: ``extras["precision"]`` refers to the raw variables.

**Modalities.** For the multimodal interface the p variables are split into two vector views: ``x1`` = variables
``0 .. p//2 - 1`` and ``x2`` = variables ``p//2 .. p-1`` (``extras["view_index"]`` gives the columns). The full
vector, as the precision indexes it, is ``torch.cat([x1, x2], dim=1)``. Chain edge ``(p//2 - 1, p//2)`` and random
edges crossing the halves make the views dependent.

**Truth** in ``extras`` of both splits: ``precision`` float64 [K, p, p]; ``shared_edges`` bool [p, p]
(symmetric, no diagonal); ``specific_edges`` bool [K, p, p]; ``class_means`` float64 [K, p]; ``view_index``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from bench.data.contracts import Benchmark, BenchmarkSpec, Modality, MultimodalDataset
from bench.errors import BenchError
from bench.registry import register_benchmark


@dataclass(frozen=True)
class GGMConfig:
    p: int = 30
    n_classes: int = 3
    n_per_class: int = 300
    n_test_per_class: int = 150
    n_shared_edges: int | None = None  # None: p // 2
    n_specific_edges: int | None = None  # None: max(1, p // 4)
    chain: bool = True
    edge_weight: tuple[float, float] = (0.3, 0.6)
    min_eigenvalue: float = 0.3
    class_mean_shift: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "edge_weight", tuple(float(w) for w in self.edge_weight))
        if self.p < 4:
            raise BenchError(f"ggm-synth: p must be >= 4 (two views of >= 2 variables), got {self.p}")
        if self.n_shared_edges is None:
            object.__setattr__(self, "n_shared_edges", self.p // 2)
        if self.n_specific_edges is None:
            object.__setattr__(self, "n_specific_edges", max(1, self.p // 4))
        if self.n_classes < 2:
            raise BenchError(f"ggm-synth: n_classes must be >= 2, got {self.n_classes}")
        if self.n_per_class < 1 or self.n_test_per_class < 1:
            raise BenchError("ggm-synth: n_per_class and n_test_per_class must be >= 1")
        if self.n_shared_edges < 0 or self.n_specific_edges < 0:
            raise BenchError("ggm-synth: edge counts must be >= 0")
        lo, hi = self.edge_weight if len(self.edge_weight) == 2 else (-1.0, -1.0)
        if not 0 < lo <= hi:
            raise BenchError(f"ggm-synth: edge_weight must be (low, high) with 0 < low <= high, got {self.edge_weight}")
        if self.min_eigenvalue <= 0:
            raise BenchError(f"ggm-synth: min_eigenvalue must be > 0, got {self.min_eigenvalue}")
        if self.class_mean_shift < 0:
            raise BenchError(f"ggm-synth: class_mean_shift must be >= 0, got {self.class_mean_shift}")
        n_pairs = self.p * (self.p - 1) // 2
        need = (self.p - 1) * self.chain + self.n_shared_edges + self.n_classes * self.n_specific_edges
        if need > n_pairs:
            raise BenchError(f"ggm-synth: {need} edges requested but p={self.p} has only {n_pairs} variable pairs")


def _graph_and_precision(cfg: GGMConfig, rng: np.random.Generator):
    p, K = cfg.p, cfg.n_classes
    iu, ju = np.triu_indices(p, k=1)
    free = np.ones(len(iu), dtype=bool)  # pairs not yet used by any edge (upper triangle, row-major)

    def weights(n: int) -> np.ndarray:
        return rng.uniform(*cfg.edge_weight, size=n) * rng.choice([-1.0, 1.0], size=n)

    def take(n: int) -> np.ndarray:
        idx = rng.choice(np.flatnonzero(free), size=n, replace=False)
        free[idx] = False
        return np.sort(idx)

    pair_id = {(i, j): t for t, (i, j) in enumerate(zip(iu, ju))}
    shared = np.array([pair_id[(j, j + 1)] for j in range(p - 1)], dtype=np.int64) if cfg.chain else np.zeros(0, np.int64)
    free[shared] = False
    shared = np.sort(np.concatenate([shared, take(cfg.n_shared_edges)]))
    w_shared = weights(len(shared))
    specific = [take(cfg.n_specific_edges) for _ in range(K)]

    shared_adj = np.zeros((p, p), dtype=bool)
    shared_adj[iu[shared], ju[shared]] = True
    shared_adj |= shared_adj.T
    specific_adj = np.zeros((K, p, p), dtype=bool)
    precision = np.zeros((K, p, p))
    for k in range(K):
        specific_adj[k, iu[specific[k]], ju[specific[k]]] = True
        specific_adj[k] |= specific_adj[k].T
        w = np.zeros((p, p))
        w[iu[shared], ju[shared]] = w_shared
        w[iu[specific[k]], ju[specific[k]]] = weights(len(specific[k]))
        w = w + w.T
        theta = w + (cfg.min_eigenvalue - np.linalg.eigvalsh(w)[0]) * np.eye(p)
        d = np.sqrt(np.diag(np.linalg.inv(theta)))
        theta = d[:, None] * theta * d[None, :]
        precision[k] = (theta + theta.T) / 2
    means = np.zeros((K, p))
    if cfg.class_mean_shift > 0:
        dirs = rng.standard_normal((K, p))
        means = cfg.class_mean_shift * dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    return precision, shared_adj, specific_adj, means


def _sample(precision: np.ndarray, means: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for k in range(len(precision)):
        # Theta = U U^T (Cholesky); x = mu + U^-T z has covariance U^-T U^-1 = Theta^-1
        u = np.linalg.cholesky(precision[k])
        z = rng.standard_normal((n, precision.shape[1]))
        xs.append(means[k] + np.linalg.solve(u.T, z.T).T)
        ys.append(np.full(n, k, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _modalities(p: int) -> tuple[Modality, ...]:
    h = p // 2
    return (Modality("x1", "vector", (h,), likelihood="gaussian"), Modality("x2", "vector", (p - h,), likelihood="gaussian"))


@functools.lru_cache(maxsize=8)
def _build(cfg: GGMConfig) -> tuple[MultimodalDataset, MultimodalDataset]:
    g_graph, g_train, g_test = (np.random.default_rng(s) for s in np.random.SeedSequence(int(cfg.seed)).spawn(3))
    precision, shared_adj, specific_adj, means = _graph_and_precision(cfg, g_graph)
    h = cfg.p // 2
    extras = {
        "precision": precision,
        "shared_edges": shared_adj,
        "specific_edges": specific_adj,
        "class_means": means,
        "view_index": {"x1": np.arange(h), "x2": np.arange(h, cfg.p)},
    }
    mods = _modalities(cfg.p)
    out = []
    for n, g in ((cfg.n_per_class, g_train), (cfg.n_test_per_class, g_test)):
        x, y = _sample(precision, means, n, g)
        x = x.astype(np.float32)
        data = {"x1": torch.from_numpy(np.ascontiguousarray(x[:, :h])), "x2": torch.from_numpy(np.ascontiguousarray(x[:, h:]))}
        out.append(MultimodalDataset.complete(mods, data, y, dict(extras)))
    return out[0], out[1]


@register_benchmark("ggm-synth")
class GGMSynth(Benchmark):
    """K class-conditional Gaussians with a known shared graph plus known class-specific edges (see module doc)."""

    version = 1
    Config = GGMConfig

    def spec(self) -> BenchmarkSpec:
        return BenchmarkSpec(
            name="ggm-synth",
            modalities=_modalities(self.cfg.p),
            n_classes=self.cfg.n_classes,
            tasks=("representation", "structure", "classification"),
            # zero class means by default: the classes differ in covariance only, so k-means on raw features is
            # at chance and the structure metrics (edge F1 against extras) are the point of this benchmark
            default_metrics=("probe_linear", "probe_mlp", "predict_acc", "edge_precision", "edge_recall", "edge_f1"),
        )

    def build(self) -> tuple[MultimodalDataset, MultimodalDataset]:
        return _build(self.cfg)
