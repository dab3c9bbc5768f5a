"""The public solves of the joint common-specific graphical lasso (docs/methods.md §3.5): one lambda pair
(:func:`solve_joint_glasso`), a sequence of them warm-started in turn (:func:`solve_sequence`), the single graphical
lasso (:func:`graphical_lasso`) and the objective. The ADMM they run is in :mod:`methods.cm_glasso.admm`; with
``screen=True`` (the default) the exact screening of :mod:`methods.cm_glasso.screening` splits each problem into
the blocks it proves independent first (§3.10).
"""

from __future__ import annotations

import math

import numpy as np
import torch

# the ADMM's names stay importable from here, where callers have always found them
from methods.cm_glasso.admm import (BALANCES, DTYPE, RELAX, AdmmState, JointGLassoResult, _as_tensor,  # noqa: F401
                                    _fail, _mirror_upper, _predict, _Problem, check_data, check_inputs, cpu_threads,
                                    initial_state, omega_step, run_admm, shared_part, soft_threshold, split_entries,
                                    with_lambdas)
from methods.cm_glasso.screening import solve_screened

def objective(S, n, theta0, delta, lam_shared: float, lam_specific: float, weights=None) -> float:
    """The §3.5 objective of (Theta_0, Delta); inf when some Theta_0 + Delta_k is not positive definite."""
    S, theta0, delta = (_as_tensor(x, x.device if isinstance(x, torch.Tensor) else None) for x in (S, theta0, delta))
    if S.dim() == 2:
        S, delta = S.unsqueeze(0), delta.reshape(1, *delta.shape[-2:])
    n = torch.as_tensor(np.atleast_1d(np.asarray(n, dtype=np.float64)), device=S.device)
    p = S.shape[-1]
    P = torch.ones(p, p, dtype=DTYPE, device=S.device) if weights is None else _as_tensor(weights, S.device)
    off = ~torch.eye(p, dtype=torch.bool, device=S.device)
    theta = theta0.unsqueeze(0) + delta
    chol, bad = torch.linalg.cholesky_ex(theta)
    if bool((bad != 0).any()):
        return math.inf
    logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
    smooth = (n * (-logdet + (S * theta).sum((1, 2)))).sum()
    pen = (P * delta.abs()).sum((1, 2)) - (P.diagonal() * delta.diagonal(dim1=1, dim2=2).abs()).sum(1)
    value = float(smooth) + lam_specific * float(pen.sum())
    if float(theta0[off].abs().sum()) > 0:  # lam_shared may be inf; 0 * inf must stay 0
        value += lam_shared * float((P[off] * theta0[off].abs()).sum())
    return value


def solve_joint_glasso(S, n, lam_shared: float, lam_specific: float, weights=None, tol: float = 1e-7,
                       rtol: float = 1e-4, max_iter: int = 1000, rho: float = 1.0, *,
                       warm_start: JointGLassoResult | AdmmState | None = None, device=None,
                       relax: float = RELAX, balance: str = "relative", threads: int | None = 1,
                       screen: bool = True) -> JointGLassoResult:
    """Solve §3.5 for S [K, p, p] (class covariances, 1/n_k normalised) and n [K] (class sizes).

    ``weights`` is the penalty matrix P [p, p] (symmetric, >= 0; its diagonal is ignored), default all ones.
    ``tol``/``rtol`` are eps_abs/eps_rel of the Boyd stopping rule, ``rho`` the initial penalty (per-sample units).
    ``warm_start`` continues from a previous result or state (a lambda path); ``device`` puts the solve on e.g.
    ``"cuda"``; ``relax`` and ``balance`` are described at :func:`run_admm`; ``threads`` is the number of CPU
    threads of the solve (see :func:`cpu_threads`; None leaves the process's settings). ``screen`` splits the
    problem into the blocks that the exact screening rule of docs/methods.md §3.10 proves independent
    (:mod:`~methods.cm_glasso.screening`): the same solution, with ``n_iter`` the most iterations of any block.

    With lam_shared = inf (or K = 1 and lam_shared >= lam_specific) Theta_0 = 0 and this is the single graphical
    lasso min n(-logdet Theta + tr(S Theta)) + lam_specific sum_{i!=j} |Theta_ij| per class. Bad input raises one
    ValueError naming the problem; a solve that hits ``max_iter`` returns ``converged=False`` with its residuals.
    """
    _check_solver_options(tol, rtol, max_iter, rho, relax, balance, threads)
    on_cpu = device is None and not (isinstance(S, torch.Tensor) and S.device.type != "cpu") \
        or device is not None and torch.device(device).type == "cpu"
    with cpu_threads(threads if on_cpu else None):
        prob = check_inputs(S, n, lam_shared, lam_specific, weights, device)
        state = _warm_state(warm_start, prob) if warm_start is not None else initial_state(prob, rho)
        state, info = _solve(prob, state, tol, rtol, max_iter, relax, balance, screen)
        return _result(prob, state, info, lam_shared, lam_specific)


def _solve(prob: _Problem, state: AdmmState, tol, rtol, max_iter, relax, balance, screen: bool, predict=None):
    if not screen:
        return run_admm(prob, state, tol, rtol, max_iter, relax, balance)
    return solve_screened(prob, state, tol, rtol, max_iter, relax, balance, predict=predict)


