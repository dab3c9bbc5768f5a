"""The joint common-specific graphical lasso (docs/methods.md §3.5) solved by scaled ADMM (§3.6).

    min  sum_k n_k [ -logdet(Theta_0 + Delta_k) + tr(S_k (Theta_0 + Delta_k)) ]
         + lam_shared sum_{i!=j} P_ij |Theta_0,ij| + lam_specific sum_k sum_{i!=j} P_ij |Delta_k,ij|

Theta_0 is symmetric with a zero diagonal; Delta_k is symmetric with an unpenalised diagonal. ADMM splits
Omega_k = Theta_0 + Delta_k: Omega carries the log-determinant (one batched eigendecomposition over the K classes
per iteration), (Theta_0, Delta) carry the penalty (an exact entry-wise minimisation).

[reconstructed] The formulation and the ADMM are our own reading of the paper's abstract, built from standard parts:
the eigen-prox and residual/rho rules of Boyd et al. 2011 (§6.5, §3.3, §3.4.1), the common-substructure
decomposition of Hara & Washio 2013 and the weighted penalty of Tailored GLasso (Lingjaerde et al. 2021). Nothing
is taken from GGLasso's or scikit-learn's code; only the textbook formulas carry over.

Design choices that are ours (and why):
* The objective is divided by N = sum_k n_k inside the solver (class weights w_k = n_k / N, thresholds / N), so
  that rho ~ 1 is the right scale whatever the sample sizes; ``rho``, the residuals and their tolerances are in
  these per-sample units. The reported ``objective`` is the undivided §3.5 value.
* The (Theta_0, Delta) step is solved exactly per entry by sorting breakpoints (see :func:`split_entries`), not by
  a fixed number of block-coordinate sweeps, so every ADMM iteration is an exact ADMM iteration.
* When lam_shared >= K lam_specific no edge can be cheaper in Theta_0 than spread over the Deltas, so Theta_0 = 0
  exactly and the step is a soft-threshold (the K independent graphical lassos, including K = 1).
* Everything runs on float64 torch tensors on the device of ``device``: the same code runs batched on a GPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch

DTYPE = torch.float64
RHO_MU, RHO_TAU = 10.0, 2.0  # Boyd §3.4.1: rebalance when one residual exceeds the other 10x, by a factor 2
RELAX = 1.8                  # Boyd §3.4.3 over-relaxation; see run_admm
BALANCES = ("relative", "absolute")
CHECK_EVERY = 2              # the residuals every m-th iteration; see run_admm


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with n threads in torch's intra-op pool (its OpenMP and MKL, the one threading layer the
    solver uses) and every BLAS/OpenMP pool threadpoolctl finds (numpy's OpenBLAS), restored afterwards.

    Why the default solve uses one: each iteration is one LAPACK call plus a handful of small element-wise
    kernels, which a second thread barely speeds up; on 2 shared cores the OpenMP pool of those small kernels
    was measured 20x slower (p = 12, K = 3: 0.06 s with one thread, 1.2 s with two under load), and a second
    BLAS pool running beside torch's starves both (docs/performance.md, gglasso with two threads).
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        with _thread_pools().limit(limits=int(n)):
            yield
    finally:
        torch.set_num_threads(before)


@functools.lru_cache(maxsize=1)
def _thread_pools():
    """threadpoolctl's view of the loaded BLAS/OpenMP pools, found once: finding them scans every shared library of
    the process (2 ms with torch loaded, 15x a whole p = 30 iteration); pools loaded after the first solve are left
    alone, which costs nothing here (the solver's own linear algebra is torch's)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


# --- the two ADMM sub-steps, as pure functions ----------------------------------------------------------------
def omega_step(A: torch.Tensor, S: torch.Tensor, n: torch.Tensor, rho: float) -> torch.Tensor:
    """argmin_Omega n_k (-logdet Omega + tr(S_k Omega)) + rho/2 ||Omega - A_k||_F^2 for every class at once.

    The optimum solves rho Omega - n Omega^-1 = rho A - n S (Boyd et al. 2011 §6.5): with A - (n / rho) S =
    Q diag(d) Q^T, Omega = Q diag(theta) Q^T with theta the positive root of theta^2 - d theta - n / rho = 0
    (:func:`positive_root`). A, S: [K, p, p]; n: [K].
    """
    c = (n / rho).reshape(-1, 1)
    d, q = torch.linalg.eigh(A - c.unsqueeze(-1) * S)
    return (q * positive_root(d, 2.0 * c, 2.0 * c.sqrt()).unsqueeze(-2)) @ q.transpose(-1, -2)


