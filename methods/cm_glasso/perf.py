"""``python -m bench perf glasso``: CM-GLasso's ADMM (:mod:`methods.cm_glasso.solver`) against public solvers, all
measured side by side in one run (docs/performance.md: repeats of one system vary by about 15 % on shared machines).

Problems (docs/performance.md): K classes of n = 500 samples, p in {30, 100, 200}; the graph is a chain plus p/2 random
shared edges, plus p/4 random edges per class; samples standardised; alpha = 0.1 (scikit-learn's units).

* K = 1, min -logdet T + tr(S T) + alpha sum_{i!=j} |T_ij|: ours, scikit-learn ``graphical_lasso`` (``enet_tol``
  set with ``tol``: without it, it never gets below about 1e-4) and gglasso ``ADMM_SGL``.
* K = 3: ours on the joint problem of docs/methods.md §3.5 (lam_specific = alpha n, lam_shared = 1.5 lam_specific), the
  same problem handed to cvxpy (a conic solver; p <= 30, see CVXPY_MAX_P) for an independent reference objective,
  and gglasso ``ADMM_MGL``
  on *its* problems, GGL and FGL (Danaher, Wang & Witten 2014: sum_k [-logdet + tr] plus alpha sum_k |T_k,ij| and
  alpha/2 times the group norm (GGL) or the consecutive differences (FGL), off the diagonal): a different penalty,
  so the comparison is time per iteration and time to the same relative accuracy on each solver's own problem.

Time to accuracy: each solver runs on a ladder of tolerances (1e-3, 1e-4, ...) until its output's objective is
within 1e-6 (relative) of the reference (a tight solve: ours at rtol 1e-10 for K = 1 and the §3.5 problem,
gglasso at tol 1e-12 for GGL/FGL); that run's median time over ``repeats`` is reported, with its iterations and
time per iteration against the floor (one batched eigendecomposition of the K p x p matrices, the irreducible
cost of an eigen-based ADMM iteration). Every comparison is run with 1 and with 2 threads; threads are set for
torch's pool (our solver) and, through threadpoolctl and numba, for every BLAS/OpenMP pool the others use.

Also: a warm-started path of 20 lambdas against 20 cold solves, and a fresh process's first solve (interpreter,
imports and any JIT compilation included; gglasso compiles with numba in every new process).

gglasso and cvxpy are optional (``pip install 'mmrl-bench[perf]'``); comparisons whose package is missing are
listed as skipped, never silently dropped.

The verb is registered in :data:`bench.registry.PERF_VERBS` when the methods package is imported (as the method
itself is), so the engine never imports this module.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from bench.registry import register_perf_verb

ALPHA = 0.1
N_PER_CLASS = 500
GAP = 1e-6
LADDER = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10)
BUDGET_S = 60.0          # a single run slower than this ends that solver's ladder
SECTIONS = ("K=1", "K=3", "path", "fresh")
# sections measured by other modules of the method (name -> rows for a thread count), registered by them:
# perf_path.py builds on this module's rows and ladders, so this module cannot import it
EXTRA_SECTIONS: dict[str, Callable[[int], list]] = {}


def all_sections() -> tuple[str, ...]:
    return SECTIONS + tuple(EXTRA_SECTIONS)
CVXPY_MAX_P = 30         # cvxpy + Clarabel at p = 100 (K = 3) asked for > 20 GB and was killed on a 24 GB machine


@dataclass
class Row:
    section: str                 # "K=1", "K=3", "path", "fresh process"
    threads: int
    p: int
    solver: str
    problem: str
    seconds: float = math.nan
    iterations: float = math.nan
    ms_per_iter: float = math.nan
    floor_ms: float = math.nan   # one batched eigendecomposition of the K p x p matrices
    per_iter_vs_floor: float = math.nan
    tol: float = math.nan        # the ladder tolerance that reached the target
    rel_gap: float = math.nan    # (objective - reference) / |reference| of that run
    vs_ours: float = math.nan    # this solver's seconds / ours on the same row group (> 1: ours is faster)
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


# --- problems and objectives ---------------------------------------------------------------------------------------
def perf_problem(p: int, k: int, n: int = N_PER_CLASS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(S [k, p, p], n [k]) of the docs/performance.md problem: chain + p/2 shared random edges + p/4 per class."""
    rng = np.random.default_rng(seed)
    base = np.zeros((p, p))
    for j in range(p - 1):
        base[j, j + 1] = rng.uniform(0.3, 0.6) * rng.choice([-1, 1])
    iu = np.triu_indices(p, 1)
    free = np.flatnonzero(base[iu] == 0)
    for idx in rng.choice(free, size=p // 2, replace=False):
        base[iu[0][idx], iu[1][idx]] = rng.uniform(0.3, 0.6) * rng.choice([-1, 1])
    covs = []
    for _ in range(k):
        w = base.copy()
        for idx in rng.choice(free, size=max(1, p // 4), replace=False):
            w[iu[0][idx], iu[1][idx]] = rng.uniform(0.3, 0.6) * rng.choice([-1, 1])
        w = w + w.T
        theta = w + (0.3 - np.linalg.eigvalsh(w)[0]) * np.eye(p)
        x = rng.multivariate_normal(np.zeros(p), np.linalg.inv(theta), size=n)
        x = (x - x.mean(0)) / x.std(0)
        covs.append(np.cov(x.T, bias=True))
    return np.stack(covs), np.full(k, float(n))


def _nll(S: np.ndarray, theta: np.ndarray) -> float:
    """sum_k -logdet T_k + tr(S_k T_k); inf unless every T_k is positive definite."""
    theta = theta.reshape(S.shape)
    try:
        chol = np.linalg.cholesky(theta)
    except np.linalg.LinAlgError:
        return math.inf
    logdet = 2 * np.log(np.einsum("kii->ki", chol)).sum()
    return float(-logdet + np.einsum("kij,kji->", S, theta))


def _offdiag_abs(x: np.ndarray) -> np.ndarray:
    p = x.shape[-1]
    return np.abs(x) * ~np.eye(p, dtype=bool)


def sgl_objective(S: np.ndarray, theta: np.ndarray, alpha: float) -> float:
    return _nll(S[None], theta[None]) + alpha * float(_offdiag_abs(theta).sum())


def mgl_objective(S: np.ndarray, theta: np.ndarray, l1: float, l2: float, reg: str) -> float:
    """gglasso's MGL problems (its documentation): GGL adds l2 sum_{i!=j} ||T_.ij||_2, FGL l2 sum_{i!=j} sum_k
    |T_k+1,ij - T_k,ij|, both beside l1 sum_k sum_{i!=j} |T_k,ij|."""
    off = ~np.eye(S.shape[-1], dtype=bool)
    pen = l1 * float(_offdiag_abs(theta).sum())
    if reg == "GGL":
        pen += l2 * float((np.sqrt((theta ** 2).sum(0)) * off).sum())
    else:
        pen += l2 * float((np.abs(np.diff(theta, axis=0)) * off).sum())
    return _nll(S, theta) + pen


# --- threads -------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def threads(n: int):
    """n threads for torch's pool, every threadpoolctl-visible BLAS/OpenMP pool and numba (if imported)."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    numba_before = None
    if "numba" in sys.modules:
        import numba

        numba_before = numba.get_num_threads()
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)
        if numba_before is not None:
            import numba

            numba.set_num_threads(numba_before)


# --- solver adapters: tol -> (output matrices, iterations) -----------------------------------------------------------
def _quiet(fn: Callable):
    """Run fn with stdout captured (gglasso prints its iteration count); returns (result, captured text)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        out = fn()
    return out, buf.getvalue()


def _gglasso_iters(text: str) -> float:
    found = re.findall(r"after (\d+) iterations", text)
    return float(found[-1]) if found else math.nan


def ours_single(S: np.ndarray, alpha: float, nthreads: int):
    from methods.cm_glasso.solver import graphical_lasso

    def run(tol: float):
        res = graphical_lasso(S, alpha, tol=tol * 1e-3, rtol=tol, max_iter=20000, return_result=True, threads=nthreads)
        return res.theta0 + res.delta[0], res.n_iter
    return run


def sklearn_single(S: np.ndarray, alpha: float):
    import warnings

    from sklearn.covariance import graphical_lasso
    from sklearn.exceptions import ConvergenceWarning

    def run(tol: float):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            _, prec, it = graphical_lasso(S, alpha, tol=tol, enet_tol=tol, max_iter=1000, return_n_iter=True)
        return prec, it
    return run


def gglasso_single(S: np.ndarray, alpha: float):
    from gglasso.solver.single_admm_solver import ADMM_SGL

    def run(tol: float):
        (sol, _), text = _quiet(lambda: ADMM_SGL(S, alpha, np.eye(len(S)), tol=tol * 1e-3, rtol=tol, max_iter=20000))
        return sol["Theta"], _gglasso_iters(text)
    return run


def ours_joint(S: np.ndarray, n: np.ndarray, lam1: float, lam2: float, nthreads: int):
    from methods.cm_glasso.solver import solve_joint_glasso

    def run(tol: float):
        res = solve_joint_glasso(S, n, lam1, lam2, tol=tol * 1e-3, rtol=tol, max_iter=20000, threads=nthreads)
        return (res.theta0, res.delta), res.n_iter
    return run


def gglasso_joint(S: np.ndarray, l1: float, l2: float, reg: str):
    from gglasso.helper.utils import get_K_identity
    from gglasso.solver.admm_solver import ADMM_MGL

    k, p, _ = S.shape

    def run(tol: float):
        (sol, _), text = _quiet(lambda: ADMM_MGL(S, l1, l2, reg, get_K_identity(k, p), tol=tol * 1e-3, rtol=tol,
                                                 max_iter=20000))
        return sol["Theta"], _gglasso_iters(text)
    return run


def cvxpy_joint(S: np.ndarray, n: np.ndarray, lam1: float, lam2: float) -> tuple[float, float, str]:
    """(§3.5 objective, seconds, solver name) from cvxpy with a conic solver. The objective is divided by N inside
    (better conditioned for the interior-point method) and multiplied back."""
    import cvxpy as cp

    k, p, _ = S.shape
    N = float(n.sum())
    off = 1.0 - np.eye(p)
    t0 = cp.Variable((p, p), symmetric=True)
    ds = [cp.Variable((p, p), symmetric=True) for _ in range(k)]
    # tr(S X) written as the entry-wise sum of S * X: cvxpy expands the matrix product S @ X into a p^2 x p^2
    # coefficient matrix per class (23 GB and an out-of-memory kill at p = 100)
    smooth = sum((n[j] / N) * (-cp.log_det(t0 + ds[j]) + cp.sum(cp.multiply(S[j], t0 + ds[j]))) for j in range(k))
    pen = (lam1 / N) * cp.sum(cp.abs(cp.multiply(off, t0))) + (lam2 / N) * sum(cp.sum(cp.abs(cp.multiply(off, d)))
                                                                                 for d in ds)
    prob = cp.Problem(cp.Minimize(smooth + pen), [cp.diag(t0) == 0])
    solver = "CLARABEL" if "CLARABEL" in cp.installed_solvers() else "SCS"
    t = time.perf_counter()
    prob.solve(solver=solver)
    return float(prob.value) * N, time.perf_counter() - t, solver


# --- measurement ---------------------------------------------------------------------------------------------------
def _timed(fn: Callable, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def time_to_gap(run: Callable, objective: Callable, reference: float, repeats: int) -> dict:
    """Walk the tolerance ladder until ``objective(output)`` is within GAP of ``reference``; the median time of
    ``repeats`` runs at that tolerance, its iterations and gap. ``reached`` False if the ladder or budget ran out."""
    run(LADDER[0])   # warm-up: imports, allocator, any JIT compilation (the fresh-process rows measure those)
    last = {}
    for tol in LADDER:
        (out, iters), secs = _timed(run, tol)
        gap = (objective(out) - reference) / abs(reference)
        last = {"tol": tol, "iterations": float(iters), "rel_gap": gap, "seconds": secs, "reached": gap <= GAP}
        if gap <= GAP:
            times = [secs] + [_timed(run, tol)[1] for _ in range(repeats - 1)]
            last["seconds"] = statistics.median(times)
            return last
        if secs > BUDGET_S:
            break
    return last


def eigh_floor(k: int, p: int, nthreads: int, reps: int = 30) -> float:
    """Seconds of one torch.linalg.eigh of a batch of k symmetric p x p float64 matrices (median)."""
    import torch

    a = torch.randn(k, p, p, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a = a + a.transpose(1, 2)
    times = []
    with threads(nthreads):
        torch.linalg.eigh(a)
        for _ in range(reps):
            times.append(_timed(torch.linalg.eigh, a)[1])
    return statistics.median(times)


def _row(section, nthreads, p, solver, problem, res: dict, floor: float, note="") -> Row:
    r = Row(section, nthreads, p, solver, problem, note=note, floor_ms=floor * 1e3)
    if res:
        r.seconds, r.iterations, r.tol, r.rel_gap = res["seconds"], res["iterations"], res["tol"], res["rel_gap"]
        if res["iterations"] and not math.isnan(res["iterations"]):
            r.ms_per_iter = 1e3 * res["seconds"] / res["iterations"]
            r.per_iter_vs_floor = r.ms_per_iter / r.floor_ms
        if not res["reached"]:
            r.note = (note + "; " if note else "") + f"did not reach {GAP:g} (best gap {res['rel_gap']:.1e})"
    return r


def _relative_to_ours(rows: list[Row]) -> None:
    ours = {(r.section, r.threads, r.p): r.seconds for r in rows if r.solver == "ours"}
    for r in rows:
        base = ours.get((r.section, r.threads, r.p))
        if base and not math.isnan(r.seconds):
            r.vs_ours = r.seconds / base


def have(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def single_graph_rows(ps, nthreads: int, repeats: int, report: Report) -> list[Row]:
    rows = []
    for p in ps:
        S, _ = perf_problem(p, 1)
        S1 = S[0]
        floor = eigh_floor(1, p, nthreads)
        with threads(nthreads):
            ref_prec, _ = ours_single(S1, ALPHA, nthreads)(1e-10)
            reference = sgl_objective(S1, ref_prec, ALPHA)
            obj = lambda m: sgl_objective(S1, m, ALPHA)  # noqa: E731
            rows.append(_row("K=1", nthreads, p, "ours", "single glasso",
                             time_to_gap(ours_single(S1, ALPHA, nthreads), obj, reference, repeats), floor))
            rows.append(_row("K=1", nthreads, p, "scikit-learn graphical_lasso", "single glasso",
                             time_to_gap(sklearn_single(S1, ALPHA), obj, reference, repeats), floor,
                             "enet_tol = tol"))
            if have("gglasso"):
                rows.append(_row("K=1", nthreads, p, "gglasso ADMM_SGL", "single glasso",
                                 time_to_gap(gglasso_single(S1, ALPHA), obj, reference, repeats), floor))
    if not have("gglasso"):
        report.skipped.append("gglasso ADMM_SGL (K = 1) and ADMM_MGL (K = 3): gglasso is not installed")
    return rows


def joint_rows(ps, nthreads: int, repeats: int, report: Report, cvxpy_max_p: int) -> list[Row]:
    from methods.cm_glasso.solver import objective as joint_objective

    rows = []
    k = 3
    for p in ps:
        S, n = perf_problem(p, k)
        lam2 = ALPHA * n[0]
        lam1 = 1.5 * lam2
        floor = eigh_floor(k, p, nthreads)
        with threads(nthreads):
            (t0, d), _ = ours_joint(S, n, lam1, lam2, nthreads)(1e-10)
            reference = joint_objective(S, n, t0, d, lam1, lam2)
            obj = lambda out: joint_objective(S, n, out[0], out[1], lam1, lam2)  # noqa: E731
            rows.append(_row("K=3", nthreads, p, "ours", "joint §3.5",
                             time_to_gap(ours_joint(S, n, lam1, lam2, nthreads), obj, reference, repeats), floor))
            if have("cvxpy") and p <= cvxpy_max_p:
                value, secs, name = cvxpy_joint(S, n, lam1, lam2)
                r = Row("K=3", nthreads, p, f"cvxpy ({name})", "joint §3.5", seconds=secs, floor_ms=floor * 1e3,
                        rel_gap=(value - reference) / abs(reference),
                        note="reference objective from a generic conic solver; rel_gap = cvxpy - ours")
                rows.append(r)
            elif have("cvxpy"):
                report.skipped.append(f"cvxpy at p = {p} (> {cvxpy_max_p}: its conic form of three {p}x{p} "
                                      "log-det cones needs more memory than this machine has)")
            if have("gglasso"):
                for reg in ("GGL", "FGL"):
                    l1, l2 = ALPHA, ALPHA / 2
                    ref_out, _ = gglasso_joint(S, l1, l2, reg)(1e-10)
                    g_ref = mgl_objective(S, ref_out, l1, l2, reg)
                    g_obj = lambda m, reg=reg: mgl_objective(S, m, l1, l2, reg)  # noqa: E731
                    rows.append(_row("K=3", nthreads, p, f"gglasso ADMM_MGL {reg}", f"{reg} (own penalty)",
                                     time_to_gap(gglasso_joint(S, l1, l2, reg), g_obj, g_ref, repeats), floor))
    if not have("cvxpy"):
        report.skipped.append("cvxpy reference objective (K = 3): cvxpy is not installed")
    return rows


def path_rows(p: int, nthreads: int, n_lambdas: int = 20) -> list[Row]:
    """A warm-started path of n_lambdas values against as many cold solves, K = 1 and K = 3, same tolerances."""
    from methods.cm_glasso.path import lambda_grid, solve_path
    from methods.cm_glasso.solver import solve_joint_glasso

    rows = []
    for k, ratio in ((1, math.inf), (3, 1.5)):
        S, n = perf_problem(p, k)
        lams = lambda_grid(S, n, n_lambdas, 0.1, ratio)
        kw = {"tol": 1e-9, "rtol": 1e-6, "threads": nthreads}
        shared = (lambda lam: math.inf) if math.isinf(ratio) else (lambda lam: ratio * lam)
        with threads(nthreads):
            cold, t_cold = _timed(lambda: [solve_joint_glasso(S, n, shared(lam), lam, **kw) for lam in lams])
            warm, t_warm = _timed(lambda: solve_path(S, n, lams, ratio, **kw))
        gap = max(abs(w.objective - c.objective) / abs(c.objective) for w, c in zip(warm, cold))
        rows.append(Row("path", nthreads, p, f"{n_lambdas} cold solves", f"K={k}", seconds=t_cold,
                        iterations=sum(r.n_iter for r in cold)))
        rows.append(Row("path", nthreads, p, f"warm path of {n_lambdas}", f"K={k}", seconds=t_warm,
                        iterations=sum(r.n_iter for r in warm), vs_ours=t_cold / t_warm,
                        note=f"vs_ours here = cold / warm speedup; max objective difference {gap:.1e}"))
    return rows


# the fresh processes read the problem from a file: they time the interpreter, the solver's imports and its first
# solve, nothing of this module
FRESH_OURS = """
import numpy as np
from methods.cm_glasso.solver import solve_joint_glasso
with np.load({path!r}) as f:
    S, n = f["S"], f["n"]
solve_joint_glasso(S, n, 1.5 * 0.1 * n[0], 0.1 * n[0], rtol=1e-6)
"""
FRESH_GGLASSO = """
import numpy as np
from gglasso.helper.utils import get_K_identity
from gglasso.solver.admm_solver import ADMM_MGL
with np.load({path!r}) as f:
    S = f["S"]
ADMM_MGL(S, 0.1, 0.05, "GGL", get_K_identity(3, {p}), tol=1e-9, rtol=1e-6)
"""


def fresh_process_rows(p: int, nthreads: int, report: Report) -> list[Row]:
    """Wall time of a new interpreter that imports the solver and solves one K = 3 problem."""
    root = Path(__file__).resolve().parents[2]  # the repository: methods/ is importable from it
    env_threads = {k: str(nthreads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                              "NUMBA_NUM_THREADS")}
    env = {**os.environ, **env_threads, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rows = []
    cases = [("ours", FRESH_OURS)] + ([("gglasso ADMM_MGL GGL", FRESH_GGLASSO)] if have("gglasso") else [])
    with tempfile.TemporaryDirectory(prefix="mmrl-perf-glasso-") as tmp:
        path = Path(tmp) / "problem.npz"
        S, n = perf_problem(p, 3)
        np.savez(path, S=S, n=n)
        for name, code in cases:
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", code.format(p=p, path=str(path))], env=env, cwd=root,
                                 capture_output=True, text=True)
            secs = time.perf_counter() - t
            note = "interpreter + imports + first solve" + ("" if out.returncode == 0 else
                                                            f"; FAILED: {out.stderr[-200:]}")
            rows.append(Row("fresh process", nthreads, p, name, "K=3 first solve", seconds=secs, note=note))
    if not have("gglasso"):
        report.skipped.append("fresh-process comparison with gglasso: gglasso is not installed")
    return rows


def perf_glasso(ps=(30, 100, 200), thread_counts=(1, 2), repeats: int = 3, path_p: int = 100, fresh_p: int = 100,
                cvxpy_max_p: int = CVXPY_MAX_P, sections: tuple[str, ...] | None = None) -> Report:
    sections = all_sections() if sections is None else sections
    report = Report()
    for nthreads in thread_counts:
        if "K=1" in sections:
            report.rows += single_graph_rows(ps, nthreads, repeats, report)
        if "K=3" in sections:
            report.rows += joint_rows(ps, nthreads, repeats, report, cvxpy_max_p)
        if "path" in sections:
            report.rows += path_rows(path_p, nthreads)
        if "fresh" in sections:
            report.rows += fresh_process_rows(fresh_p, nthreads, report)
        for name, rows in EXTRA_SECTIONS.items():
            if name in sections:
                report.rows += rows(nthreads)
    _relative_to_ours(report.rows)
    report.skipped = list(dict.fromkeys(report.skipped))
    return report


def write_csv(report: Report, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(Row("", 0, 0, "", "")).keys()))
        w.writeheader()
        for r in report.rows:
            w.writerow(asdict(r))
    return path


def table(report: Report):
    from rich.table import Table

    t = Table(title="perf glasso: time to a 1e-6 relative objective gap (median), per iteration against the floor")
    cols = ("section", "threads", "p", "solver", "problem", "seconds", "iterations", "ms_per_iter", "floor_ms",
            "per_iter_vs_floor", "vs_ours", "rel_gap", "note")
    for c in cols:
        t.add_column(c, justify="right" if c not in ("section", "solver", "problem", "note") else "left")

    def fmt(v):
        if isinstance(v, float):
            if math.isnan(v):
                return "-"
            return f"{v:.1e}" if abs(v) < 1e-2 and v != 0 else f"{v:.3g}"
        return str(v)

    for r in report.rows:
        d = asdict(r)
        t.add_row(*(fmt(d[c]) for c in cols))
    return t


def print_perf_glasso(console, report: Report, csv_path: Path | None = None) -> None:
    """The table, the comparisons that were skipped (and why), and the CSV it was written to."""
    console.print(table(report))
    for line in report.skipped:
        console.print(f"skipped: {line}")
    if not report.skipped:
        console.print("skipped: nothing (gglasso and cvxpy are installed)")
    if csv_path is not None:
        console.print(f"csv: {write_csv(report, csv_path)}")


def add_arguments(parser) -> None:
    parser.add_argument("--repeats", type=int, default=3, help="timed runs at the tolerance that reaches the target "
                                                               "(median)")
    parser.add_argument("--sections", nargs="+", choices=all_sections(), default=list(all_sections()),
                        help="which parts to measure (default: all; screened = the p = 500 screened path, minutes)")


@register_perf_verb("glasso", help="CM-GLasso's ADMM against scikit-learn, gglasso and cvxpy, time to equal accuracy",
                    add_arguments=add_arguments)
def run(args, console, out_dir) -> None:
    print_perf_glasso(console, perf_glasso(repeats=args.repeats, sections=tuple(args.sections)), out_dir / "glasso.csv")