def solve_sequence(S, n, lambdas: list[tuple[float, float]], weights=None, tol: float = 1e-7, rtol: float = 1e-4,
                   max_iter: int = 1000, rho: float = 1.0, *, warm_start=None, device=None, relax: float = RELAX,
                   balance: str = "relative", threads: int | None = 1, extrapolate: bool = True,
                   screen: bool = True) -> list[JointGLassoResult]:
    """Solve §3.5 for each (lam_shared, lam_specific) in turn, each warm-started from the one before.

    What a path saves over separate calls: the input checks (an eigendecomposition per class) and the thread
    setup happen once, and with ``extrapolate`` the start of solve i is the linear extrapolation in log
    lam_specific of the splits Theta_0, Delta and the unscaled duals rho U of solves i-1 and i-2 (a predictor
    step; the Omega-step reads only Z - U, so an extrapolated point need not be positive definite). Measured on
    the perf problems this trims about a fifth of the iterations of a plain warm start. With ``screen`` every
    lambda is solved block by block (docs/methods.md §3.10), each block starting from that start restricted to it.
    """
    _check_solver_options(tol, rtol, max_iter, rho, relax, balance, threads)
    on_cpu = device is None and not (isinstance(S, torch.Tensor) and S.device.type != "cpu") \
        or device is not None and torch.device(device).type == "cpu"
    out: list[JointGLassoResult] = []
    with cpu_threads(threads if on_cpu else None):
        base = check_data(S, n, weights, device)
        history: list[tuple[float, AdmmState]] = []
        for lam_shared, lam_specific in lambdas:
            prob = with_lambdas(base, lam_shared, lam_specific)
            predict = None
            if extrapolate and len(history) >= 2 and lam_specific > 0:
                predict = (history[-2], history[-1], math.log(lam_specific))
                # screened, each block extrapolates its own restriction of the two states (less work than the whole)
                state = history[-1][1] if screen else _predict(*predict)
            elif history:
                state = history[-1][1]
            elif warm_start is not None:
                state = _warm_state(warm_start, prob)
            else:
                state = initial_state(prob, rho)
            state, info = _solve(prob, state, tol, rtol, max_iter, relax, balance, screen, predict)
            out.append(_result(prob, state, info, lam_shared, lam_specific))
            history.append((math.log(lam_specific) if lam_specific > 0 else -math.inf, state))
    return out


def _check_solver_options(tol, rtol, max_iter, rho, relax=RELAX, balance="relative", threads=1) -> None:
    for name, v in (("tol", tol), ("rtol", rtol), ("rho", rho)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            _fail(f"{name} must be a finite number > 0, got {v!r}")
    if not (isinstance(max_iter, (int, np.integer)) and max_iter >= 1):
        _fail(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not (isinstance(relax, (int, float)) and 0 < relax < 2):
        _fail(f"relax must be in (0, 2) (1 = no over-relaxation), got {relax!r}")
    if balance not in BALANCES:
        _fail(f"balance must be one of {', '.join(BALANCES)}, got {balance!r}")
    if threads is not None and not (isinstance(threads, (int, np.integer)) and threads >= 1):
        _fail(f"threads must be an integer >= 1 or None, got {threads!r}")


def _warm_state(warm: JointGLassoResult | AdmmState, prob: _Problem) -> AdmmState:
    st = warm.state if isinstance(warm, JointGLassoResult) else warm
    if st is None:
        _fail("warm_start has no solver state (results keep it unless stripped)")
    if tuple(st.omega.shape) != (prob.k, prob.p, prob.p):
        _fail(f"warm_start is for shape {tuple(st.omega.shape)}, this problem is {(prob.k, prob.p, prob.p)}")
    dev = prob.S.device
    # a path changes lambda: when Theta_0 was forced to 0 before, the split is still a valid starting point
    node_rho = None if st.node_rho is None else st.node_rho.to(dev)
    return AdmmState(st.omega.to(dev), st.theta0.to(dev), st.delta.to(dev), st.u.to(dev), st.rho, node_rho)


def _result(prob: _Problem, state: AdmmState, info: dict, lam_shared, lam_specific) -> JointGLassoResult:
    if "objective" in info:   # a screened solve: its blocks are mirrored and its objective summed block by block
        theta0, delta, obj = state.theta0, state.delta, info["objective"]
    else:
        theta0, delta = _mirror_upper(state.theta0), _mirror_upper(state.delta)
        obj = objective(prob.S, prob.n, theta0, delta, float(lam_shared), float(lam_specific), prob.P)
    return JointGLassoResult(
        theta0=theta0.cpu().numpy(), delta=delta.cpu().numpy(), precision=state.omega.cpu().numpy(),
        n_iter=info["n_iter"], converged=info["converged"], objective=obj, primal_residual=info["r"],
        dual_residual=info["s"], eps_primal=info["eps_pri"], eps_dual=info["eps_dual"], rho=state.rho, state=state)


def graphical_lasso(S, alpha: float, **kw) -> np.ndarray:
    """The single graphical lasso in scikit-learn's parametrisation, min -logdet Theta + tr(S Theta) +
    alpha sum_{i!=j} |Theta_ij|; returns the sparse precision matrix [p, p] (exact zeros off the support).

    Keyword arguments go to :func:`solve_joint_glasso` (tol, rtol, max_iter, rho, device, warm_start).
    ``return_result=True`` returns the whole :class:`JointGLassoResult` instead.
    """
    return_result = kw.pop("return_result", False)
    S = np.asarray(S, dtype=np.float64) if not isinstance(S, torch.Tensor) else S
    if getattr(S, "ndim", None) != 2:
        raise ValueError(f"graphical_lasso: S must be one [p, p] covariance matrix, got shape {tuple(S.shape)}")
    res = solve_joint_glasso(S[None] if isinstance(S, np.ndarray) else S.unsqueeze(0), [1.0], math.inf, alpha, **kw)
    return res if return_result else res.theta0 + res.delta[0]
