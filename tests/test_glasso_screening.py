"""Exact screening for the joint graphical lasso (docs/methods.md §3.10): the screened solve equals the unscreened
one (objective and support) and satisfies the whole problem's KKT conditions, single solves and lambda paths."""

import math

import numpy as np
import pytest

from methods.cm_glasso.path import lambda_grid, lambda_max, solve_path
from methods.cm_glasso.screening import components, plan_blocks, screening_graph
from methods.cm_glasso.solver import solve_joint_glasso

TIGHT = {"tol": 1e-11, "rtol": 1e-9, "max_iter": 5000}
SUPPORT_AT = 1e-6


def clustered(p, k, n, sizes, seed, link=0.45):
    """S [k, p, p], n [k]: clusters of the given sizes, each a chain (shared) plus one class-specific edge, and
    nothing between clusters, so the screening graph has many blocks at moderate lambdas."""
    rng = np.random.default_rng(seed)
    bounds = np.cumsum([0, *sizes])
    assert bounds[-1] == p
    base = np.zeros((p, p))
    for a, b in zip(bounds[:-1], bounds[1:]):
        for i in range(a, b - 1):
            base[i, i + 1] = link * rng.choice([-1, 1])
    covs = []
    for _ in range(k):
        w = base.copy()
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b - a > 2:
                i, j = sorted(rng.choice(np.arange(a, b), 2, replace=False))
                w[i, j] = w[i, j] or 0.3
        w = w + w.T
        theta = w + (0.5 - np.linalg.eigvalsh(w)[0]) * np.eye(p)
        z = rng.standard_normal((n, p))
        x = np.linalg.solve(np.linalg.cholesky(theta).T, z.T).T
        covs.append(np.cov(x.T, bias=True))
    return np.stack(covs), np.full(k, float(n))


def random_weights(p, seed, zeros=0):
    """Symmetric P in [0.5, 1.5] with ``zeros`` unpenalised pairs."""
    rng = np.random.default_rng(seed)
    P = rng.uniform(0.5, 1.5, (p, p))
    P = (P + P.T) / 2
    for _ in range(zeros):
        i, j = rng.choice(p, 2, replace=False)
        P[i, j] = P[j, i] = 0.0
    np.fill_diagonal(P, 0.0)
    return P


def support(m):
    return (np.abs(m) > SUPPORT_AT) & ~np.eye(m.shape[-1], dtype=bool)


def kkt_violation(res, S, n, lam_shared, lam_specific, P=None) -> float:
    """Largest violation of the §3.9 KKT conditions of the whole problem, relative to lam_specific."""
    p = S.shape[-1]
    P = np.ones((p, p)) if P is None else P
    off = ~np.eye(p, dtype=bool)
    G = n[:, None, None] * (S - np.linalg.inv(res.theta0[None] + res.delta))
    worst = [np.abs(np.einsum("kii->ki", G)).max()]
    for k in range(len(S)):
        nz = support(res.delta[k])
        worst.append(np.abs(G[k][nz] + lam_specific * P[nz] * np.sign(res.delta[k][nz])).max(initial=0.0))
        worst.append((np.abs(G[k][off & ~nz]) - lam_specific * P[off & ~nz]).max(initial=0.0))
    if math.isfinite(lam_shared):
        g, nz = G.sum(0), support(res.theta0)
        worst.append(np.abs(g[nz] + lam_shared * P[nz] * np.sign(res.theta0[nz])).max(initial=0.0))
        worst.append((np.abs(g[off & ~nz]) - lam_shared * P[off & ~nz]).max(initial=0.0))
    return max(worst) / lam_specific


def assert_same_solution(screened, plain):
    assert screened.converged and plain.converged
    assert screened.objective == pytest.approx(plain.objective, rel=1e-10)
    assert (support(screened.theta0) == support(plain.theta0)).all()
    assert (support(screened.delta) == support(plain.delta)).all()
    for name in ("theta0", "delta", "precision"):
        assert getattr(screened, name).shape == getattr(plain, name).shape
    np.testing.assert_allclose(screened.precision, plain.precision, atol=1e-6)


def n_blocks(S, n, lam_shared, lam_specific, P=None):
    return [len(b) for b in components(screening_graph(S, n, lam_shared, lam_specific, P))]


