"""``python -m bench perf glasso`` (methods/cm_glasso/perf.py): the problems, the objectives, the time-to-accuracy
ladder and the report, on tiny sizes; gglasso and cvxpy are treated as absent so the skips are exercised (the full
comparison is a measurement, run by hand)."""

import csv
import math

import numpy as np
import pytest

from methods.cm_glasso import perf as pg


def test_perf_problem_is_a_set_of_covariances():
    S, n = pg.perf_problem(12, 3)
    assert S.shape == (3, 12, 12) and n.tolist() == [500.0] * 3
    assert np.allclose(S, S.transpose(0, 2, 1)) and np.linalg.eigvalsh(S).min() > 0
    np.testing.assert_allclose(np.einsum("kii->ki", S), 1.0)        # standardised samples


def test_objectives_match_their_definitions():
    S, _ = pg.perf_problem(6, 2)
    theta = np.stack([np.linalg.inv(s) for s in S])
    off = ~np.eye(6, dtype=bool)
    nll = sum(-np.linalg.slogdet(t)[1] + np.trace(s @ t) for s, t in zip(S, theta))
    l1 = np.abs(theta[:, off]).sum()
    assert pg.mgl_objective(S, theta, 0.3, 0.0, "GGL") == pytest.approx(nll + 0.3 * l1)
    group = np.sqrt((theta ** 2).sum(0))[off].sum()
    assert pg.mgl_objective(S, theta, 0.3, 0.2, "GGL") == pytest.approx(nll + 0.3 * l1 + 0.2 * group)
    fused = np.abs(theta[1] - theta[0])[off].sum()
    assert pg.mgl_objective(S, theta, 0.3, 0.2, "FGL") == pytest.approx(nll + 0.3 * l1 + 0.2 * fused)
    assert pg.sgl_objective(S[0], -np.eye(6), 0.1) == math.inf


def test_time_to_gap_walks_the_ladder_until_the_target():
    calls = []

    def run(tol):
        calls.append(tol)
        return tol, 7
    res = pg.time_to_gap(run, lambda out: 1.0 + out, reference=1.0, repeats=2)
    assert res["reached"] and res["tol"] == 1e-6 and res["iterations"] == 7
    assert calls == [1e-3, 1e-3, 1e-4, 1e-5, 1e-6, 1e-6]       # warm-up, ladder, one repeat at the winner
    never = pg.time_to_gap(lambda tol: (1.0, 3), lambda out: 2.0, reference=1.0, repeats=1)
    assert not never["reached"] and never["tol"] == pg.LADDER[-1]


def test_report_without_the_optional_solvers_says_what_was_skipped(tmp_path, monkeypatch):
    real_have = pg.have
    monkeypatch.setattr(pg, "have", lambda name: False if name in ("gglasso", "cvxpy") else real_have(name))
    report = pg.perf_glasso(ps=(12,), thread_counts=(1,), repeats=1, path_p=12, sections=("K=1", "K=3", "path"))
    solvers = {(r.section, r.solver) for r in report.rows}
    assert ("K=1", "ours") in solvers and ("K=1", "scikit-learn graphical_lasso") in solvers
    assert ("K=3", "ours") in solvers and not any("gglasso" in s or "cvxpy" in s for _, s in solvers)
    assert any("gglasso is not installed" in s for s in report.skipped)
    assert any("cvxpy is not installed" in s for s in report.skipped)
    ours = [r for r in report.rows if r.solver == "ours"]
    assert all(r.rel_gap <= pg.GAP and r.iterations > 0 and r.floor_ms > 0 for r in ours)
    assert all(r.vs_ours == 1.0 for r in ours)
    path = [r for r in report.rows if r.section == "path"]
    assert len(path) == 4 and all(r.seconds > 0 for r in path)
    out = pg.write_csv(report, tmp_path / "perf" / "glasso.csv")
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(report.rows) and "per_iter_vs_floor" in rows[0]


def test_the_cli_offers_perf_glasso_from_the_method_package():
    from bench.cli import build_parser, perf_verb_parser
    from bench.registry import PERF_VERBS

    args = build_parser().parse_args(["perf", "glasso", "--repeats", "2"])
    verb = PERF_VERBS.get(args.what)
    assert verb.run is pg.run and verb.run.__module__ == "methods.cm_glasso.perf"
    assert perf_verb_parser(verb, args.perf_prog).parse_args(args.options).repeats == 2
