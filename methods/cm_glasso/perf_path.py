"""The lambda-path case of ``bench perf glasso``: a screened, warm-started path (docs/methods.md §3.10) against cold
solves and public solvers, all at matched objective gaps, measured side by side in one run.

Problem (:func:`path_problem`): K classes of n samples from Gaussians whose precision is sparse and clustered (p
variables in clusters of 4 to 39, each a chain plus a few random edges, one extra edge per class and cluster), so
that along a path from lambda_max the screening graph goes from p singletons through the clusters to one block.
Samples are standardised per class. The path: ``n_lambdas`` values of lam_specific from
:func:`~methods.cm_glasso.path.lambda_max` down to ``ratio`` times it (geometric), lam_shared = K/2 lam_specific.

Rows (one ``methods.cm_glasso.perf.Row`` each; ``vs_ours`` = seconds / the screened path's seconds in its group):
* K = K: ours, the screened warm path (``solve_path``); ``n_lambdas`` cold unscreened solves (``solve_joint_glasso``
  with ``screen=False``, each from the default start); gglasso ``ADMM_MGL`` with the group penalty (GGL, its closest
  problem; §3.5 itself is not in gglasso) on the same lambdas (l1 = lam_specific / n, l2 = l1 / 2, as the K = 3
  rows of methods/cm_glasso/perf.py), each solve started from the previous solution: from its Omega alone (what gglasso's
  own ``grid_search`` does) and from its whole ADMM state (Omega, Theta, X).
* K = 1 (the first class alone, the single graphical lasso): ours, the screened warm path; scikit-learn's
  ``graphical_lasso_path`` (coordinate descent, warm-started along the path by design; ``enet_tol`` = ``tol``,
  ``max_iter`` its default 100, see SKLEARN_MAX_ITER);
  gglasso's ``block_SGL`` (which screens by the same rule) warm-started from the previous Omega as its
  ``single_grid_search`` does.

Matched gaps: every solver walks the tolerance ladder of methods/cm_glasso/perf.py (1e-3, 1e-4, ...; tol = rtol * 1e-3
for the ADMMs) until the largest relative objective gap over the path's lambdas is within ``GAP`` = 1e-6 of a
reference path, and that run's time is reported. References: ours, screened, at rtol 1e-9 for the §3.5 and the
K = 1 objectives (screening is exact, tests/test_glasso_screening.py); gglasso at rtol 1e-9 per GGL block for GGL,
the blocks given by the exact GGL rule of Danaher, Wang & Witten (2014, Theorem 2): i and j are joined iff
sum_k (|S_k,ij| - l1)_+^2 > l2^2.

[why not methods.cm_glasso.perf.time_to_gap itself] It runs the whole measurement once more as a warm-up before its ladder
and repeats the reaching run; at p = 500 a warm-up of 20 cold solves alone costs about a minute on 2 shared cores.
:func:`path_time_to_gap` is the same ladder with one run per rung; the imports, numba's compilation and the
allocators are warmed up once on a small slice instead (:func:`_warm_up`).

Imports from methods/cm_glasso/perf.py : GAP, LADDER, BUDGET_S, Row, threads,
sgl_objective, mgl_objective, _quiet, _gglasso_iters, _timed, have.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Callable

import numpy as np

from methods.cm_glasso.perf import (BUDGET_S, EXTRA_SECTIONS, GAP, LADDER, Row, _gglasso_iters, _quiet, _timed, have,
                                    mgl_objective, sgl_objective, threads)

REFERENCE_RTOL = 1e-9
PATH_BUDGET_S = 5 * BUDGET_S   # a whole path slower than this ends that solver's ladder
# graphical_lasso_path's own default. Its stopping test is |dual gap| < tol, and on these problems its dual-gap
# estimate goes negative at some lambdas (-3e-3 to -7e-3 at p = 500), so those solves always run to max_iter; with
# 1000 (the K = 1 rows of methods/cm_glasso/perf.py) the ladder of one p = 500 path ran past 13 CPU minutes unfinished
SKLEARN_MAX_ITER = 100
SECTION = "screened path"   # the section of bench perf glasso's table these rows fill


# --- the problem ---------------------------------------------------------------------------------------------------
def _clusters(p: int, rng: np.random.Generator, sizes=(4, 40)) -> list[np.ndarray]:
    bounds = [0]
    while bounds[-1] < p:
        bounds.append(min(p, bounds[-1] + int(rng.integers(*sizes))))
    return [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _edge(rng: np.random.Generator) -> float:
    return float(rng.uniform(0.3, 0.6) * rng.choice([-1, 1]))


def path_problem(p: int = 500, k: int = 3, n: int = 1000, seed: int = 0):
    """(X: list of K [n, p] standardised samples, S [K, p, p] their covariances (1/n), counts [K]): clustered sparse
    precisions, shared within clusters plus one class-specific edge per cluster and class."""
    rng = np.random.default_rng(seed)
    blocks = _clusters(p, rng)
    base = np.zeros((p, p))
    for idx in blocks:
        for a, b in zip(idx[:-1], idx[1:]):
            base[a, b] = _edge(rng)
        for _ in range(len(idx) // 3):
            a, b = sorted(rng.choice(idx, 2, replace=False))
            base[a, b] = _edge(rng)
    xs, covs = [], []
    for _ in range(k):
        w = base.copy()
        for idx in blocks:
            if len(idx) > 2:
                a, b = sorted(rng.choice(idx, 2, replace=False))
                w[a, b] = _edge(rng)
        w = w + w.T
        theta = w + (0.3 - np.linalg.eigvalsh(w)[0]) * np.eye(p)
        # draws through a Cholesky factor of the precision: reproducible across LAPACK builds (an SVD's signs are not)
        x = np.linalg.solve(np.linalg.cholesky(theta).T, rng.standard_normal((n, p)).T).T
        x = (x - x.mean(0)) / x.std(0)
        xs.append(x)
        covs.append(x.T @ x / n)
    return xs, np.stack(covs), np.full(k, float(n))


def screening_profile(S, n, lams, shared_ratio) -> list[tuple[int, int]]:
    """(number of blocks, largest block) of the screening graph at each lambda."""
    from methods.cm_glasso.path import _shared
    from methods.cm_glasso.screening import components, screening_edges
    from methods.cm_glasso.solver import check_data, with_lambdas

    base = check_data(S, n)
    out = []
    for lam in lams:
        blocks = components(screening_edges(with_lambdas(base, _shared(shared_ratio, lam), float(lam))))
        out.append((len(blocks), max(len(b) for b in blocks)))
    return out


# --- matched gaps ----------------------------------------------------------------------------------------------------
def path_time_to_gap(run: Callable, gaps: Callable) -> dict:
    """``run(tol) -> (outputs, iterations)``, ``gaps(outputs) -> relative gap per lambda``: walk LADDER until the
    largest gap is <= GAP; that run's seconds, iterations, tolerance and gap (``reached`` False if the ladder ran
    out or a run took longer than PATH_BUDGET_S)."""
    last: dict = {}
    for tol in LADDER:
        (out, iters), secs = _timed(run, tol)
        gap = float(np.max(gaps(out)))
        last = {"tol": tol, "iterations": float(iters), "rel_gap": gap, "seconds": secs, "reached": gap <= GAP}
        if gap <= GAP or secs > PATH_BUDGET_S:
            return last
    return last


def _rel(values, reference) -> np.ndarray:
    values, reference = np.asarray(values, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return (values - reference) / np.abs(reference)


# --- the solvers' paths: tol -> (outputs, iterations) ----------------------------------------------------------------
def ours_path(S, n, lams, shared_ratio, nthreads: int):
    from methods.cm_glasso.path import solve_path

    def run(tol):
        res = solve_path(S, n, lams, shared_ratio, tol=tol * 1e-3, rtol=tol, max_iter=20000, threads=nthreads)
        return res, sum(r.n_iter for r in res)
    return run


def ours_cold(S, n, lams, shared_ratio, nthreads: int):
    from methods.cm_glasso.path import _shared
    from methods.cm_glasso.solver import solve_joint_glasso

    def run(tol):
        res = [solve_joint_glasso(S, n, _shared(shared_ratio, lam), float(lam), tol=tol * 1e-3, rtol=tol,
                                  max_iter=20000, threads=nthreads, screen=False) for lam in lams]
        return res, sum(r.n_iter for r in res)
    return run


def gglasso_ggl_path(S, alphas, start: str):
    """ADMM_MGL (GGL, l1 = alpha, l2 = alpha / 2) along ``alphas``; each solve from the previous one's Omega
    (``start="omega"``) or its whole state (``"full"``)."""
    from gglasso.helper.utils import get_K_identity
    from gglasso.solver.admm_solver import ADMM_MGL

    k, p, _ = S.shape

    def run(tol):
        out, iters, prev = [], 0.0, None
        for a in alphas:
            kw = {"Omega_0": get_K_identity(k, p) if prev is None else prev["Omega"]}
            if prev is not None and start == "full":
                kw.update(Theta_0=prev["Theta"], X_0=prev["X"])
            (prev, _), text = _quiet(lambda: ADMM_MGL(S, a, a / 2, "GGL", tol=tol * 1e-3, rtol=tol, max_iter=20000,
                                                      **kw))
            out.append(prev["Theta"])
            iters += _gglasso_iters(text)
        return out, iters
    return run


def ggl_reference(S, alphas) -> list[np.ndarray]:
    """Tight GGL solutions block by block (Danaher, Wang & Witten 2014, Theorem 2), singletons 1 / S_k,ii."""
    from gglasso.solver.admm_solver import ADMM_MGL

    from methods.cm_glasso.screening import components

    k, p, _ = S.shape
    out = []
    for a in alphas:
        edges = (np.clip(np.abs(S) - a, 0, None) ** 2).sum(0) > (a / 2) ** 2
        np.fill_diagonal(edges, False)
        theta = np.zeros((k, p, p))
        for b in components(edges):
            ix = np.ix_(b, b)
            if len(b) == 1:
                theta[:, b[0], b[0]] = 1.0 / S[:, b[0], b[0]]
                continue
            sub = S[:, ix[0], ix[1]]
            (sol, _), _ = _quiet(lambda: ADMM_MGL(sub, a, a / 2, "GGL", np.stack([np.eye(len(b))] * k),
                                                  tol=REFERENCE_RTOL * 1e-3, rtol=REFERENCE_RTOL, max_iter=50000))
            theta[:, ix[0], ix[1]] = sol["Theta"]
        out.append(theta)
    return out


def sklearn_path(X, alphas):
    from sklearn.covariance._graph_lasso import graphical_lasso_path   # not exported by sklearn.covariance
    from sklearn.exceptions import ConvergenceWarning

    def run(tol):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            _, precs = graphical_lasso_path(X, alphas, tol=tol, enet_tol=tol, max_iter=SKLEARN_MAX_ITER)
        return precs, math.nan
    return run


def gglasso_sgl_path(S1, alphas):
    from gglasso.solver.single_admm_solver import block_SGL

    p = len(S1)

    def run(tol):
        out, iters, omega = [], 0.0, np.eye(p)
        for a in alphas:
            sol, text = _quiet(lambda: block_SGL(S1, a, omega, tol=tol * 1e-3, rtol=tol, max_iter=20000))
            omega = sol["Omega"]
            out.append(sol["Theta"])
            iters += sum(float(t) for t in re.findall(r"after (\d+) iterations", text))   # one line per block
        return out, iters
    return run


# --- the rows --------------------------------------------------------------------------------------------------------
def _warm_up(nthreads: int) -> None:
    """Imports, numba's compilation and allocators, on a 20-variable slice (each solver once)."""
    xs, S, n = path_problem(40, 3, 200, seed=1)
    lams = [0.3 * n[0]]
    ours_path(S, n, lams, 1.5, nthreads)(1e-3)
    ours_cold(S, n, lams, 1.5, nthreads)(1e-3)
    if have("gglasso"):
        gglasso_ggl_path(S, [0.3], "full")(1e-3)
        gglasso_sgl_path(S[0], [0.3])(1e-3)
    sklearn_path(xs[0], [0.3])(1e-3)


