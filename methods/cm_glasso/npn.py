"""The nonparanormal transform (Liu, Lafferty & Wasserman 2009; docs/methods.md §3.3) [paper-adjacent].

For each variable j, x~_j = Phi^-1(F~_j(x_j)) with F~_j the empirical CDF of the training sample winsorised to
[delta_n, 1 - delta_n], delta_n = 1 / (4 n^(1/4) sqrt(pi log n)). The maps are fitted once on the pooled training
set and applied unchanged to any later data; between training values the ECDF is interpolated linearly, so the map
is continuous and non-decreasing everywhere (and strictly increasing inside the training range).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri


def winsor_level(n: int) -> float:
    """delta_n of Liu et al. (2009), the truncation that keeps Phi^-1 of the ECDF finite and its variance bounded."""
    if n < 2:
        raise ValueError(f"the nonparanormal transform needs at least 2 training samples, got {n}")
    return 1.0 / (4.0 * n ** 0.25 * math.sqrt(math.pi * math.log(n)))


@dataclass(frozen=True)
class Nonparanormal:
    """Per-variable monotone maps: ``knots[j]`` are the distinct training values of variable j and ``levels[j]``
    the ECDF at them, (#training values <= knot) / n."""

    knots: tuple[np.ndarray, ...]
    levels: tuple[np.ndarray, ...]
    delta: float

    @classmethod
    def fit(cls, X: np.ndarray) -> "Nonparanormal":
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"Nonparanormal.fit: X must be [n, p], got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("Nonparanormal.fit: X contains NaN or infinite values")
        n = len(X)
        knots, levels = [], []
        for col in X.T:
            values, counts = np.unique(col, return_counts=True)
            knots.append(values)
            levels.append(np.cumsum(counts) / n)
        return cls(tuple(knots), tuple(levels), winsor_level(n))

    @property
    def p(self) -> int:
        return len(self.knots)

    def cdf(self, X: np.ndarray) -> np.ndarray:
        """The winsorised, interpolated ECDF of each column, in [delta, 1 - delta]."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.p:
            raise ValueError(f"Nonparanormal: X must be [n, {self.p}], got shape {X.shape}")
        # below the smallest training value the ECDF is 0 and gets winsorised to delta anyway
        F = np.column_stack([np.interp(X[:, j], self.knots[j], self.levels[j], left=0.0, right=1.0)
                             for j in range(self.p)]) if len(X) else np.zeros((0, self.p))
        return np.clip(F, self.delta, 1.0 - self.delta)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """x~ = Phi^-1(F~(x)); NaN stays NaN (an unobserved entry is not a value)."""
        X = np.asarray(X, dtype=np.float64)
        missing = np.isnan(X)
        out = ndtri(self.cdf(np.where(missing, 0.0, X)))
        out[missing] = np.nan
        return out
