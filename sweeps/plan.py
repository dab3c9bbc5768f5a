"""The plan: suite -> cells (method x benchmark x obs_ratio) -> RunSpecs, with their status in the store."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from bench.compose import compose
from bench.errors import BenchError
from bench.registry import BENCHMARKS, METHODS
from bench.run import resolve_spec
from bench.spec import compute_run_id
from bench.store import ResultStore
from sweeps.space import check_space, load_space
from sweeps.suite import Suite


@dataclass
class Cell:
    method: str
    benchmark: str
    obs_ratio: float
    cfg: dict                                      # composed configuration (seed = the suite's first)
    space: dict = field(default_factory=dict)      # search space, {} = not tuned

    @property
    def key(self) -> str:
        return f"{self.method}/{self.benchmark}/rho={self.obs_ratio:g}"

    def study_name(self, suite: Suite) -> str:
        """Deterministic: the same cell, space and budget always reopen the same Optuna study."""
        ident = json.dumps({"cell": self.key, "cfg": resolve_spec(self.cfg), "space": self.space,
                            "tune": suite.tune.__dict__ if suite.tune else None}, sort_keys=True)
        digest = hashlib.sha256(ident.encode()).hexdigest()[:10]
        return f"{suite.name}.{self.method}.{self.benchmark}.rho{self.obs_ratio:g}.{digest}"


@dataclass
class Plan:
    suite: Suite
    cells: list[Cell]
    missing_methods: list[str]
    missing_benchmarks: list[str] = field(default_factory=list)

    @property
    def tuned(self) -> bool:
        return self.suite.tune is not None


def final_spec(cell: Cell, seed: int, params_cfg: dict | None = None) -> dict:
    cfg = dict(params_cfg or cell.cfg)
    cfg["seed"] = seed
    cfg["phase"] = "final"
    return resolve_spec(cfg)


def make_plan(suite: Suite, extra_overrides: tuple[str, ...] = ()) -> Plan:
    """Validate everything a sweep needs before anything trains; raises BenchError on bad input."""
    missing = [m.name for m in suite.methods if m.name not in METHODS]
    # not registered yet (a later issue) or a typo: listed with the closest registered name, never trained
    missing_b = [b.name for b in suite.benchmarks if b.name not in BENCHMARKS]
    cells = []
    for m in suite.methods:
        if m.name in missing:
            continue
        space = load_space(m.name, suite.search.get(m.name)) if suite.tune else {}
        for b in suite.benchmarks:
            if b.name in missing_b:
                continue
            overrides = [*suite.overrides, *m.overrides, *b.overrides, *extra_overrides,
                         f"method={m.name}", f"benchmark={b.name}", f"seed={suite.seeds[0]}"]
            try:
                base = compose(overrides)
            except BenchError as e:
                raise BenchError(f"suite {suite.name}, {m.name} on {b.name}: {e}") from None
            base["suite"] = suite.name  # not an override: `suite` is also the name of the suites' config group
            check_space(space, base, m.name)
            for rho in suite.obs_ratios:
                cfg = {**base, "obs_ratio": rho}
                resolve_spec(cfg)  # every cell's configuration must resolve before the sweep starts
                cells.append(Cell(m.name, b.name, rho, cfg, space))
    if not cells:
        what = "; ".join(filter(None, [
            f"methods not registered: {', '.join(missing)}" if missing else "",
            f"benchmarks not registered: {', '.join(missing_b)} (registered: {', '.join(BENCHMARKS.names())})"
            if missing_b else ""]))
        raise BenchError(f"suite {suite.name} has nothing to run ({what})")
    return Plan(suite, cells, missing, missing_b)


def default_runs(plan: Plan) -> list[dict]:
    return [final_spec(c, s) for c in plan.cells for s in plan.suite.seeds]


def run_status(store: ResultStore, spec: dict) -> str:
    """new | done | failed | running | pruned"""
    status = store.status(compute_run_id(spec))
    return {None: "new", "claimed": "running"}.get(status, status)
