"""Exact screening for the joint common-specific graphical lasso (docs/methods.md §3.10).

The rule. Write f(Theta_0, Delta) for the §3.5 objective and G_k = n_k (S_k - Omega_k^-1), Omega_k = Theta_0 + Delta_k,
for the gradient of its smooth part in class k. Every off-diagonal pair (i, j) enters the penalty twice (as (i, j) and
(j, i)) and the smooth part twice (S and Omega are symmetric), so the factor 2 cancels and the KKT conditions per
pair are those of §3.9: Delta_k,ij = 0 is optimal iff |G_k,ij| <= lam_specific P_ij, Theta_0,ij = 0 iff
|sum_k G_k,ij| <= lam_shared P_ij; on the diagonal G_k,ii = 0 (Delta_k,ii is unpenalised, Theta_0,ii is fixed at 0).

Take a partition of the p variables into blocks and the point made of each block's own solution (the §3.5 problem
restricted to the block's rows and columns), zero between blocks. Each Omega_k is then block-diagonal, so is its
inverse, and for a pair (i, j) in different blocks G_k,ij = n_k S_k,ij. Inside a block the KKT conditions hold
because the block's inverse is the block of the inverse. Between blocks they hold iff, for every such pair,

    |n_k S_k,ij| <= lam_specific P_ij  for every k     and     |sum_k n_k S_k,ij| <= lam_shared P_ij.

The objective is convex, so a KKT point is a minimiser; it is strictly convex in Omega (-logdet), so Omega_k is
the unique solution, and the assembly is the solution of the whole problem, not an approximation. The finest
partition with this property: join i and j whenever one of the two inequalities fails (an edge of the *screening
graph*); the blocks are the connected components. A pair with P_ij = 0 is unpenalised and always joined (the
inequalities would need S_ij = 0 exactly). The thresholds are compared in the solver's per-sample units,
|w_k S_k,ij| against lam P_ij / N with w_k = n_k / N, the same numbers the ADMM thresholds with. When
lam_shared >= K lam_specific the second inequality follows from the first (|sum_k x_k| <= sum_k |x_k|), and with
lam_shared = inf it is void: the rule is then the K graphical lassos' rule |S_k,ij| > alpha (Witten, Friedman &
Simon 2011; Mazumder & Hastie 2012) taken over k. As lambda falls with lam_shared / lam_specific fixed the screening
graph only gains edges, so blocks only merge along a path.

A block of one variable i has no off-diagonal entry: Theta_0,ii = 0 and min n_k (-log w + S_k,ii w) gives
Omega_k,ii = Delta_k,ii = 1 / S_k,ii (closed form; a variable with S_k,ii = 0 has no minimiser and goes to the ADMM,
as it would unscreened).

How it is solved: blocks of one size up to ``BATCH_MAX_P`` are stacked into one [K, B, b, b] problem that
:func:`~methods.cm_glasso.admm.run_admm` iterates as one (one batched eigendecomposition, one rho and one stopping
rule for the stack: the ADMM of the block-diagonal problem on those variables); larger blocks are solved one by
one, where a stack would make every block wait for the slowest. The assembled state is an ADMM state of the whole
problem: between blocks its scaled dual is the exact optimal dual, -w_k S_k,ij / rho (the Omega-step's optimality
rho U = w (Omega^-1 - S) at Omega^-1 = 0), so a warm start (the next lambda of a path) restricts it to each new
block, and each node remembers its block's rho.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from methods.cm_glasso.admm import DTYPE, AdmmState, _mirror_upper, _predict, _Problem, check_inputs, run_admm

# Stacking saves each extra block's per-iteration Python and dispatch cost: on the p = 500, K = 3 path of perf_path.py
# (mostly blocks under 40 variables) the path took 2.2-2.4 s stacked against 2.6-3.8 s block by block. Large blocks
# stay apart: their eigendecomposition outweighs that overhead, and a stack iterates until its slowest block stops.
BATCH_MAX_P = 64


# --- the rule ------------------------------------------------------------------------------------------------------
def screening_edges(prob: _Problem) -> np.ndarray:
    """The screening graph [p, p] bool (symmetric, empty diagonal): pairs whose zero would violate the KKT conditions
    at a block-diagonal point, plus the unpenalised pairs (P_ij = 0)."""
    ws = (prob.w.view(-1, 1, 1) * prob.S).cpu().numpy()
    pen0, pen1, P = prob.pen0.cpu().numpy(), prob.pen1.cpu().numpy(), prob.P.cpu().numpy()
    edges = (np.abs(ws) > pen1).any(0) | (np.abs(ws.sum(0)) > pen0) | (P == 0)
    np.fill_diagonal(edges, False)
    return edges


def screening_graph(S, n, lam_shared: float, lam_specific: float, weights=None) -> np.ndarray:
    """:func:`screening_edges` for raw inputs (validated as by ``solve_joint_glasso``)."""
    return screening_edges(check_inputs(S, n, lam_shared, lam_specific, weights))


# Up to this many variables the components are labelled on the dense matrix (:func:`_dense_labels`): scipy's sparse
# conversion alone costs 0.15-0.2 ms, as much as a p = 30 solve's iteration or two, where the dense labelling takes
# 0.04 ms (p = 30) to 0.08 ms (p = 100); at p = 500 the two are about even and beyond it the sparse graph wins.
DENSE_COMPONENTS_MAX_P = 256


def components(edges: np.ndarray) -> list[np.ndarray]:
    """The connected components of a boolean adjacency matrix, each a sorted index array, ordered by first index."""
    if len(edges) <= DENSE_COMPONENTS_MAX_P:
        labels = _dense_labels(edges)
    else:
        labels = connected_components(csr_matrix(edges), directed=False)[1]
    found, labels = np.unique(labels, return_inverse=True)
    n_comp = len(found)
    order = np.argsort(labels, kind="stable")
    cuts = np.cumsum(np.bincount(labels, minlength=n_comp))[:-1]
    blocks = np.split(order, cuts)
    return sorted(blocks, key=lambda b: int(b[0]))


def _dense_labels(edges: np.ndarray) -> np.ndarray:
    """A label per variable, equal within a connected component and different between components: each variable
    takes the smallest label among itself and its neighbours, then the label of that label (pointer jumping),
    until nothing changes: a label travels at least one edge per round, so at most diameter + 1 rounds, and the
    jumps make it far fewer on long chains."""
    p = len(edges)
    reach = edges | np.eye(p, dtype=bool)
    labels = np.arange(p)
    while True:
        new = np.where(reach, labels, p).min(1)
        new = new[new]
        if np.array_equal(new, labels):
            return labels
        labels = new


@dataclass(frozen=True)
class Plan:
    """How one screened solve splits: singletons in closed form, the rest in groups of equal-size blocks."""

    singletons: np.ndarray          # [s] variables solved in closed form
    groups: tuple[np.ndarray, ...]  # each [B, b]: B blocks of b variables solved by one ADMM run


def plan_blocks(blocks: list[np.ndarray], S_diag: np.ndarray, batch_max_p: int = BATCH_MAX_P) -> Plan:
    """Singletons with S_k,ii > 0 for every k go to the closed form; blocks of one size <= batch_max_p are stacked;
    S_diag: [K, p]."""
    closed = [len(b) == 1 and bool((S_diag[:, b[0]] > 0).all()) for b in blocks]
    single = [int(b[0]) for b, c in zip(blocks, closed) if c]
    rest = [b for b, c in zip(blocks, closed) if not c]
    by_size: dict[int, list[np.ndarray]] = {}
    for b in rest:
        by_size.setdefault(len(b), []).append(b)
    groups = []
    for size in sorted(by_size):
        if size <= batch_max_p:
            groups.append(np.stack(by_size[size]))
        else:
            groups += [b[None] for b in by_size[size]]
    return Plan(np.asarray(single, dtype=np.int64), tuple(groups))


# --- restriction to blocks and assembly ------------------------------------------------------------------------------
def _index(idx: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) that gather the [B, b, b] blocks of a [..., p, p] tensor (B = 1 squeezed away)."""
    t = torch.as_tensor(idx, device=device)
    if len(idx) == 1:
        t = t[0]
    return t.unsqueeze(-1), t.unsqueeze(-2)


