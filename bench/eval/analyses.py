"""The two representation analyses of the DCMEM poster (NeurIPS 2025), as registered metrics.

1. ``modality_class_distance`` -- the class-conditioned distance matrix between two modalities' shared
   representations, D[c, c'] = mean ||z_a - z_b|| over z_a of class c (seen through modality a) and z_b of
   class c' (seen through modality b). Summary: mean off-diagonal D / mean diagonal D.
2. ``paired_unpaired_w2`` -- 2-Wasserstein distances between the representations of paired samples (instance i
   through a and through b) versus unpaired ones (instance i through a, a different random instance j through
   b). Summary: median unpaired / median paired.

Both work on the per-modality embeddings of the test split (``ctx.embeddings("test")[<modality>]``), restricted
to the complete rows (instances whose representation is finite in both modalities of the pair), and both
L2-normalise every row first: methods differ wildly in the scale of their latents, and on the unit sphere the
distances (in [0, 2]) are comparable across methods. Both summaries are ratios (> 1: structure; 1: none), so
they are scale-free anyway; normalising also makes the matrices themselves comparable in plots.

The pure functions (:func:`class_distance_matrix`, :func:`paired_unpaired_distances`,
:func:`w2_diag_gaussian`) take arrays and are what plotting code should call. Importing this module registers
the metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.eval import NotApplicable
from bench.registry import register_metric

__all__ = [
    "class_distance_matrix",
    "class_distance_ratio",
    "mean_class_matrix",
    "paired_unpaired_distances",
    "paired_unpaired_ratio",
    "w2_diag_gaussian",
    "modality_class_distance",
    "paired_unpaired_w2",
]

MAX_PER_CLASS = 200   # samples per class kept by the class-distance analysis (seeded subsample)
_BLOCK = 2048         # rows of Za per distance block


def _as_2d(Z: Any, name: str) -> np.ndarray:
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2:
        raise ValueError(f"{name} must be [N, D]; got shape {Z.shape}")
    return Z


def _l2_normalise(Z: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(Z, axis=1, keepdims=True)
    return Z / np.where(norms > 0, norms, 1.0)


def _cap_per_class(y: np.ndarray, max_per_class: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices keeping at most ``max_per_class`` (random, seeded) samples of every class, in sorted order."""
    if max_per_class is None:
        return np.arange(len(y))
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) > max_per_class:
            idx = rng.choice(idx, size=max_per_class, replace=False)
        keep.append(idx)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def class_distance_matrix(Za: Any, Zb: Any, ya: Any, yb: Any, n_classes: int, *, normalise: bool = True,
                          max_per_class: int | None = MAX_PER_CLASS, seed: int = 0) -> np.ndarray:
    """Class-conditioned cross-modal distance matrix.

    Za: [Na, D] representations seen through modality a, with labels ya [Na]; Zb: [Nb, D], yb [Nb] (the rows
    need not be paired). Returns D [n_classes, n_classes] with D[c, c'] = mean Euclidean distance between the
    rows of Za of class c and the rows of Zb of class c' (all pairs); NaN where either class has no sample.
    ``normalise`` L2-normalises every row first (distances then lie in [0, 2]); ``max_per_class`` keeps at
    most that many samples per class on each side (seeded subsample; ``None`` keeps all). Rows must be finite.
    """
    Za, Zb = _as_2d(Za, "Za"), _as_2d(Zb, "Zb")
    ya, yb = np.asarray(ya).astype(np.int64).ravel(), np.asarray(yb).astype(np.int64).ravel()
    if Za.shape[1] != Zb.shape[1]:
        raise ValueError(f"Za and Zb differ in dimension: {Za.shape[1]} vs {Zb.shape[1]}")
    if len(ya) != len(Za) or len(yb) != len(Zb):
        raise ValueError("labels and representations differ in length")
    if not (np.isfinite(Za).all() and np.isfinite(Zb).all()):
        raise ValueError("class_distance_matrix needs finite rows (drop unobserved ones first)")
    for y in (ya, yb):
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"labels must lie in [0, {n_classes})")
    rng = np.random.default_rng(seed)
    ia, ib = _cap_per_class(ya, max_per_class, rng), _cap_per_class(yb, max_per_class, rng)
    Za, ya, Zb, yb = Za[ia], ya[ia], Zb[ib], yb[ib]
    if normalise:
        Za, Zb = _l2_normalise(Za), _l2_normalise(Zb)
    Yb = np.zeros((len(yb), n_classes))
    Yb[np.arange(len(yb)), yb] = 1.0
    sums = np.zeros((n_classes, n_classes))
    sq_b = (Zb ** 2).sum(1)
    for start in range(0, len(Za), _BLOCK):
        A = Za[start:start + _BLOCK]
        d2 = (A ** 2).sum(1)[:, None] + sq_b[None, :] - 2.0 * A @ Zb.T
        dist = np.sqrt(np.maximum(d2, 0.0))                       # [block, Nb]
        per_cb = dist @ Yb                                        # [block, C]: summed over b-rows of each class
        np.add.at(sums, ya[start:start + _BLOCK], per_cb)         # accumulate into a's class rows
    counts = np.bincount(ya, minlength=n_classes)[:, None] * np.bincount(yb, minlength=n_classes)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def class_distance_ratio(D: np.ndarray) -> float:
    """(mean off-diagonal D) / (mean diagonal D), ignoring NaN entries (absent classes). > 1: same-class
    cross-modal pairs are closer than different-class ones; 1: no class structure. NaN if undefined."""
    D = np.asarray(D, dtype=np.float64)
    diag, off = np.diag(D), D[~np.eye(len(D), dtype=bool)]
    diag, off = diag[np.isfinite(diag)], off[np.isfinite(off)]
    if len(diag) == 0 or len(off) == 0 or diag.mean() <= 0:
        return float("nan")
    return float(off.mean() / diag.mean())