def _profile_note(prof: list[tuple[int, int]]) -> str:
    one = [i for i, (blocks, _) in enumerate(prof) if blocks == 1]
    return (f"screening blocks per lambda {prof[0][0]} -> {prof[-1][0]}, largest {prof[0][1]} -> {prof[-1][1]}; "
            + (f"one block from lambda {one[0] + 1} of {len(prof)}" if one else "never one block"))


def _row(group: str, nthreads: int, p: int, solver: str, problem: str, res: dict, note: str = "") -> Row:
    r = Row(SECTION, nthreads, p, solver, f"{group}: {problem}", seconds=res["seconds"], iterations=res["iterations"],
            tol=res["tol"], rel_gap=res["rel_gap"], note=note)
    if not res["reached"]:
        r.note = (note + "; " if note else "") + f"did not reach {GAP:g} (best gap {res['rel_gap']:.1e})"
    return r


def joint_path_rows(S, n, lams, nthreads: int, gglasso_starts=("omega", "full")) -> list[Row]:
    from methods.cm_glasso.path import default_shared_ratio

    k, p = S.shape[0], S.shape[-1]
    ratio = default_shared_ratio(k)
    group = f"K={k}, {len(lams)} lambdas"
    prof = screening_profile(S, n, lams, ratio)
    with threads(nthreads):
        ref = [r.objective for r in ours_path(S, n, lams, ratio, nthreads)(REFERENCE_RTOL)[0]]
        gaps = lambda res: _rel([r.objective for r in res], ref)  # noqa: E731
        ours = path_time_to_gap(ours_path(S, n, lams, ratio, nthreads), gaps)
        rows = [_row(group, nthreads, p, "ours, screened warm path", "§3.5", ours, _profile_note(prof))]
        cold = path_time_to_gap(ours_cold(S, n, lams, ratio, nthreads), gaps)
        rows.append(_row(group, nthreads, p, f"ours, {len(lams)} cold unscreened solves", "§3.5", cold))
        if have("gglasso") and gglasso_starts:
            alphas = [float(lam) / float(n[0]) for lam in lams]
            g_ref = [mgl_objective(S, t, a, a / 2, "GGL") for t, a in zip(ggl_reference(S, alphas), alphas)]
            g_gaps = lambda out: _rel([mgl_objective(S, t, a, a / 2, "GGL") for t, a in zip(out, alphas)],  # noqa: E731
                                      g_ref)
            for start in gglasso_starts:
                res = path_time_to_gap(gglasso_ggl_path(S, alphas, start), g_gaps)
                name = {"omega": "from the previous Omega (its grid_search)",
                        "full": "from the previous Omega, Theta, X"}[start]
                rows.append(_row(group, nthreads, p, f"gglasso ADMM_MGL GGL, {name}", "GGL (own penalty)", res,
                                 "l1 = lam_specific / n, l2 = l1 / 2; reference: exact GGL blocks"))
    return rows