# --- the rule --------------------------------------------------------------------------------------------------------
def test_screening_graph_is_the_kkt_rule_and_joins_unpenalised_pairs():
    S, n = clustered(8, 3, 200, [4, 4], seed=0)
    P = random_weights(8, seed=1, zeros=1)
    lam2, lam1 = 30.0, 45.0
    edges = screening_graph(S, n, lam1, lam2, P)
    G = n[:, None, None] * S
    expected = (np.abs(G) > lam2 * P).any(0) | (np.abs(G.sum(0)) > lam1 * P) | (P == 0)
    np.fill_diagonal(expected, False)
    assert (edges == expected).all() and (edges == edges.T).all()
    i, j = np.argwhere(np.triu(P == 0, 1))[0]
    S[:, i, j] = S[:, j, i] = 0.0
    assert screening_graph(S, n, lam1, lam2, P)[i, j]   # unpenalised: always joined, even where S_ij = 0
    # lam_shared = inf: only the specific condition, taken over the classes
    single = screening_graph(S, n, math.inf, lam2, P)
    assert (single == ((np.abs(G) > lam2 * P).any(0) | (P == 0)) & ~np.eye(8, dtype=bool)).all()


def test_components_and_plan_batch_equal_blocks_and_keep_singletons():
    edges = np.zeros((7, 7), dtype=bool)
    for a, b in ((0, 1), (2, 3), (4, 5)):
        edges[a, b] = edges[b, a] = True
    blocks = components(edges)
    assert [b.tolist() for b in blocks] == [[0, 1], [2, 3], [4, 5], [6]]
    diag = np.ones((2, 7))
    diag[1, 6] = 0.0   # a variable with S_ii = 0 has no closed form: it goes to the ADMM
    plan = plan_blocks(blocks, diag)
    assert plan.singletons.tolist() == [] and [g.shape for g in plan.groups] == [(1, 1), (3, 2)]
    plan = plan_blocks(blocks, np.ones((2, 7)), batch_max_p=1)
    assert plan.singletons.tolist() == [6] and [g.shape for g in plan.groups] == [(1, 2)] * 3