def paired_unpaired_distances(Za: Any, Zb: Any, seed: int = 0, *,
                              normalise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Point-mass 2-Wasserstein distances of paired and unpaired cross-modal representations.

    Za, Zb: [N, D], row i of both being the same instance (seen through modality a and b). Each representation is
    treated as a Dirac at its (posterior) mean, and W2 between two Diracs is the Euclidean distance between them,
    so ``paired[i] = ||Za[i] - Zb[i]||`` and ``unpaired[i] = ||Za[i] - Zb[j_i]||`` with j_i a uniformly random
    instance other than i (seeded). ``normalise`` L2-normalises every row first. Returns (paired [N], unpaired [N]).
    """
    Za, Zb = _as_2d(Za, "Za"), _as_2d(Zb, "Zb")
    if Za.shape != Zb.shape:
        raise ValueError(f"paired representations must have the same shape: {Za.shape} vs {Zb.shape}")
    n = len(Za)
    if n < 2:
        raise ValueError("need at least two instances to form unpaired samples")
    if not (np.isfinite(Za).all() and np.isfinite(Zb).all()):
        raise ValueError("paired_unpaired_distances needs finite rows (drop unobserved ones first)")
    if normalise:
        Za, Zb = _l2_normalise(Za), _l2_normalise(Zb)
    rng = np.random.default_rng(seed)
    j = (np.arange(n) + rng.integers(1, n, size=n)) % n      # uniform over the other n - 1 instances
    paired = np.linalg.norm(Za - Zb, axis=1)
    unpaired = np.linalg.norm(Za - Zb[j], axis=1)
    return paired, unpaired


def paired_unpaired_ratio(paired: np.ndarray, unpaired: np.ndarray) -> float:
    """median(unpaired) / median(paired): > 1 when pairs are closer than strangers. inf if every pair coincides."""
    mp, mu = float(np.median(paired)), float(np.median(unpaired))
    if mp <= 0:
        return float("inf") if mu > 0 else float("nan")
    return mu / mp


def w2_diag_gaussian(mu1: Any, s1: Any, mu2: Any, s2: Any) -> np.ndarray:
    """2-Wasserstein distance between diagonal Gaussians N(mu1, diag(s1^2)) and N(mu2, diag(s2^2)).

    Closed form: W2^2 = ||mu1 - mu2||^2 + ||s1 - s2||^2 (s are standard deviations, not variances). Works on
    [D] vectors or batched [..., D] arrays (returns [...]). With s1 = s2 = 0 it is the point-mass (Euclidean)
    distance used by :func:`paired_unpaired_distances`.
    """
    mu1, s1, mu2, s2 = (np.asarray(x, dtype=np.float64) for x in (mu1, s1, mu2, s2))
    if np.any(s1 < 0) or np.any(s2 < 0):
        raise ValueError("standard deviations must be non-negative")
    return np.sqrt(((mu1 - mu2) ** 2).sum(-1) + ((s1 - s2) ** 2).sum(-1))


# --------------------------------------------------------------------------------------------- metrics


def _modality_pairs(ctx: Any) -> list[tuple[str, str, np.ndarray, np.ndarray, np.ndarray]]:
    """(a, b, Za, Zb, y) over ordered pairs of modalities with per-modality test embeddings, restricted to the
    complete rows (finite in both). Raises NotApplicable with fewer than two such modalities."""
    emb, y = ctx.embeddings("test"), np.asarray(ctx.labels("test"))
    per = {m: np.asarray(emb[m]) for m in ctx.spec.modality_names if m in emb}
    if len(per) < 2:
        raise NotApplicable("needs per-modality embeddings of at least two modalities")
    dims = {v.shape[1] for v in per.values()}
    if len(dims) > 1:
        raise NotApplicable(f"per-modality embeddings differ in dimension ({sorted(dims)}): not a shared space")
    out = []
    for a in per:
        for b in per:
            if a == b:
                continue
            keep = np.isfinite(per[a]).all(1) & np.isfinite(per[b]).all(1)
            out.append((a, b, per[a][keep], per[b][keep], y[keep]))
    return out


def _with_mean(values: dict[str, float]) -> dict[str, float]:
    finite = [v for v in values.values() if np.isfinite(v)]
    if not finite:
        raise NotApplicable("no modality pair has enough complete test samples")
    return {**values, "mean": float(np.mean(finite))}


def _n_classes(ctx: Any, y: np.ndarray) -> int:
    n = getattr(ctx.spec, "n_classes", None)
    return int(n) if n else int(y.max()) + 1


def _class_matrices(ctx: Any) -> dict[str, np.ndarray]:
    """{"a->b": D [C, C]} per ordered modality pair (NaN matrix where a pair has fewer than two complete rows)."""
    def compute():
        seed = int(getattr(ctx, "seed", 0) or 0)
        out = {}
        for a, b, Za, Zb, y in _modality_pairs(ctx):
            n = _n_classes(ctx, y)
            out[f"{a}->{b}"] = (class_distance_matrix(Za, Zb, y, y, n, seed=seed) if len(y) >= 2
                                else np.full((n, n), np.nan))
        return out

    return ctx.memo(("analysis", "class_matrices"), compute)


def _pair_distances(ctx: Any) -> dict[str, tuple[np.ndarray, np.ndarray] | None]:
    """{"a->b": (paired, unpaired) distances} per ordered pair; None where a pair has fewer than two complete rows."""
    def compute():
        seed = int(getattr(ctx, "seed", 0) or 0)
        return {f"{a}->{b}": (paired_unpaired_distances(Za, Zb, seed=seed + k) if len(Za) >= 2 else None)
                for k, (a, b, Za, Zb, _) in enumerate(_modality_pairs(ctx))}

    return ctx.memo(("analysis", "pair_distances"), compute)


@register_metric("modality_class_distance", higher_is_better=True,
                 description="class-conditioned cross-modal distance matrix on the test split (L2-normalised "
                             "per-modality representations, <=200 samples/class): per ordered modality pair "
                             "a->b, mean off-diagonal / mean diagonal distance (>1: same-class cross-modal "
                             "pairs closer than different-class ones; 1: no class structure); 'mean' over pairs")
def modality_class_distance(ctx: Any) -> dict[str, float]:
    return _with_mean({pair: class_distance_ratio(D) for pair, D in _class_matrices(ctx).items()})


@register_metric("paired_unpaired_w2", higher_is_better=True,
                 description="point-mass 2-Wasserstein (Euclidean, L2-normalised) distance between the two "
                             "modalities' representations of the same test instance vs. of different random "
                             "instances: per ordered pair a->b, median unpaired / median paired (>1: pairs are "
                             "closer than strangers); 'mean' over pairs")
def paired_unpaired_w2(ctx: Any) -> dict[str, float]:
    """Methods expose only the means of their posteriors through ``embed``, so each representation is treated
    as a point mass and W2 reduces to the Euclidean distance. A method that one day exposes posterior scales
    could use :func:`w2_diag_gaussian` instead; this metric does not."""
    return _with_mean({pair: (paired_unpaired_ratio(*d) if d is not None else float("nan"))
                       for pair, d in _pair_distances(ctx).items()})


# ------------------------------------------------------------------------------------ figure data (not ranked)

PROFILE_QUANTILES = np.linspace(0.0, 1.0, 21)   # equal-mass bins of 5 %: a histogram with variable bin widths


def mean_class_matrix(matrices: dict[str, np.ndarray]) -> np.ndarray:
    """Mean over ordered pairs of the class-distance matrices, with b->a transposed onto a->b's orientation: the
    result is symmetric, its rows and columns are classes, whatever the modality pair."""
    stacked = np.stack([D for D in matrices.values()] + [D.T for D in matrices.values()])
    finite = np.isfinite(stacked)
    with np.errstate(invalid="ignore"):
        return np.where(finite.any(0), np.nansum(stacked, 0) / np.maximum(finite.sum(0), 1), np.nan)


@register_metric("class_distance_profile", higher_is_better=False, ranked=False,
                 description="figure data of modality_class_distance: the class-conditioned cross-modal distance "
                             "matrix averaged over ordered modality pairs, one target 'c,c2' per entry (drawn as "
                             "a heatmap in the report, not ranked)")
def class_distance_profile(ctx: Any) -> dict[str, float]:
    D = mean_class_matrix(_class_matrices(ctx))
    if not np.isfinite(D).any():
        raise NotApplicable("no modality pair has enough complete test samples")
    return {f"{i},{j}": float(D[i, j]) for i in range(len(D)) for j in range(len(D))}


@register_metric("w2_profile", higher_is_better=False, ranked=False,
                 description="figure data of paired_unpaired_w2: quantiles (0, 5, ..., 100 %) of the paired and "
                             "unpaired distances pooled over ordered modality pairs, targets 'paired:q05' etc. "
                             "(drawn as equal-mass histograms in the report, not ranked)")
def w2_profile(ctx: Any) -> dict[str, float]:
    pairs = [d for d in _pair_distances(ctx).values() if d is not None]
    if not pairs:
        raise NotApplicable("no modality pair has enough complete test samples")
    out = {}
    for k, kind in enumerate(("paired", "unpaired")):
        q = np.quantile(np.concatenate([d[k] for d in pairs]), PROFILE_QUANTILES)
        out.update({f"{kind}:q{round(100 * p):02d}": float(v) for p, v in zip(PROFILE_QUANTILES, q)})
    return out