def single_path_rows(x, S1, n1: float, lams, nthreads: int) -> list[Row]:
    p = len(S1)
    group = f"K=1, {len(lams)} lambdas"
    alphas = [float(lam) / n1 for lam in lams]
    prof = screening_profile(S1[None], [n1], lams, math.inf)
    with threads(nthreads):
        ref_res = ours_path(S1[None], [n1], lams, math.inf, nthreads)(REFERENCE_RTOL)[0]
        ref = [sgl_objective(S1, r.theta0 + r.delta[0], a) for r, a in zip(ref_res, alphas)]
        sgl_gaps = lambda precs: _rel([sgl_objective(S1, m, a) for m, a in zip(precs, alphas)], ref)  # noqa: E731
        ours_run = ours_path(S1[None], [n1], lams, math.inf, nthreads)

        def ours_mats(tol):
            res, it = ours_run(tol)
            return [r.theta0 + r.delta[0] for r in res], it
        rows = [_row(group, nthreads, p, "ours, screened warm path", "single glasso",
                     path_time_to_gap(ours_mats, sgl_gaps), _profile_note(prof))]
        rows.append(_row(group, nthreads, p, "scikit-learn graphical_lasso_path", "single glasso",
                         path_time_to_gap(sklearn_path(x, alphas), sgl_gaps), "cd, enet_tol = tol"))
        if have("gglasso"):
            rows.append(_row(group, nthreads, p, "gglasso block_SGL, from the previous Omega", "single glasso",
                             path_time_to_gap(gglasso_sgl_path(S1, alphas), sgl_gaps),
                             "screens by the same rule (its single_grid_search)"))
    return rows