def block_problem(prob: _Problem, idx: np.ndarray) -> _Problem:
    """The §3.5 problem on the blocks idx [B, b]: S [K, B, b, b] (or [K, b, b] when B = 1), its penalties and flags."""
    rows, cols = _index(idx, prob.S.device)
    S, P = prob.S[:, rows, cols], prob.P[rows, cols]
    pen0, pen1 = prob.pen0[rows, cols], prob.pen1[rows, cols]
    b = idx.shape[1]
    upper = torch.ones(b, b, dtype=torch.bool, device=P.device).triu(1).expand(P.shape).reshape(-1)
    off = ~torch.eye(b, dtype=torch.bool, device=P.device).expand(P.shape)
    decoupled = bool((pen0[off] >= prob.k * pen1[off]).all()) if b > 1 else True
    return replace(prob, S=S, P=P, upper=upper, pen0=pen0, pen1=pen1, decoupled=decoupled)


def _block_rho(node_rho: torch.Tensor | None, idx: np.ndarray, default: float) -> float:
    """The rho a block starts with: the geometric mean of its nodes' previous block rhos (closed-form nodes have
    none)."""
    if node_rho is None:
        return default
    r = node_rho[torch.as_tensor(idx.reshape(-1), device=node_rho.device)]
    r = r[torch.isfinite(r)]
    return float(torch.exp(torch.log(r).mean())) if r.numel() else default


