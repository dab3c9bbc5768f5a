"""CM-GLasso's graph stage (docs/methods.md §3.3-§3.6, tests of §3.9): the joint ADMM, its sub-steps, the lambda path
and eBIC, tailored penalties and the nonparanormal transform."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from scipy.special import ndtri
from scipy.stats import kstest

from methods.cm_glasso.npn import Nonparanormal, winsor_level
from methods.cm_glasso.path import (edge_count, lambda_grid, lambda_max, select_tailored, solve_path,
                                    tailored_weights)
from methods.cm_glasso.admm import check_inputs, initial_state, positive_root, run_admm
from methods.cm_glasso.solver import (graphical_lasso, objective, omega_step, solve_joint_glasso, split_entries)

TIGHT = {"tol": 1e-11, "rtol": 1e-9, "max_iter": 5000}


def chain(p, w=0.4):
    t = np.eye(p)
    i = np.arange(p - 1)
    t[i, i + 1] = t[i + 1, i] = w
    return t


def grid(rows, cols, w=0.25):
    t = np.eye(rows * cols)
    for a in range(rows):
        for b in range(cols):
            j = a * cols + b
            if b + 1 < cols:
                t[j, j + 1] = t[j + 1, j] = w
            if a + 1 < rows:
                t[j, j + cols] = t[j + cols, j] = w
    return t


def sample_cov(theta, n, seed):
    """Sample covariance of n draws from N(0, theta^-1), by a Cholesky factor of theta (multivariate_normal
    factorises by an SVD whose signs depend on the LAPACK build, so its draws differ between machines)."""
    z = np.random.default_rng(seed).standard_normal((n, len(theta)))
    x = np.linalg.solve(np.linalg.cholesky(theta).T, z.T).T
    return np.cov(x.T, bias=True)


def support(m):
    return (np.abs(m) > 0) & ~np.eye(m.shape[-1], dtype=bool)


@pytest.fixture(scope="module")
def joint_problem():
    """K = 3 classes Theta*_k = I + Theta*_0 (a chain) + Delta*_k (two edges per class, disjoint across classes)."""
    p, k, n = 12, 3, 3000
    shared = chain(p, 0.35) - np.eye(p)
    pairs = [(0, 5), (2, 9), (1, 7), (4, 10), (3, 8), (6, 11)]
    deltas = np.zeros((k, p, p))
    for c in range(k):
        for a, b in pairs[2 * c: 2 * c + 2]:
            deltas[c, a, b] = deltas[c, b, a] = 0.35
    S = np.stack([sample_cov(np.eye(p) + shared + deltas[c], n, seed=10 + c) for c in range(k)])
    return S, np.full(k, n), shared, deltas


# --- K = 1: agreement with scikit-learn and support recovery ---------------------------------------------------------
@pytest.mark.parametrize("truth", ["chain", "grid"])
def test_single_graph_matches_sklearn_and_recovers_the_support(truth):
    from sklearn.covariance import graphical_lasso as sk_glasso

    theta = chain(20) if truth == "chain" else grid(4, 5)
    n = 5000
    S = sample_cov(theta, n, seed=1)
    alpha = 0.35
    # scikit-learn stops at enet_tol unless it is lowered with tol (docs/performance.md)
    _, sk = sk_glasso(S, alpha, tol=1e-10, enet_tol=1e-10, max_iter=1000)
    ours = graphical_lasso(S, alpha, **TIGHT)
    assert np.abs(ours - sk).max() < 1e-4
    # the same problem through the joint entry point, lam_shared -> inf, lam_specific = alpha n
    res = solve_joint_glasso(S[None], [n], math.inf, alpha * n, **TIGHT)
    assert res.converged and not res.theta0.any()
    assert np.abs(res.delta[0] - sk).max() < 1e-4
    assert np.abs(res.precision[0] - sk).max() < 1e-4
    est, true = support(ours), support(theta)
    assert (est & true).sum() == true.sum()          # TPR = 1
    # FPR ~ 0: the grid's many 4-cycles leave a spurious edge or two for some seeds at any lambda keeping TPR = 1
    assert (est & ~true).sum() / (~true & ~np.eye(len(theta), dtype=bool)).sum() <= 0.02


def test_a_large_finite_lam_shared_also_gives_the_single_graph():
    S = sample_cov(chain(10), 2000, seed=2)
    a = solve_joint_glasso(S, [2000], 1e6, 100.0, **TIGHT)
    b = solve_joint_glasso(S, [2000], math.inf, 100.0, **TIGHT)
    assert not a.theta0.any()
    np.testing.assert_allclose(a.delta, b.delta, atol=1e-7)


def test_gradient_free_sanity_a_huge_lambda_gives_the_diagonal_mle():
    S = sample_cov(chain(8), 500, seed=3)
    res = solve_joint_glasso(S[None], [500], math.inf, 1e6, **TIGHT)
    np.testing.assert_allclose(res.precision[0], np.diag(1 / np.diag(S)), atol=1e-6)
    assert edge_count(res) == 0


# --- K = 3: shared edges go to Theta_0, each class's own edges to its Delta_k ---------------------------------------
def test_joint_routes_shared_edges_to_theta0_and_specific_edges_to_their_class(joint_problem):
    S, n, shared, deltas = joint_problem
    alpha = 0.1
    res = solve_joint_glasso(S, n, 1.5 * alpha * n[0], alpha * n[0], **TIGHT)   # lam_shared = (K/2) lam_specific
    assert res.converged
    s0, true0 = support(res.theta0), support(shared)
    assert (s0 & true0).sum() == true0.sum()
    # spurious shared entries exist (sampling noise) but each is far weaker than every true one
    assert np.abs(res.theta0[s0 & ~true0]).max(initial=0) < 0.1 * np.abs(res.theta0[true0]).min()
    # the shared edges are carried by Theta_0, not repeated in the Deltas
    assert np.abs(res.delta[:, true0]).max() < 0.05 * np.abs(res.theta0[true0]).min()
    for k in range(len(S)):
        own = support(deltas[k])
        dk = np.abs(res.delta[k])
        np.fill_diagonal(dk, 0)
        # class k's own edges are in Delta_k and are its strongest off-diagonal entries by far ...
        assert dk[own].min() > 10 * dk[~own].max()
        # ... Theta_0 holds at most a trace of them, and no other class's Delta has them
        assert np.abs(res.theta0[own]).max() < 0.05 * dk[own].min()
        for j in range(len(S)):
            if j != k:
                assert np.abs(res.delta[j][own]).max() < 0.05 * dk[own].min()


def test_kkt_conditions_hold_at_the_solution(joint_problem):
    """§3.9 KKT, G_k = n_k (S_k - Theta_k^-1): zero on the diagonal; |G_k,ij| <= lam2 P_ij where Delta_k,ij = 0,
    = -lam2 P_ij sign(Delta_k,ij) elsewhere; the same for sum_k G_k with lam1 and Theta_0. Checked with a
    non-uniform P, to ~1e-4 relative."""
    S, n, _, _ = joint_problem
    p = S.shape[1]
    W = np.abs(np.random.default_rng(4).standard_normal((p, p)))
    W = (W + W.T) / 2 / W.max()
    P = tailored_weights(W, 10.0)
    lam2 = 0.05 * n[0]
    lam1 = 1.5 * lam2
    res = solve_joint_glasso(S, n, lam1, lam2, P, **TIGHT)
    assert res.converged
    theta = res.theta0[None] + res.delta
    G = n[:, None, None] * (S - np.linalg.inv(theta))
    scale = lam2 * 1e-4
    off = ~np.eye(p, dtype=bool)
    assert np.abs(np.einsum("kii->ki", G)).max() < scale
    for k in range(len(S)):
        nz = support(res.delta[k])
        assert np.abs(G[k][nz] + lam2 * P[nz] * np.sign(res.delta[k][nz])).max() < scale
        zero = off & ~nz
        assert (np.abs(G[k][zero]) <= lam2 * P[zero] + scale).all()
    g = G.sum(0)
    nz0 = support(res.theta0)
    assert nz0.any() and np.abs(g[nz0] + lam1 * P[nz0] * np.sign(res.theta0[nz0])).max() < scale
    assert (np.abs(g[off & ~nz0]) <= lam1 * P[off & ~nz0] + scale).all()


def test_objective_is_the_section_3_5_value(joint_problem):
    S, n, _, _ = joint_problem
    res = solve_joint_glasso(S, n, 300.0, 200.0)
    theta = res.theta0[None] + res.delta
    off = ~np.eye(S.shape[1], dtype=bool)
    direct = sum(n[k] * (-np.linalg.slogdet(theta[k])[1] + np.trace(S[k] @ theta[k])) for k in range(3))
    direct += 300.0 * np.abs(res.theta0[off]).sum() + 200.0 * sum(np.abs(d[off]).sum() for d in res.delta)
    assert res.objective == pytest.approx(direct, rel=1e-12)
    assert objective(S, n, res.theta0, res.delta, 300.0, 200.0) == pytest.approx(direct, rel=1e-12)


# --- tailored penalties ----------------------------------------------------------------------------------------------
def test_uniform_penalty_reduces_to_the_untailored_problem(joint_problem):
    S, n, _, _ = joint_problem
    p = S.shape[1]
    W = np.random.default_rng(5).uniform(size=(p, p))
    P0 = tailored_weights((W + W.T) / 2, 0.0)
    off = ~np.eye(p, dtype=bool)
    np.testing.assert_array_equal(P0[off], 1.0)
    plain = solve_joint_glasso(S, n, 150.0, 100.0, **TIGHT)
    for P in (P0, np.ones((p, p)), np.full((p, p), 2.0)):
        scale = P[off].mean()
        res = solve_joint_glasso(S, n, 150.0 / scale, 100.0 / scale, P, **TIGHT)
        np.testing.assert_allclose(res.theta0, plain.theta0, atol=1e-6)
        np.testing.assert_allclose(res.delta, plain.delta, atol=1e-6)


def test_tailored_weights_penalise_prior_edges_less():
    W = np.array([[0, 0.9, 0.1], [0.9, 0, 0.5], [0.1, 0.5, 0]])
    P = tailored_weights(W, 20.0)
    assert np.diag(P).tolist() == [0, 0, 0] and np.allclose(P, P.T)
    assert P[0, 1] < P[1, 2] < P[0, 2]
    assert P[~np.eye(3, dtype=bool)].mean() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="steepness"):
        tailored_weights(W, -1.0)


def test_an_informative_prior_helps_and_ebic_selects_k_and_lambda():
    """P from the true graph (W = 1 on its edges) lets eBIC pick a k > 0 whose graph is the truth."""
    theta = chain(15, 0.3)
    S = sample_cov(theta, 300, seed=6)
    W = support(theta).astype(float)
    sel = select_tailored(S[None], [300], W, k_grid=(0.0, 20.0), n_lambdas=8, ratio=0.1)
    assert sel.k == 20.0
    est = support(sel.result.theta0 + sel.result.delta[0])
    assert (est == support(theta)).all()
    assert len(sel.table) == 16 and sel.ebic == min(row[2] for row in sel.table)


# --- the lambda path -------------------------------------------------------------------------------------------------
def test_lambda_max_gives_the_empty_graph_and_the_path_warm_start_saves_iterations(joint_problem):
    S, n, _, _ = joint_problem
    top = lambda_max(S, n, 1.5)
    assert edge_count(solve_joint_glasso(S, n, 1.5 * top * 1.001, top * 1.001)) == 0
    assert edge_count(solve_joint_glasso(S, n, 1.5 * top * 0.9, top * 0.9)) > 0
    lams = lambda_grid(S, n, 8, 0.1, 1.5)
    assert lams[0] == pytest.approx(top) and np.all(np.diff(lams) < 0)
    path = solve_path(S, n, lams, 1.5, rtol=1e-6)
    cold = [solve_joint_glasso(S, n, 1.5 * lam, lam, rtol=1e-6) for lam in lams]
    assert all(r.converged for r in path + cold)
    # a linearly convergent method saves only the log of the smaller initial error: fewer iterations, not many fewer
    assert sum(r.n_iter for r in path) < sum(r.n_iter for r in cold)
    for w, c in zip(path, cold):
        assert w.objective == pytest.approx(c.objective, rel=1e-6)
    assert [edge_count(r) for r in path] == sorted(edge_count(r) for r in path)   # denser as lambda falls


# --- the sub-steps ---------------------------------------------------------------------------------------------------
def test_omega_step_identity_and_positive_definite():
    rng = np.random.default_rng(7)
    p, k = 9, 3
    A = rng.standard_normal((k, p, p))
    A = torch.from_numpy((A + A.transpose(0, 2, 1)) * 3)     # indefinite, strongly negative eigenvalues included
    X = rng.standard_normal((k, 40, p))
    S = torch.from_numpy(np.einsum("kni,knj->kij", X, X) / 40)
    n = torch.tensor([40.0, 400.0, 0.5], dtype=torch.float64)
    for rho in (0.01, 1.0, 50.0):
        om = omega_step(A, S, n, rho)
        assert torch.linalg.eigvalsh(om).min() > 0
        lhs = rho * om - n[:, None, None] * torch.linalg.inv(om)
        rhs = rho * A - n[:, None, None] * S
        assert (lhs - rhs).abs().max() < 1e-8 * max(1.0, float(rhs.abs().max()))


def test_positive_root_is_accurate_for_eigenvalues_of_either_sign():
    # the textbook (d + sqrt(d^2 + 4c)) / 2 returns 0 at d = -1e8, c = 1 (cancellation); the root is c / |d| there
    d = torch.tensor([-1e12, -1e8, -3.0, -1e-9, 0.0, 1e-9, 3.0, 1e8, 1e12], dtype=torch.float64)
    for c in (1e-6, 1.0, 1e6):
        theta = positive_root(d, torch.tensor(2.0 * c, dtype=torch.float64),
                              torch.tensor(2.0 * math.sqrt(c), dtype=torch.float64))
        assert (theta > 0).all()
        # theta^2 - d theta - c = 0 written as theta - d = c / theta, checked relative to its larger side
        residual = (theta - d - c / theta).abs() / torch.maximum(theta.abs() + d.abs(), c / theta)
        assert residual.max() < 1e-14, (c, residual)


def test_residual_checks_every_m_iterations_reach_the_same_solution(joint_problem):
    S, n, _, _ = joint_problem
    prob = check_inputs(S, n, 150.0, 100.0)
    every, sparse = (run_admm(prob, initial_state(prob, 1.0), 1e-11, 1e-9, 5000, check_every=m) for m in (1, 4))
    assert every[1]["converged"] and sparse[1]["converged"]
    assert sparse[1]["n_iter"] % 4 == 0          # converged at a check: the iterations actually run are counted
    np.testing.assert_allclose(sparse[0].omega.numpy(), every[0].omega.numpy(), atol=1e-6)
    cut = run_admm(prob, initial_state(prob, 1.0), 1e-11, 1e-9, 6, check_every=4)[1]
    assert cut["n_iter"] == 6 and not cut["converged"] and math.isfinite(cut["r"])   # max_iter is always checked


def _entry_objective(t, c, a, b):
    d = np.sign(c - t) * np.maximum(np.abs(c - t) - b, 0)
    shared = a * abs(t) if t != 0 else 0.0          # a may be inf; inf * 0 is 0 here
    return shared + b * np.abs(d).sum() + 0.5 * ((c - t - d) ** 2).sum()


def test_split_entries_is_the_exact_minimiser():
    rng = np.random.default_rng(8)
    k, e = 4, 300
    c = rng.standard_normal((k, e)) * 2 + rng.standard_normal(e) * 2
    a = rng.uniform(0, 3, e)
    b = rng.uniform(0, 1.5, e)
    a[:10] = np.inf
    b[10:20] = 0.0
    t, d = split_entries(torch.from_numpy(c), torch.from_numpy(a), torch.from_numpy(b))
    t, d = t.numpy(), d.numpy()
    assert (t[:10] == 0).all()
    np.testing.assert_allclose(d, np.sign(c - t) * np.maximum(np.abs(c - t) - b, 0), atol=1e-12)
    moved = 0
    for j in range(10, e):   # the first 10 (a = inf) are pinned at t = 0 above
        ours = _entry_objective(t[j], c[:, j], a[j], b[j])
        lo, hi = min(c[:, j].min(), 0) - 1, max(c[:, j].max(), 0) + 1
        ref = minimize_scalar(lambda s: _entry_objective(s, c[:, j], a[j], b[j]), bounds=(lo, hi),
                              method="bounded", options={"xatol": 1e-12})
        assert ours <= min(ref.fun, _entry_objective(0.0, c[:, j], a[j], b[j])) + 1e-9
        moved += t[j] != 0
    assert 30 < moved < e - 30     # both branches are exercised


# --- input checking and non-convergence ----------------------------------------------------------------------------
def _good():
    S = np.stack([np.eye(4), 2 * np.eye(4)])
    return S, np.array([10.0, 20.0])


@pytest.mark.parametrize("change, message", [
    (lambda S, n, kw: (S + np.triu(np.ones(4), 1)[None], n, kw), "S\\[0\\] is not symmetric"),
    (lambda S, n, kw: (S - 3 * np.eye(4)[None], n, kw), "S\\[0\\] is not positive semi-definite"),
    (lambda S, n, kw: (S, n, {**kw, "lam_shared": -1.0}), "lam_shared must be a number >= 0"),
    (lambda S, n, kw: (S, n, {**kw, "lam_specific": -0.5}), "lam_specific must be a number >= 0"),
    (lambda S, n, kw: (S, n, {**kw, "lam_specific": float("nan")}), "lam_specific must be a number >= 0"),
    (lambda S, n, kw: (S, np.array([10.0, 0.0]), kw), "sample counts n must be finite and > 0"),
    (lambda S, n, kw: (S, np.array([10.0, -3.0]), kw), "sample counts n must be finite and > 0"),
    (lambda S, n, kw: (S, np.array([10.0]), kw), "one sample count per class"),
    (lambda S, n, kw: (S[:0], n[:0], kw), "K = 0"),
    (lambda S, n, kw: (np.where(np.eye(4, dtype=bool)[None], np.nan, S), n, kw), "NaN"),
    (lambda S, n, kw: (S[:, :3], n, kw), "shape \\[K, p, p\\]"),
    (lambda S, n, kw: (S, n, {**kw, "weights": -np.ones((4, 4))}), "weights must be finite and >= 0"),
    (lambda S, n, kw: (S, n, {**kw, "weights": np.ones((3, 3))}), "weights must have shape"),
    (lambda S, n, kw: (S, n, {**kw, "max_iter": 0}), "max_iter"),
    (lambda S, n, kw: (S, n, {**kw, "rho": 0.0}), "rho must be"),
])
def test_bad_input_raises_one_clear_error(change, message):
    S, n = _good()
    S, n, kw = change(S, n, {"lam_shared": 1.0, "lam_specific": 1.0})
    with pytest.raises(ValueError, match=message) as err:
        solve_joint_glasso(S, n, **kw)
    assert str(err.value).startswith("solve_joint_glasso: ")


def test_non_convergence_is_reported_with_residuals(joint_problem):
    S, n, _, _ = joint_problem
    res = solve_joint_glasso(S, n, 150.0, 100.0, max_iter=3, tol=1e-12, rtol=1e-10)
    assert not res.converged and res.n_iter == 3
    assert res.primal_residual > res.eps_primal or res.dual_residual > res.eps_dual
    assert math.isfinite(res.primal_residual) and math.isfinite(res.dual_residual)
    done = solve_joint_glasso(S, n, 150.0, 100.0, warm_start=res, tol=1e-12, rtol=1e-10)
    assert done.converged and done.primal_residual <= done.eps_primal and done.dual_residual <= done.eps_dual


def test_plain_section_3_6_rule_reaches_the_same_solution(joint_problem):
    S, n, _, _ = joint_problem
    fast = solve_joint_glasso(S, n, 150.0, 100.0, **TIGHT)
    plain = solve_joint_glasso(S, n, 150.0, 100.0, relax=1.0, balance="absolute", **TIGHT)
    assert fast.converged and plain.converged
    np.testing.assert_allclose(fast.precision, plain.precision, atol=1e-6)
    assert fast.objective == pytest.approx(plain.objective, rel=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_same_solve_on_the_gpu(joint_problem):
    S, n, _, _ = joint_problem
    cpu = solve_joint_glasso(S, n, 150.0, 100.0, **TIGHT)
    gpu = solve_joint_glasso(torch.from_numpy(S).cuda(), n, 150.0, 100.0, **TIGHT)
    np.testing.assert_allclose(gpu.precision, cpu.precision, atol=1e-6)


# --- the nonparanormal transform -------------------------------------------------------------------------------------
def test_npn_is_monotone_and_maps_a_uniform_sample_to_normal_quantiles():
    rng = np.random.default_rng(9)
    n = 4000
    train = rng.uniform(size=(n, 2))
    train[:, 1] = np.exp(3 * train[:, 0])          # a monotone distortion of column 0: the same normal scores
    npn = Nonparanormal.fit(train)
    grid_u = np.linspace(-0.5, 1.5, 2001)
    out = npn.transform(np.column_stack([grid_u, np.exp(3 * grid_u)]))
    assert (np.diff(out, axis=0) >= 0).all()
    inside = (grid_u > 0.05) & (grid_u < 0.95)
    np.testing.assert_allclose(out[inside, 0], ndtri(grid_u[inside]), atol=0.06)
    # at the knots the maps agree exactly; between them each interpolates in its own scale
    np.testing.assert_allclose(npn.transform(train)[:, 0], npn.transform(train)[:, 1], atol=1e-12)
    delta = winsor_level(n)
    assert out.max() == pytest.approx(ndtri(1 - delta)) and out.min() == pytest.approx(ndtri(delta))
    fresh = npn.transform(rng.uniform(size=(n, 2)))
    assert kstest(fresh[:, 0], "norm").statistic < 0.04
    q = np.sort(fresh[:, 0])
    mid = slice(n // 20, n - n // 20)
    np.testing.assert_allclose(q[mid], ndtri((np.arange(1, n + 1)[mid] - 0.5) / n), atol=0.08)


def test_npn_keeps_nan_and_refuses_bad_fits():
    npn = Nonparanormal.fit(np.arange(20.0).reshape(10, 2))
    out = npn.transform(np.array([[np.nan, 3.0]]))
    assert np.isnan(out[0, 0]) and np.isfinite(out[0, 1])
    with pytest.raises(ValueError, match="NaN"):
        Nonparanormal.fit(np.array([[np.nan], [1.0]]))
    with pytest.raises(ValueError, match="at least 2"):
        Nonparanormal.fit(np.zeros((1, 3)))