def _relative(rows: list[Row]) -> None:
    ours = {r.problem.split(":")[0]: r.seconds for r in rows if r.solver.startswith("ours, screened")}
    for r in rows:
        base = ours.get(r.problem.split(":")[0])
        if base:
            r.vs_ours = r.seconds / base


def perf_path(p: int = 500, k: int = 3, n: int = 1000, n_lambdas: int = 20, ratio: float = 0.1, nthreads: int = 1,
              seed: int = 0, sections=("joint", "single"), gglasso_starts=("omega", "full")) -> list[Row]:
    """The path rows for ``bench perf glasso`` (see the module docstring), ``vs_ours`` filled in per group."""
    from methods.cm_glasso.path import default_shared_ratio, lambda_grid

    xs, S, counts = path_problem(p, k, n, seed)
    _warm_up(nthreads)
    rows: list[Row] = []
    if "joint" in sections:
        lams = lambda_grid(S, counts, n_lambdas, ratio, default_shared_ratio(k))
        rows += joint_path_rows(S, counts, lams, nthreads, gglasso_starts)
    if "single" in sections:
        lams1 = lambda_grid(S[:1], counts[:1], n_lambdas, ratio, math.inf)
        rows += single_path_rows(xs[0], S[0], float(counts[0]), lams1, nthreads)
    _relative(rows)
    return rows


def screened_section(nthreads: int) -> list[Row]:
    """The rows of ``bench perf glasso --sections screened``: single-thread only, where the targets are set."""
    return perf_path(nthreads=nthreads) if nthreads == 1 else []


EXTRA_SECTIONS["screened"] = screened_section