def restrict_state(state: AdmmState, idx: np.ndarray) -> AdmmState:
    """A whole-problem ADMM state restricted to the blocks idx [B, b]; the unscaled dual rho U is kept, so U is
    rescaled to the block's starting rho."""
    rows, cols = _index(idx, state.u.device)
    rho = _block_rho(state.node_rho, idx, state.rho)
    u = state.u[:, rows, cols] * (state.rho / rho)
    return AdmmState(state.omega[:, rows, cols], state.theta0[rows, cols], state.delta[:, rows, cols], u, rho)


@dataclass
class _Assembly:
    """The whole-problem state being filled in block by block."""

    omega: torch.Tensor
    theta0: torch.Tensor
    delta: torch.Tensor
    y: torch.Tensor          # unscaled dual rho U, per-sample units
    node_rho: torch.Tensor


def _empty_assembly(prob: _Problem) -> _Assembly:
    p, dev = prob.p, prob.S.device
    zeros = torch.zeros(prob.k, p, p, dtype=DTYPE, device=dev)
    # between blocks the optimal dual is -w_k S_k,ij (rho U = w (Omega^-1 - S), Omega^-1 = 0 there)
    y = -(prob.w.view(-1, 1, 1) * prob.S)
    return _Assembly(zeros, torch.zeros(p, p, dtype=DTYPE, device=dev), zeros.clone(), y,
                     torch.full((p,), math.nan, dtype=DTYPE, device=dev))


def _put_singletons(a: _Assembly, prob: _Problem, nodes: np.ndarray) -> None:
    """Omega_k,ii = Delta_k,ii = 1 / S_k,ii, Theta_0,ii = 0 and a zero dual (the diagonal gradient vanishes)."""
    if not len(nodes):
        return
    i = torch.as_tensor(nodes, device=prob.S.device)
    inv = 1.0 / prob.S[:, i, i]
    a.omega[:, i, i] = inv
    a.delta[:, i, i] = inv
    a.y[:, i, i] = 0.0


def _group_objective(prob: _Problem, theta0: torch.Tensor, delta: torch.Tensor) -> float:
    """The §3.5 objective restricted to a group's blocks (the sum over its blocks); inf if some Theta_k is not PD.
    The whole objective at a block-diagonal point is the sum of its blocks' (log det and trace split by block)."""
    theta = theta0.unsqueeze(0) + delta
    chol, bad = torch.linalg.cholesky_ex(theta)
    if bool((bad != 0).any()):
        return math.inf
    k = prob.k
    logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).reshape(k, -1).sum(1)
    trace = (prob.S * theta).reshape(k, -1).sum(1)
    n = torch.as_tensor(prob.n, dtype=DTYPE, device=theta.device)
    # pen = lam P / N (zero diagonal); lam_shared may be inf where Theta_0 = 0, and inf * 0 must stay 0
    shared = torch.where(theta0 != 0, prob.pen0 * theta0.abs(), torch.zeros_like(theta0))
    pen = float((prob.pen1 * delta.abs()).sum() + shared.sum()) * float(prob.n.sum())
    return float((n * (trace - logdet)).sum()) + pen


