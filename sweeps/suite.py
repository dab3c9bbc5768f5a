"""Suites: which methods, benchmarks, observation ratios and seeds a sweep covers, with budgets.

A suite is a YAML file, either one of ``sweeps/suites/<name>.yaml`` or any path. Suites are not Hydra configs (a
suite composes many runs), so they live outside the config tree ``sweeps/conf``. Schema::

    name: quick
    description: one line
    methods: [mvae, {name: mopoe, overrides: [method.beta=2.0]}]
    benchmarks: [digits-ms, {name: mfeat6, overrides: [trainer.epochs=20]}]
    obs_ratios: [1.0, 0.5]
    seeds: [0]
    overrides: [trainer.epochs=5]      # Hydra overrides applied to every run
    tune:                              # null = no tuning phase: the defaults are final
      n_trials: 8                      # Optuna trials per cell
      epochs: 5                        # budget of a trial (ASHA's max_t)
      grace_period: 1
      reduction_factor: 2
      metric: probe_split_half         # validation metric reported each epoch (ASHA + Optuna)
    resources: {cpu: 1, gpu: 0}        # per run
    gpu:                               # optional: what changes when the sweep has GPUs (see Suite.for_device)
      overrides: [trainer=gpu-zero1]   #   appended to overrides
      resources: {cpu: 4, gpu: 1}      #   replaces resources
    max_retries: 1                     # a failing run is retried this often, then recorded failed
    search:                            # optional: a method's search space for this suite, replacing
      mvae: {method.beta: {uniform: [0.5, 2.0]}}   # sweeps/conf/search/<method>.yaml
    ladder:                            # optional: thresholds with known answers (reports/ladder.py)
      - {benchmark: digits-ms-inst, metric: coherence_cross, methods: generative, min: 0.6}
      - {benchmark: mfeat6, metric: probe_linear, methods: all, above_floor: 0.02}

A rung names a benchmark, a metric, the methods it applies to (a list, ``all`` or ``generative``: those that
implement ``generate``), the observation ratio it reads (default 1) and its test: ``min`` (the mean over seeds must
reach it), ``above_floor`` (it must exceed the ``untrained`` baseline's value by this margin), or both.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.errors import BenchError
from bench.records import HISTORY_ROWS, VAL_HISTORY_KEY

SUITE_DIR = Path(__file__).resolve().parent / "suites"
# a tuned metric -> (the history key a trial reports it under, the direction Optuna optimizes)
TUNE_METRICS = {metric: (VAL_HISTORY_KEY[metric], "max" if higher else "min")
                for _, metric, split, higher in HISTORY_ROWS if split == "val"}


@dataclass(frozen=True)
class Entry:
    name: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class TuneBudget:
    n_trials: int
    epochs: int
    grace_period: int = 1
    reduction_factor: int = 2
    metric: str = "probe_split_half"

    @property
    def report_key(self) -> str:
        return TUNE_METRICS[self.metric][0]

    @property
    def mode(self) -> str:
        return TUNE_METRICS[self.metric][1]


@dataclass(frozen=True)
class Rung:
    benchmark: str
    metric: str
    methods: tuple[str, ...] | str = "all"   # names, or "all" / "generative"
    obs_ratio: float = 1.0
    min: float | None = None
    above_floor: float | None = None
    why: str = ""

    def __post_init__(self) -> None:
        if self.min is None and self.above_floor is None:
            raise ValueError(f"rung {self.benchmark}/{self.metric}: give min, above_floor or both")
        if isinstance(self.methods, str) and self.methods not in METHOD_GROUPS:
            raise ValueError(f"rung {self.benchmark}/{self.metric}: methods {self.methods!r} unknown; give a list of "
                             f"method names or one of {', '.join(METHOD_GROUPS)}")

    @property
    def label(self) -> str:
        tests = [f">= {self.min:g}" if self.min is not None else "",
                 f"floor + {self.above_floor:g}" if self.above_floor is not None else ""]
        return f"{self.benchmark} {self.metric} {' and '.join(t for t in tests if t)}"


METHOD_GROUPS = ("all", "generative")


def _rungs(values: Any, where: str) -> tuple[Rung, ...]:
    if values is None:
        return ()
    if not isinstance(values, list):
        raise BenchError(f"suite {where}: ladder must be a list of rungs")
    out = []
    for v in values:
        if not isinstance(v, dict):
            raise BenchError(f"suite {where}: bad ladder rung {v!r}; give a mapping with benchmark, metric and min "
                             "and/or above_floor")
        v = dict(v)
        if isinstance(v.get("methods"), list):
            v["methods"] = tuple(map(str, v["methods"]))
        try:
            out.append(Rung(**v))
        except TypeError as e:
            raise BenchError(f"suite {where}: bad ladder rung {v!r}: {e}; valid keys: benchmark, metric, methods, "
                             "obs_ratio, min, above_floor, why") from None
        except ValueError as e:
            raise BenchError(f"suite {where}: {e}") from None
    return tuple(out)


@dataclass(frozen=True)
class Suite:
    name: str
    methods: tuple[Entry, ...]
    benchmarks: tuple[Entry, ...]
    obs_ratios: tuple[float, ...]
    seeds: tuple[int, ...]
    overrides: tuple[str, ...] = ()
    tune: TuneBudget | None = None
    resources: dict = field(default_factory=lambda: {"cpu": 1, "gpu": 0})
    max_retries: int = 1
    search: dict = field(default_factory=dict)
    description: str = ""
    source: str = ""
    gpu: dict = field(default_factory=dict)
    ladder: tuple[Rung, ...] = ()

    def for_device(self, gpu: bool) -> "Suite":
        """The suite as run with (``gpu``) or without GPUs: its ``gpu`` section (the GPU trainer settings and
        per-run resources) applies only with them, so a GPU suite still runs, on the CPU settings, elsewhere."""
        if not gpu or not self.gpu:
            return self
        return dataclasses.replace(self, overrides=(*self.overrides, *self.gpu.get("overrides", ())),
                                   resources={**self.resources, **self.gpu.get("resources", {})})


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))


def _entries(values: Any, what: str, where: str) -> tuple[Entry, ...]:
    if not isinstance(values, list) or not values:
        raise BenchError(f"suite {where}: {what} must be a non-empty list")
    out = []
    for v in values:
        if isinstance(v, str):
            out.append(Entry(v))
        elif isinstance(v, dict) and set(v) <= {"name", "overrides"} and "name" in v:
            out.append(Entry(str(v["name"]), tuple(map(str, v.get("overrides") or ()))))
        else:
            raise BenchError(f"suite {where}: bad {what} entry {v!r}; give a name or {{name: ..., overrides: [...]}}")
    return tuple(out)


def load_suite(name_or_path: str) -> Suite:
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        if name_or_path not in suite_names():
            close = difflib.get_close_matches(name_or_path, suite_names(), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise BenchError(f"unknown suite {name_or_path!r}{hint} valid: {', '.join(suite_names())} "
                             "(or a path to a suite .yaml file)")
        path = SUITE_DIR / f"{name_or_path}.yaml"
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise BenchError(f"suite file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    known = {"name", "description", "methods", "benchmarks", "obs_ratios", "seeds", "overrides", "tune", "resources",
             "max_retries", "search", "gpu", "ladder"}
    unknown = set(raw) - known
    if unknown:
        raise BenchError(f"suite {path.name}: unknown key(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(known))}")
    where = raw.get("name", path.stem)
    tune = raw.get("tune")
    if tune is not None:
        try:
            tune = TuneBudget(**tune)
        except TypeError as e:
            raise BenchError(f"suite {where}: bad tune section: {e}") from None
        if tune.metric not in TUNE_METRICS:
            raise BenchError(f"suite {where}: tune.metric {tune.metric!r} unknown; valid: {', '.join(TUNE_METRICS)}")
        if tune.n_trials < 1 or tune.epochs < 1:
            raise BenchError(f"suite {where}: tune.n_trials and tune.epochs must be at least 1")
    ratios = tuple(float(r) for r in raw.get("obs_ratios", [1.0]))
    bad = [r for r in ratios if not 0.0 < r <= 1.0]
    if bad:
        raise BenchError(f"suite {where}: obs_ratios must be in (0, 1], got {bad}")
    resources = {"cpu": 1, "gpu": 0, **(raw.get("resources") or {})}
    gpu = raw.get("gpu") or {}
    if not isinstance(gpu, dict) or set(gpu) - {"overrides", "resources"}:
        raise BenchError(f"suite {where}: gpu must be a mapping with overrides and/or resources, got {gpu!r}")
    gpu = {"overrides": tuple(map(str, gpu.get("overrides") or ())), "resources": dict(gpu.get("resources") or {})}
    return Suite(
        name=str(where),
        methods=_entries(raw.get("methods"), "methods", where),
        benchmarks=_entries(raw.get("benchmarks"), "benchmarks", where),
        obs_ratios=ratios,
        seeds=tuple(int(s) for s in raw.get("seeds", [0])),
        overrides=tuple(map(str, raw.get("overrides") or ())),
        tune=tune,
        resources=resources,
        max_retries=int(raw.get("max_retries", 1)),
        search=dict(raw.get("search") or {}),
        description=str(raw.get("description", "")),
        source=str(path),
        gpu=gpu if gpu["overrides"] or gpu["resources"] else {},
        ladder=_rungs(raw.get("ladder"), where),
    )