def positive_root(d: torch.Tensor, c2: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The positive root (d + sqrt(d^2 + 4c)) / 2 of theta^2 - d theta - c = 0 (c > 0), given c2 = 2c, h = 2 sqrt(c).

    For d << 0 that form cancels catastrophically. theta = max(d, 0) + 2c / (|d| + sqrt(d^2 + 4c)) is the same number
    for either sign (for d < 0 it is c over the other root's magnitude; for d >= 0 it is d + c / theta, the equation
    itself) and adds only terms of one sign: one expression, no branch to evaluate twice.
    """
    return torch.addcdiv(d.clamp_min(0.0), c2, torch.hypot(d, h).add_(d.abs()))


def soft_threshold(x: torch.Tensor, t: torch.Tensor, neg_t: torch.Tensor | None = None) -> torch.Tensor:
    """sign(x) max(|x| - t, 0), written as x - clip(x, -t, t) (no sign/abs temporaries; ``neg_t`` = -t if known)."""
    return x - torch.clamp(x, -t if neg_t is None else neg_t, t)


def split_entries(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The exact minimiser of a|t| + b sum_k |d_k| + 1/2 sum_k (c_k - t - d_k)^2 for each of E entries.

    c: [K, E]; a, b: [E] (a may be +inf). For fixed t the d_k are soft-thresholds, d_k = S_b(c_k - t); what is left
    is f(t) = a|t| + sum_k H_b(c_k - t) with H_b the Huber function, whose derivative is
    -g(t) = -sum_k clip(c_k - t, -b, b). So t = 0 iff |g(0)| <= a; otherwise g(t) = a sign(g(0)) has a root where
    g, a non-increasing piecewise-linear function with breakpoints c_k -+ b, crosses that level: evaluate g at the
    2K breakpoints (O(K^2) per entry, K the few classes) and interpolate linearly between the last breakpoint above
    the level and the first one at or below it. Only the entries with t != 0 (few, at sparse solutions) pay for
    that. Returns (t [E], d [K, E]).
    """
    t = shared_part(c, a, b)
    return t, soft_threshold(c - t, b)


def shared_part(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor, candidates: torch.Tensor | None = None,
                neg_b: torch.Tensor | None = None) -> torch.Tensor:
    """t of :func:`split_entries` alone; entries outside ``candidates`` (bool [E]) are left at 0 unsolved."""
    g0 = torch.clamp(c, -b if neg_b is None else neg_b, b).sum(0)
    t = torch.zeros_like(g0)
    hit = g0.abs() > a
    active = (hit if candidates is None else hit & candidates).nonzero().squeeze(1)
    if not active.numel():
        return t
    # by symmetry solve g(t) = +a with t > 0 (g(0) != 0 on the active entries, so its sign is +-1)
    sign = g0.index_select(0, active).sign_()
    cs = c.index_select(1, active).mul_(sign)
    ba, aa = b.index_select(0, active), a.index_select(0, active)
    v = torch.cat([cs - ba, cs + ba])                                    # [2K, E'] breakpoints
    g = torch.clamp(cs - v.unsqueeze(1), -ba, ba).sum(1)                 # g at each breakpoint
    # g(min v) = K b > a >= -K b = g(max v), so both sides of the crossing hold a breakpoint
    above = g > aa
    below = ~above
    v0, g_0 = v.masked_fill(below, -math.inf).amax(0), g.masked_fill(below, math.inf).amin(0)
    v1, g_1 = v.masked_fill(above, math.inf).amin(0), g.masked_fill(above, -math.inf).amax(0)
    root = (g_0 - aa).mul_(v1 - v0).div_((g_0 - g_1).clamp_min_(torch.finfo(c.dtype).tiny)).add_(v0)
    return t.index_copy_(0, active, root.mul_(sign))


# --- problem, state and result -----------------------------------------------------------------------------------
@dataclass
class AdmmState:
    """Everything a warm start needs: the split variables, the scaled duals (per-sample units) and rho."""

    omega: torch.Tensor   # [K, p, p]
    theta0: torch.Tensor  # [p, p]
    delta: torch.Tensor   # [K, p, p]
    u: torch.Tensor       # [K, p, p]
    rho: float
    # a screened solve (screening.py) runs each block with its own rho: node i's block's rho, NaN for a node solved
    # in closed form; ``u`` is then the whole problem's unscaled dual divided by ``rho``. None: one rho everywhere
    node_rho: torch.Tensor | None = None


@dataclass(frozen=True)
class JointGLassoResult:
    """The solution of §3.5. ``precision`` = Omega_k (positive definite; use it for likelihoods), ``theta0`` and
    ``delta`` are the sparse estimates (use their supports for structure); they agree to ``primal_residual``."""

    theta0: np.ndarray        # [p, p], zero diagonal
    delta: np.ndarray         # [K, p, p]
    precision: np.ndarray     # [K, p, p]
    n_iter: int
    converged: bool
    objective: float          # the §3.5 objective at (theta0, delta); inf if some Theta_k is not PD
    primal_residual: float    # r = sqrt(sum_k ||Omega_k - Theta_0 - Delta_k||^2)
    dual_residual: float      # s = rho sqrt(sum_k ||Z_k - Z_k^old||^2), per-sample units
    eps_primal: float
    eps_dual: float
    rho: float
    state: AdmmState | None = field(default=None, repr=False, compare=False)


@dataclass
class _Problem:
    S: torch.Tensor        # [K, p, p]; [K, B, p, p] for a batch of B independent blocks of one size (screening.py)
    n: np.ndarray          # [K] sample counts
    w: torch.Tensor        # [K] n_k / N
    P: torch.Tensor        # [p, p] penalty weights, zero diagonal ([B, p, p] for a batch)
    upper: torch.Tensor    # [p * p] bool, the strict upper triangle of a flattened [p, p] ([B * p * p])
    pen0: torch.Tensor     # [p, p] lam_shared P / N (diagonal 0; may be inf)
    pen1: torch.Tensor     # [p, p] lam_specific P / N (diagonal 0)
    decoupled: bool        # lam_shared P >= K lam_specific P everywhere: Theta_0 = 0

    @property
    def k(self) -> int:
        return self.S.shape[0]

    @property
    def p(self) -> int:
        return self.S.shape[-1]

    @property
    def batch(self) -> int:
        """How many independent p x p blocks the problem holds (1 unless screening batched several)."""
        return self.S[0].numel() // (self.p * self.p)


# --- input checks: one clear ValueError per problem ----------------------------------------------------------------
def _fail(what: str) -> None:
    raise ValueError(f"solve_joint_glasso: {what}")


def _as_tensor(x: Any, device) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(device=device, dtype=DTYPE)
    return torch.as_tensor(np.asarray(x, dtype=np.float64), device=device)


def check_inputs(S, n, lam_shared: float, lam_specific: float, weights=None, device=None) -> _Problem:
    """Validate and convert (S, n, lambdas, P) into a :class:`_Problem`; raises ValueError naming what is wrong."""
    return with_lambdas(check_data(S, n, weights, device), lam_shared, lam_specific)


def check_data(S, n, weights=None, device=None) -> _Problem:
    """Validate (S, n, P) once (a path reuses it with :func:`with_lambdas`); the penalties are still unset."""
    if device is None:
        device = S.device if isinstance(S, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)
    try:
        S = _as_tensor(S, device)
    except (TypeError, ValueError) as e:
        _fail(f"S must be a numeric array of shape [K, p, p], got {type(S).__name__} ({e})")
    if S.dim() == 2:
        S = S.unsqueeze(0)
    if S.dim() != 3 or S.shape[1] != S.shape[2]:
        _fail(f"S must have shape [K, p, p] (or [p, p] for one class), got {tuple(S.shape)}")
    k, p = S.shape[0], S.shape[1]
    if k == 0:
        _fail("S holds no class (K = 0); give at least one [p, p] covariance matrix")
    if p == 0:
        _fail("S has p = 0 variables; give at least one")
    if not torch.isfinite(S).all():
        _fail("S contains NaN or infinite values; every entry must be finite")
    scale = max(float(S.abs().max()), 1.0)
    asym = float((S - S.transpose(1, 2)).abs().amax(dim=(1, 2)).max())
    if asym > 1e-8 * scale:
        bad = int((S - S.transpose(1, 2)).abs().amax(dim=(1, 2)).argmax())
        _fail(f"S[{bad}] is not symmetric (max |S - S^T| = {asym:.3g}); covariance matrices must be symmetric")
    S = (S + S.transpose(1, 2)) / 2
    low = torch.linalg.eigvalsh(S)[:, 0]
    if float(low.min()) < -1e-8 * scale:
        bad = int(low.argmin())
        _fail(f"S[{bad}] is not positive semi-definite (smallest eigenvalue {float(low.min()):.3g}); "
              "covariance matrices must be PSD")
    n = np.atleast_1d(np.asarray(n, dtype=np.float64))
    if n.shape != (k,):
        _fail(f"n must hold one sample count per class, shape ({k},), got shape {n.shape}")
    if not np.isfinite(n).all() or (n <= 0).any():
        _fail(f"sample counts n must be finite and > 0, got {n.tolist()}")
    if weights is None:
        P = torch.ones(p, p, dtype=DTYPE, device=device)
    else:
        try:
            P = _as_tensor(weights, device)
        except (TypeError, ValueError) as e:
            _fail(f"weights must be a numeric [p, p] array, got {type(weights).__name__} ({e})")
        if P.shape != (p, p):
            _fail(f"weights must have shape ({p}, {p}) like S, got {tuple(P.shape)}")
        if not torch.isfinite(P).all() or (P < 0).any():
            _fail("weights must be finite and >= 0")
        if float((P - P.t()).abs().max()) > 1e-10 * max(float(P.abs().max()), 1.0):
            _fail("weights must be symmetric")
    P = P.clone()
    P.fill_diagonal_(0.0)
    zero = torch.zeros_like(P)
    upper = torch.ones(p, p, dtype=torch.bool, device=device).triu(1).reshape(-1)
    return _Problem(S, n, torch.as_tensor(n / n.sum(), dtype=DTYPE, device=device), P, upper, zero, zero, True)


def with_lambdas(prob: _Problem, lam_shared: float, lam_specific: float) -> _Problem:
    """The problem with these penalties: thresholds lam P / N (per-sample units) and the decoupling flag."""
    for name, lam in (("lam_shared", lam_shared), ("lam_specific", lam_specific)):
        if not isinstance(lam, (int, float, np.floating, np.integer)) or math.isnan(lam) or lam < 0:
            _fail(f"{name} must be a number >= 0, got {lam!r}")
    if math.isinf(lam_specific):
        _fail("lam_specific must be finite (lam_shared may be inf, which forces Theta_0 = 0)")
    P, k, p = prob.P, prob.k, prob.p
    N = float(prob.n.sum())
    pen1 = P * (float(lam_specific) / N)
    # inf * 0 where P = 0 (the diagonal) would be NaN: those entries of Theta_0 are unpenalised or fixed at 0
    pen0 = torch.where(P > 0, P * (float(lam_shared) / N), torch.zeros_like(P)) if math.isinf(lam_shared) \
        else P * (float(lam_shared) / N)
    off = ~torch.eye(p, dtype=torch.bool, device=P.device)
    decoupled = bool((pen0[off] >= k * pen1[off]).all()) if p > 1 else True
    return dataclasses.replace(prob, pen0=pen0, pen1=pen1, decoupled=decoupled)


# --- the ADMM ------------------------------------------------------------------------------------------------------
def _thresholds(prob: _Problem, rho: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lam_shared P / (N rho) flattened, inf off the strict upper triangle, which :func:`_z_step` solves for
    Theta_0 and mirrors; lam_specific P / (N rho); its negative): fixed while rho is."""
    b = prob.pen1 / rho
    a = torch.where(prob.upper, prob.pen0.reshape(-1) / rho, math.inf)
    return a, b, -b


def _z_step(c: torch.Tensor, prob: _Problem, rho: float, thresholds=None,
            zero: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Theta_0, Delta) = argmin of the penalty + rho/2 sum_k ||C_k - Theta_0 - Delta_k||^2 (exact, entry-wise),
    returned as (Theta_0, X, U) with X = C - Theta_0 and U = clip(X, -b, b): Delta = X - U (the soft-threshold,
    exact zeros included) and U = C - Theta_0 - Delta is the next scaled dual, so the loop needs neither Delta nor
    a subtraction for U until it reports.

    Runs on whole [p, p] matrices: the zero diagonal of the thresholds gives Theta_0,ii = 0 and Delta_k,ii = C_k,ii
    without a special case, and no gather/scatter of a triangle is needed (which costs more than the duplicated
    entries on a CPU); only the few entries where Theta_0 != 0 are solved on the upper triangle (the shared
    threshold is infinite elsewhere) and mirrored. ``zero``: the Theta_0 = 0 to return when decoupled (the loop
    allocates it once).
    """
    k, shape = prob.k, c.shape[1:]
    a, b, nb = thresholds if thresholds is not None else _thresholds(prob, rho)
    if prob.decoupled:
        zero = torch.zeros(shape, dtype=c.dtype, device=c.device) if zero is None else zero
        return zero, c, torch.clamp(c, nb, b)
    t = shared_part(c.reshape(k, -1), a, b.reshape(-1), neg_b=nb.reshape(-1)).reshape(shape)
    t = t + t.transpose(-1, -2)
    x = c - t
    return t, x, torch.clamp(x, nb, b)


def initial_state(prob: _Problem, rho: float) -> AdmmState:
    """Omega_k = Delta_k = diag(1 / S_k,ii), Theta_0 = 0, U = 0.

    §3.6 starts from the identity; the diagonal MLE is the exact solution for large lambdas and the same as the
    identity on standardised variables, so it is never worse and saves iterations on unscaled data.
    """
    diag = torch.diagonal(prob.S, dim1=1, dim2=2)
    inv = 1.0 / torch.where(diag > 0, diag, torch.ones_like(diag))
    delta = torch.diag_embed(inv)
    return AdmmState(delta.clone(), torch.zeros(prob.S.shape[1:], dtype=DTYPE, device=prob.S.device), delta,
                     torch.zeros_like(delta), float(rho))


def run_admm(prob: _Problem, state: AdmmState, tol: float, rtol: float, max_iter: int, relax: float = RELAX,
             balance: str = "relative", check_every: int = CHECK_EVERY) -> tuple[AdmmState, dict]:
    """Iterate §3.6 from ``state`` until the Boyd residual criterion holds or ``max_iter`` iterations.

    ``relax`` is Boyd §3.4.3's over-relaxation alpha (1 = plain ADMM): the (Theta_0, Delta) and dual steps see
    alpha Omega + (1 - alpha) Z_old. ``balance`` chooses what the 10x/2x rho rule compares: "absolute" is §3.6 as
    written (r against s); "relative" compares r / eps_pri with s / eps_dual (Wohlberg 2017, residual balancing on
    the normalised residuals), which keeps rho balanced where the two tolerances differ by orders of magnitude.
    Measured on the perf problems (chain + random edges, n = 500 per class): alpha = 1.8 with relative balancing
    reaches a 1e-6 relative objective gap in about half the iterations of the plain §3.6 rule for K = 1 and a
    third for K = 3.

    The residuals (and with them the stopping test and the rho rule) are evaluated every ``check_every``
    iterations and at ``max_iter``: the five norms and their trip to the host cost about 15 us on a CPU, an eighth
    of a p = 30, K = 1 iteration, and a device synchronisation on a GPU. ``n_iter`` counts the iterations done,
    so a solve may run up to ``check_every - 1`` iterations past the first one that met the tolerances, and rho
    moves at most once per check. Measured on the perf problems (p = 30, 100, 200; K = 1, 3; rtol 1e-4 and 1e-6,
    one thread), every 2nd iteration was neutral to 10 % faster per solve than every one; every 5th and beyond
    lost more to the extra iterations than it saved at K = 3.
    """
    k, p = prob.k, prob.p
    omega, theta0, delta, u, rho = state.omega, state.theta0, state.delta, state.u, state.rho
    # per iteration: one eigendecomposition, one matrix product and ~12 element-wise passes over [K, p, p] (in
    # place or fused where that is free); everything that depends on rho only is recomputed when rho changes
    ones = (1,) * (prob.S.dim() - 2)   # a batch of blocks ([K, B, p, p]) has one more axis than [K, p, p]
    w = prob.w.view(-1, *ones)
    ws = w.unsqueeze(-1) * prob.S
    zero = torch.zeros_like(theta0) if prob.decoupled else None
    z = theta0.unsqueeze(0) + delta
    abs_tol = math.sqrt(k * prob.batch) * p * tol   # Boyd's sqrt(#entries) eps_abs: sqrt(K B p^2) = sqrt(K B) p
    info = {"n_iter": 0, "converged": False, "r": math.inf, "s": math.inf, "eps_pri": 0.0, "eps_dual": 0.0}
    consts_rho = None
    for it in range(1, max_iter + 1):
        if consts_rho != rho:
            # the Omega-step in units of 1 / rho: eigh(Z - U - w S / rho), theta^2 - d theta - w / rho = 0
            thresholds, ws_rho, c2, h = _thresholds(prob, rho), ws / rho, (2.0 / rho) * w, (4.0 / rho * w).sqrt_()
            consts_rho = rho
        d, q = torch.linalg.eigh(torch.sub(z, u).sub_(ws_rho))
        omega = _matmul(q * positive_root(d, c2, h).unsqueeze(-2), q.transpose(-1, -2))
        c = torch.add(u, omega) if relax == 1.0 else torch.add(u, omega, alpha=relax).add_(z, alpha=1.0 - relax)
        theta0, x, clip = _z_step(c, prob, rho, thresholds, zero)
        u = clip
        z_old, z = z, c - clip   # = Theta_0 + Delta
        if it % check_every and it < max_iter:
            continue
        # one host sync per check: the five norms leave the device together
        r, dz, n_om, n_z, n_u = torch.stack(torch._foreach_norm([omega - z, z - z_old, omega, z, u])).tolist()
        s = rho * dz
        eps_pri = abs_tol + rtol * max(n_om, n_z)
        eps_dual = abs_tol + rtol * rho * n_u
        info.update(n_iter=it, r=r, s=s, eps_pri=eps_pri, eps_dual=eps_dual)
        if r <= eps_pri and s <= eps_dual:
            info["converged"] = True
            break
        rr, ss = (r / eps_pri, s / eps_dual) if balance == "relative" else (r, s)
        if rr > RHO_MU * ss:
            rho = rho * RHO_TAU
            u = u / RHO_TAU   # scaled duals U = Y / rho follow rho (not in place: ``clip`` gives Delta)
        elif ss > RHO_MU * rr:
            rho = rho / RHO_TAU
            u = u * RHO_TAU
    if max_iter >= 1:   # Delta = soft-threshold of X, from the last iteration's clip (before any rho rescale)
        delta = x - clip
    return AdmmState(omega, theta0, delta, u, rho), info


def _matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b; bmm where the operands are 3-d, which skips matmul's dispatch (a tenth of the product at p = 30)."""
    return torch.bmm(a, b) if a.dim() == 3 else a @ b


def _predict(a: tuple[float, AdmmState], b: tuple[float, AdmmState], at: float) -> AdmmState:
    (la, sa), (lb, sb) = a, b
    if not (math.isfinite(la) and math.isfinite(lb)) or la == lb:
        return sb
    f = (at - lb) / (lb - la)
    theta0 = sb.theta0 + f * (sb.theta0 - sa.theta0)
    delta = sb.delta + f * (sb.delta - sa.delta)
    y = sb.rho * sb.u + f * (sb.rho * sb.u - sa.rho * sa.u)
    return AdmmState(theta0.unsqueeze(0) + delta, theta0, delta, y / sb.rho, sb.rho, sb.node_rho)


def _mirror_upper(x: torch.Tensor) -> torch.Tensor:
    """Exactly symmetric copy built from the upper triangle: (i, j) and (j, i) come from C_ij and C_ji, which
    differ by rounding, and a support must not depend on which side is read."""
    up = torch.triu(x, 1)
    return up + up.transpose(-1, -2) + torch.diag_embed(torch.diagonal(x, dim1=-2, dim2=-1))