# --- screened == unscreened ------------------------------------------------------------------------------------------
CASES = {
    # name: (K, sizes, fraction of lambda_max, shared ratio, weights: None or number of unpenalised pairs)
    "K1": (1, [5, 5, 6, 4, 4], 0.5, math.inf, None),
    "K3": (3, [5, 5, 6, 4, 4], 0.45, 1.5, None),
    "K3-weights": (3, [5, 5, 6, 4, 4], 0.45, 1.5, 2),
    "K1-weights": (1, [6, 6, 6, 6], 0.5, math.inf, 0),
    "K3-decoupled": (3, [4, 4, 4, 4, 4, 4], 0.5, 4.0, None),        # lam_shared >= K lam_specific
    "K3-single-block": (3, [8, 8, 8], 0.08, 1.5, None),
    "K3-many-singletons": (3, [4, 4, 4, 4, 4, 4], 0.85, 1.5, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_screened_solution_equals_unscreened_and_satisfies_the_kkt_conditions(case):
    k, sizes, frac, ratio, weights = CASES[case]
    p = sum(sizes)
    S, n = clustered(p, k, 300, sizes, seed=len(case))
    P = None if weights is None else random_weights(p, seed=7, zeros=weights)
    lam2 = frac * lambda_max(S, n, ratio, P)
    lam1 = ratio * lam2
    blocks = n_blocks(S, n, lam1, lam2, P)
    if case.endswith("single-block"):
        assert blocks == [p]
    elif case.endswith("many-singletons"):
        assert blocks.count(1) >= p // 2 and len(blocks) < p
    else:
        assert 1 < len(blocks) < p and max(blocks) < p
    screened = solve_joint_glasso(S, n, lam1, lam2, P, **TIGHT)
    plain = solve_joint_glasso(S, n, lam1, lam2, P, screen=False, **TIGHT)
    assert_same_solution(screened, plain)
    assert kkt_violation(screened, S, n, lam1, lam2, P) < 1e-6
    if ratio >= k:
        assert not screened.theta0.any()


@pytest.mark.parametrize("p", [1, 2, 9, 40, 300])
def test_dense_and_sparse_components_agree(p, monkeypatch):
    """The dense labelling (small p) and scipy's sparse one give the same blocks: random graphs of several
    densities, a shuffled chain (the longest path, most rounds), no edge and every edge."""
    import methods.cm_glasso.screening as screening

    rng = np.random.default_rng(p)
    graphs = []
    for density in (0.0, 0.5 / max(p, 1), 2.0 / max(p, 1), 1.0):
        e = rng.random((p, p)) < density
        graphs.append(e | e.T)
    chain = np.zeros((p, p), dtype=bool)
    order = rng.permutation(p)
    chain[order[:-1], order[1:]] = True
    graphs.append(chain | chain.T)
    for e in graphs:
        np.fill_diagonal(e, False)
        monkeypatch.setattr(screening, "DENSE_COMPONENTS_MAX_P", 10**6)
        dense = [b.tolist() for b in components(e)]
        monkeypatch.setattr(screening, "DENSE_COMPONENTS_MAX_P", 0)
        sparse = [b.tolist() for b in components(e)]
        assert dense == sparse and sorted(sum(dense, [])) == list(range(p))
    assert len(components(graphs[-1])) == 1 and len(components(graphs[0])) == p


def test_blocks_of_equal_size_are_batched_and_singletons_are_closed_form():
    S, n = clustered(24, 3, 300, [4] * 6, seed=3)
    lam2 = 0.7 * lambda_max(S, n, 1.5)
    blocks = n_blocks(S, n, 1.5 * lam2, lam2)
    sizes = [b for b in blocks if b > 1]
    assert len(sizes) > len(set(sizes)), "the case must have equal-size blocks to batch"
    res = solve_joint_glasso(S, n, 1.5 * lam2, lam2, **TIGHT)
    plain = solve_joint_glasso(S, n, 1.5 * lam2, lam2, screen=False, **TIGHT)
    assert_same_solution(res, plain)
    single = [b[0] for b in components(screening_graph(S, n, 1.5 * lam2, lam2)) if len(b) == 1]
    assert single, "the case must have isolated variables"
    for i in single:
        assert (res.precision[:, i, i] == 1.0 / S[:, i, i]).all()
        assert (res.delta[:, i, i] == 1.0 / S[:, i, i]).all() and res.theta0[i, i] == 0.0


def test_the_assembled_state_is_an_admm_fixed_point_of_the_whole_problem():
    """Between blocks the assembled scaled dual is the exact one, so the unscreened ADMM started there stops at
    once (a dual left at 0 there would take it many iterations back)."""
    S, n = clustered(24, 3, 300, [5, 5, 6, 4, 4], seed=5)
    lam2 = 0.45 * lambda_max(S, n, 1.5)
    res = solve_joint_glasso(S, n, 1.5 * lam2, lam2, **TIGHT)
    again = solve_joint_glasso(S, n, 1.5 * lam2, lam2, screen=False, warm_start=res, **TIGHT)
    assert again.converged and again.n_iter <= 3
    assert again.objective == pytest.approx(res.objective, rel=1e-12)


def test_max_iter_is_reported_per_block():
    S, n = clustered(24, 3, 300, [5, 5, 6, 4, 4], seed=6)
    lam2 = 0.45 * lambda_max(S, n, 1.5)
    res = solve_joint_glasso(S, n, 1.5 * lam2, lam2, max_iter=2, tol=1e-12, rtol=1e-10)
    assert not res.converged and res.n_iter == 2
    assert res.primal_residual > res.eps_primal or res.dual_residual > res.eps_dual


# --- the path --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3])
def test_screened_path_equals_unscreened_path_at_every_lambda(k):
    S, n = clustered(24, k, 300, [6, 6, 4, 4, 4], seed=11 + k)
    lams = lambda_grid(S, n, 6, 0.08)
    ratio = math.inf if k == 1 else 1.5
    blocks = [len(n_blocks(S, n, ratio * lam, lam)) for lam in lams]
    assert blocks[0] == 24 and blocks[-1] < blocks[len(blocks) // 2] < 24   # blocks merge along the path
    assert blocks[-2:] == [1, 1]   # and the path ends in one block: from blocks into the whole, then whole to whole
    screened = solve_path(S, n, lams, **TIGHT)
    plain = solve_path(S, n, lams, screen=False, **TIGHT)
    for lam, a, b in zip(lams, screened, plain):
        assert_same_solution(a, b)
        assert kkt_violation(a, S, n, ratio * lam, lam) < 1e-6