def _singleton_objective(prob: _Problem, nodes: np.ndarray) -> float:
    """sum_k n_k (-log(1 / S_k,ii) + S_k,ii / S_k,ii) over the closed-form variables."""
    if not len(nodes):
        return 0.0
    d = torch.diagonal(prob.S, dim1=1, dim2=2)[:, torch.as_tensor(nodes, device=prob.S.device)]
    n = torch.as_tensor(prob.n, dtype=DTYPE, device=d.device)
    return float((n * (torch.log(d) + 1.0).sum(1)).sum())


def _put_group(a: _Assembly, idx: np.ndarray, state: AdmmState) -> None:
    rows, cols = _index(idx, a.y.device)
    a.omega[:, rows, cols] = state.omega
    a.theta0[rows, cols] = state.theta0
    a.delta[:, rows, cols] = state.delta
    a.y[:, rows, cols] = state.rho * state.u
    a.node_rho[torch.as_tensor(idx.reshape(-1), device=a.y.device)] = state.rho


# --- the screened solve ----------------------------------------------------------------------------------------------
def solve_screened(prob: _Problem, start: AdmmState, tol: float, rtol: float, max_iter: int, relax: float,
                   balance: str, batch_max_p: int = BATCH_MAX_P, predict=None) -> tuple[AdmmState, dict]:
    """Solve ``prob`` block by block from the whole-problem state ``start`` (a warm start or the initial state);
    returns the assembled whole-problem state and run_admm's info for the whole: ``n_iter`` the most iterations of
    any block, ``converged`` every block, ``r``/``s`` the whole problem's residuals (root sum of squares over the
    blocks, zero between them), ``eps_pri``/``eps_dual`` Boyd's tolerances for the whole, ``objective`` the §3.5
    objective (summed over the blocks), ``blocks`` the number of blocks and ``largest`` the largest block.

    ``predict`` = ((l_a, state_a), (l_b, start), l): each block starts from the solver's linear extrapolation in log
    lambda of the two states restricted to it (solve_sequence's predictor step, done per block)."""
    blocks = components(screening_edges(prob))
    if len(blocks) == 1 and prob.p > 1:
        # nothing to split: the unscreened solve itself, without restricting to and assembling from one block (at
        # p = 30 those cost about as much as the solve's iterations)
        first = _predict(*predict) if predict is not None else start
        state, info = run_admm(prob, replace(first, node_rho=None), tol, rtol, max_iter, relax, balance)
        return state, {**info, "blocks": 1, "largest": prob.p}
    plan = plan_blocks(blocks, torch.diagonal(prob.S, dim1=1, dim2=2).cpu().numpy(), batch_max_p)
    a = _empty_assembly(prob)
    _put_singletons(a, prob, plan.singletons)
    n_iter, converged, r2, s2 = 0, True, 0.0, 0.0
    obj = _singleton_objective(prob, plan.singletons)
    rho_ref, most = start.rho, 0
    for idx in plan.groups:
        group = block_problem(prob, idx)
        first = restrict_state(start, idx)
        if predict is not None:
            (l_a, state_a), (l_b, _), at = predict
            first = _predict((l_a, restrict_state(state_a, idx)), (l_b, first), at)
        state, info = run_admm(group, first, tol, rtol, max_iter, relax, balance)
        # exactly symmetric parts, as the unscreened result's (see admm._mirror_upper)
        state = replace(state, theta0=_mirror_upper(state.theta0), delta=_mirror_upper(state.delta))
        obj += _group_objective(group, state.theta0, state.delta)
        _put_group(a, idx, state)
        n_iter, converged = max(n_iter, info["n_iter"]), converged and info["converged"]
        r2, s2 = r2 + info["r"] ** 2, s2 + info["s"] ** 2
        if idx.size > most:   # the largest group's rho scales the assembled dual
            rho_ref, most = state.rho, idx.size
    z = a.theta0.unsqueeze(0) + a.delta
    abs_tol = math.sqrt(prob.k) * prob.p * tol
    n_om, n_z, n_y = (float(torch.linalg.vector_norm(x)) for x in (a.omega, z, a.y))
    info = {"n_iter": n_iter, "converged": converged, "r": math.sqrt(r2), "s": math.sqrt(s2),
            "eps_pri": abs_tol + rtol * max(n_om, n_z), "eps_dual": abs_tol + rtol * n_y, "objective": obj,
            "blocks": len(blocks), "largest": max(len(b) for b in blocks)}
    return AdmmState(a.omega, a.theta0, a.delta, a.y / rho_ref, rho_ref, a.node_rho), info
