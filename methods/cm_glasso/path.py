"""Lambda paths with warm starts, eBIC model selection and tailored penalty weights (docs/methods.md §3.4).

* :func:`lambda_grid` / :func:`solve_path`: a geometric grid from the smallest lambda that gives the empty graph
  down to ``ratio`` times it, solved from sparse to dense, each solve warm-started from the previous one.
* :func:`ebic`: BIC_gamma = -2 loglik + |E| log N + 4 |E| gamma log p (Foygel & Drton 2010, as in §3.4), with
  |E| the edges of Theta_0 plus those of every Delta_k (the free off-diagonal parameters of the joint model).
* :func:`tailored_weights`: P = 1 - g_k(W), g_k(w) = 1 / (1 + exp(-k (w - w_0))), w_0 the lower beta-quantile of
  the non-zero prior weights (Tailored GLasso, Lingjaerde et al. 2021, Table 1) [paper-adjacent].
* :func:`select_tailored`: k on a grid and lambda on a path, jointly by eBIC (the original picks lambda by StARS;
  eBIC over a grid is the harness simplification §3.4 allows).

[reconstructed] Rescaling: §3.4 keeps total shrinkage comparable with lambda p^2 / ||P||_1. P has a zero diagonal,
so we divide by its mean over the p(p - 1) off-diagonal entries instead; then k = 0 (g = 1/2 everywhere) gives
P = 1 exactly, the untailored problem, rather than a penalty p / (p - 1) times larger.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from methods.cm_glasso.solver import JointGLassoResult, check_inputs, solve_sequence

K_GRID = (0.0, 5.0, 10.0, 20.0, 40.0, 80.0)   # §3.4: k on [0, k_max = 80]; 0 = uniform penalty


def default_shared_ratio(k: int) -> float:
    """lam_shared / lam_specific = K / 2 (§3.5): between 1 and K, so edges common to all classes go to Theta_0.
    With K = 1 the split is immaterial and Theta_0 is switched off (ratio inf)."""
    return math.inf if k == 1 else k / 2.0


def _shared(shared_ratio: float, lam: float) -> float:
    return math.inf if math.isinf(shared_ratio) else shared_ratio * float(lam)   # inf * 0 would be NaN


def lambda_max(S: np.ndarray, n: np.ndarray, shared_ratio: float, weights: np.ndarray | None = None) -> float:
    """The smallest lam_specific (with lam_shared = shared_ratio * lam_specific) whose solution has no edge.

    At Theta_0 = 0, Delta_k = diag(1 / S_k,ii) the gradient of the smooth part is n_k S_k,ij off the diagonal; by
    the KKT conditions of §3.9 it is optimal iff |n_k S_k,ij| <= lam_specific P_ij for every k and
    |sum_k n_k S_k,ij| <= lam_shared P_ij.
    """
    S = np.asarray(S, dtype=np.float64).reshape(-1, *np.shape(S)[-2:])
    n = np.asarray(n, dtype=np.float64).reshape(-1)
    p = S.shape[-1]
    P = np.ones((p, p)) if weights is None else np.asarray(weights, dtype=np.float64)
    off = ~np.eye(p, dtype=bool) & (P > 0)
    if not off.any():
        return 0.0
    grad = np.abs(n[:, None, None] * S)
    need = (grad.max(0)[off] / P[off]).max()
    if math.isfinite(shared_ratio):
        need = max(need, (np.abs((n[:, None, None] * S).sum(0))[off] / (shared_ratio * P[off])).max())
    return float(need)


def lambda_grid(S, n, n_lambdas: int = 20, ratio: float = 0.05, shared_ratio: float | None = None,
                weights=None) -> np.ndarray:
    """n_lambdas values of lam_specific, geometric, from lambda_max down to ratio * lambda_max (decreasing)."""
    if n_lambdas < 1 or not 0 < ratio < 1:
        raise ValueError(f"lambda_grid: need n_lambdas >= 1 and 0 < ratio < 1, got {n_lambdas}, {ratio}")
    S = np.asarray(S, dtype=np.float64).reshape(-1, *np.shape(S)[-2:])
    shared_ratio = default_shared_ratio(len(S)) if shared_ratio is None else shared_ratio
    top = lambda_max(S, n, shared_ratio, weights)
    return top * np.geomspace(1.0, ratio, n_lambdas)


def solve_path(S, n, lambdas, shared_ratio: float | None = None, weights=None, warm_start=None, *,
               screen: bool = True, **solver_kw) -> list[JointGLassoResult]:
    """Solve for each lam_specific in ``lambdas`` (lam_shared = shared_ratio * lam_specific), in the order given,
    each solve warm-started from the previous ones (give them from large to small: sparse solutions first).
    ``screen`` solves each lambda block by block (docs/methods.md §3.10; the blocks merge as lambda falls, and each
    block starts from the previous solution restricted to it). ``solver_kw`` go to
    :func:`~methods.cm_glasso.solver.solve_sequence`."""
    S = np.asarray(S, dtype=np.float64).reshape(-1, *np.shape(S)[-2:])
    shared_ratio = default_shared_ratio(len(S)) if shared_ratio is None else shared_ratio
    pairs = [(_shared(shared_ratio, lam), float(lam)) for lam in lambdas]
    return solve_sequence(S, n, pairs, weights, warm_start=warm_start, screen=screen, **solver_kw)


def edge_count(result: JointGLassoResult, atol: float = 0.0) -> int:
    """Free off-diagonal parameters: upper-triangle non-zeros of Theta_0 plus those of every Delta_k."""
    p = result.theta0.shape[0]
    iu = np.triu_indices(p, 1)
    return int((np.abs(result.theta0[iu]) > atol).sum() + (np.abs(result.delta[:, iu[0], iu[1]]) > atol).sum())


def log_likelihood(S, n, precision) -> float:
    """sum_k n_k / 2 (logdet Theta_k - tr(S_k Theta_k)), the Gaussian log-likelihood up to its constant."""
    S = np.asarray(S, dtype=np.float64).reshape(-1, *np.shape(S)[-2:])
    n = np.asarray(n, dtype=np.float64).reshape(-1)
    sign, logdet = np.linalg.slogdet(precision)
    if (sign <= 0).any():
        return -math.inf
    return float((n / 2.0 * (logdet - np.einsum("kij,kji->k", S, precision))).sum())


def ebic(result: JointGLassoResult, S, n, gamma: float = 0.5) -> float:
    """BIC_gamma of a solution; the likelihood uses ``precision`` (Omega_k, positive definite by construction)."""
    n = np.asarray(n, dtype=np.float64).reshape(-1)
    p = result.theta0.shape[0]
    edges = edge_count(result)
    return -2.0 * log_likelihood(S, n, result.precision) + edges * math.log(n.sum()) + 4.0 * edges * gamma * math.log(p)


def tailored_weights(W: np.ndarray, k: float, beta: float = 0.05) -> np.ndarray:
    """P = 1 - g_k(W) with a zero diagonal, divided by its off-diagonal mean (see the module note).

    W: [p, p] prior edge weights in [0, 1] (large = an edge is likely, so it is penalised less). k = 0 gives P = 1.
    """
    W = np.asarray(W, dtype=np.float64)
    p = W.shape[0]
    if W.shape != (p, p) or not np.isfinite(W).all():
        raise ValueError(f"tailored_weights: W must be a finite square matrix, got shape {W.shape}")
    if k < 0:
        raise ValueError(f"tailored_weights: the steepness k must be >= 0, got {k}")
    off = ~np.eye(p, dtype=bool)
    positive = W[off][W[off] > 0]
    w0 = float(np.quantile(positive, beta)) if positive.size else 0.0
    P = 1.0 - 1.0 / (1.0 + np.exp(-k * (W - w0)))
    P[~off] = 0.0
    mean = P[off].mean() if p > 1 else 1.0
    # k so steep that every off-diagonal g saturates at 1: no edge is penalised; keep P = 0 rather than 0 / 0
    return P / mean if mean > 0 else P


@dataclass(frozen=True)
class Selection:
    result: JointGLassoResult
    lam_specific: float
    lam_shared: float
    k: float
    ebic: float
    table: tuple[tuple[float, float, float, int], ...]   # (k, lam_specific, eBIC, edges) of every solve


def select_tailored(S, n, W: np.ndarray | None = None, k_grid=K_GRID, n_lambdas: int = 10, ratio: float = 0.05,
                    shared_ratio: float | None = None, gamma: float = 0.5, **solver_kw) -> Selection:
    """The (k, lambda) pair of smallest eBIC: for each k a warm-started lambda path with P = tailored_weights(W, k).
    Without a prior W only k = 0 (uniform penalty) is tried."""
    check_inputs(S, n, 0.0, 0.0)  # one clear error before any solve
    S = np.asarray(S, dtype=np.float64).reshape(-1, *np.shape(S)[-2:])
    shared_ratio = default_shared_ratio(len(S)) if shared_ratio is None else shared_ratio
    ks = tuple(k_grid) if W is not None else (0.0,)
    best, table = None, []
    for k in ks:
        P = tailored_weights(W, k) if W is not None else None
        lams = lambda_grid(S, n, n_lambdas, ratio, shared_ratio, P)
        # each k's path starts from its own empty graph, which the default start reaches in a few iterations
        for lam, res in zip(lams, solve_path(S, n, lams, shared_ratio, P, **solver_kw)):
            score = ebic(res, S, n, gamma)
            table.append((float(k), float(lam), score, edge_count(res)))
            if best is None or score < best.ebic:
                best = Selection(res, float(lam), _shared(shared_ratio, lam), float(k), score, ())
    return Selection(best.result, best.lam_specific, best.lam_shared, best.k, best.ebic, tuple(table))
