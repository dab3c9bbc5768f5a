"""The plan: suite -> cells (method x benchmark x obs_ratio) -> RunSpecs, with their status in the store."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from bench.compose import compose
from bench.errors import BenchError
from bench.registry import BENCHMARKS, METHODS
from bench.run import resolve_spec
from bench.spec import canonical_digest, compute_run_id, semantic_part
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
        """Deterministic: the same cell identity (bench.spec.semantic_part of its spec), space and budget always
        reopen the same Optuna study, whatever the data root, worker count or progress display."""
        ident = {"spec": semantic_part(resolve_spec(self.cfg)), "space": self.space,
                 "tune": dataclasses.asdict(suite.tune) if suite.tune else None}
        digest = canonical_digest(ident)[:10]
        return f"{suite.name}.{self.method}.{self.benchmark}.rho{self.obs_ratio:g}.{digest}"


@dataclass
class Plan:
    suite: Suite
    cells: list[Cell]
    missing_methods: list[str]
    missing_benchmarks: list[str] = field(default_factory=list)
    missing_data: dict[str, str] = field(default_factory=dict)  # benchmark -> why its data is not usable
    data_root: str = ""

    @property
    def tuned(self) -> bool:
        return self.suite.tune is not None


def suite_override(name: str) -> str:
    """The run label ``suite=<name>`` as a Hydra override that gives back ``name`` whatever its characters: escaped
    for OmegaConf (``${`` is no interpolation) and then for Hydra's quoted strings (quotes escaped; backslashes
    before an escaped character or at the end doubled)."""
    literal = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", name)
    quoted = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), literal)
    return f"suite='{quoted}'"


def final_spec(cell: Cell, seed: int, params_cfg: dict | None = None) -> dict:
    cfg = dict(params_cfg or cell.cfg)
    cfg["seed"] = seed
    cfg["phase"] = "final"
    return resolve_spec(cfg)


def needs_data(benchmark: str) -> bool:
    return getattr(BENCHMARKS.get(benchmark), "needs_data", False)


def root_override(root: str) -> str:
    if "'" in root:
        raise BenchError(f"data root {root!r}: a path with a quote (') cannot be passed to the runs")
    return f"benchmark.root='{root}'"  # quoted: Hydra's grammar reads an unquoted path with some characters wrongly


def unusable_data(suite: Suite, extra_overrides: tuple[str, ...], root: str) -> dict[str, str]:
    """{benchmark: why not} for the suite's paper benchmarks whose files are missing or unreadable under ``root``.
    Cheap: files are listed and checked, nothing is decoded."""
    from bench.build import benchmark_from
    from bench.errors import DataError

    out = {}
    for b in suite.benchmarks:
        if b.name not in BENCHMARKS or not needs_data(b.name):
            continue
        cfg = compose([*suite.overrides, *b.overrides, root_override(root), *extra_overrides, f"benchmark={b.name}"])
        try:
            benchmark_from(b.name, cfg["benchmark"], f"benchmark {b.name}").check_present()
        except DataError as e:
            out[b.name] = str(e)
    return out


def make_plan(suite: Suite, extra_overrides: tuple[str, ...] = (), data_root: str | None = None,
              skip_missing: bool = False) -> Plan:
    """Validate everything a sweep needs before anything trains; raises BenchError on bad input.

    Paper benchmarks read their files from ``data_root`` (``--root``, else $MMRL_DATA, else ~/.mmrl-bench/data),
    passed to every run as ``benchmark.root``. If some have no usable data the plan is refused, naming them, unless
    ``skip_missing``: then they are left out and listed in ``missing_data``."""
    from bench.data.root import data_root as resolve_root

    missing = [m.name for m in suite.methods if m.name not in METHODS]
    # not registered yet (a later issue) or a typo: listed with the closest registered name, never trained
    missing_b = [b.name for b in suite.benchmarks if b.name not in BENCHMARKS]
    root = str(resolve_root(data_root))
    no_data = unusable_data(suite, tuple(extra_overrides), root)
    if no_data and not skip_missing:
        hint = f" --root {data_root}" if data_root else ""
        raise BenchError(f"suite {suite.name}: no usable data for {', '.join(no_data)} under {root}; run "
                         f"`python -m bench data check --suite {suite.name}{hint}` to see what is missing and where to "
                         "get it, or add --skip-missing to run the other benchmarks")
    cells = []
    for m in suite.methods:
        if m.name in missing:
            continue
        space = load_space(m.name, suite.search.get(m.name)) if suite.tune else {}
        for b in suite.benchmarks:
            if b.name in missing_b or b.name in no_data:
                continue
            data = [root_override(root)] if needs_data(b.name) else []
            overrides = [*suite.overrides, *m.overrides, *b.overrides, *data, *extra_overrides,
                         f"method={m.name}", f"benchmark={b.name}", f"seed={suite.seeds[0]}",
                         suite_override(suite.name)]
            try:
                base = compose(overrides)
            except BenchError as e:
                raise BenchError(f"suite {suite.name}, {m.name} on {b.name}: {e}") from None
            check_space(space, base, m.name)
            for rho in suite.obs_ratios:
                cfg = {**base, "obs_ratio": rho}
                resolve_spec(cfg)  # every cell's configuration must resolve before the sweep starts
                cells.append(Cell(m.name, b.name, rho, cfg, space))
    if not cells:
        what = "; ".join(filter(None, [
            f"methods not registered: {', '.join(missing)}" if missing else "",
            f"benchmarks not registered: {', '.join(missing_b)} (registered: {', '.join(BENCHMARKS.names())})"
            if missing_b else "",
            f"no data under {root} for {', '.join(no_data)}" if no_data else ""]))
        raise BenchError(f"suite {suite.name} has nothing to run ({what})")
    return Plan(suite, cells, missing, missing_b, no_data, root)


def default_runs(plan: Plan) -> list[dict]:
    return [final_spec(c, s) for c in plan.cells for s in plan.suite.seeds]


def run_status(store: ResultStore, spec: dict) -> str:
    """new | done | failed | running | pruned"""
    status = store.status(compute_run_id(spec))
    return {None: "new", "claimed": "running"}.get(status, status)
