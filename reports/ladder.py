"""The sanity ladder: per method and rung, does a metric reach its known answer?

A suite may carry a ``ladder`` (:class:`sweeps.suite.Rung`): settings whose answer is known in advance, such as the
instance-paired control of digits-ms, where a method that learned anything must generate the right class most of the
time. Each rung is checked per method on the mean over seeds of the run's score (the ``joint`` target, else the mean
over the run's targets, as in the leaderboard, :func:`reports.tables.run_scores`):

* ``min``: the mean must reach the threshold;
* ``above_floor``: the mean must exceed the ``untrained`` baseline's mean by the margin (for a metric where lower is
  better, fall below it by the margin). Without an untrained run the rung cannot be judged and reads ``no floor``.

Results: ``pass``, ``FAIL``, ``n/a`` (the method cannot serve the metric), ``missing`` (no finished run), ``no floor``.
A failing rung is a finding to explain (the closing notes and docs give the causes), never a threshold to loosen.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import pandas as pd

from reports import tables as tb

FLOOR_METHOD = "untrained"
COLUMNS = ["rung", "benchmark", "obs_ratio", "metric", "method", "value", "floor", "test", "result", "why"]


def _capable(method: str, capability: str) -> bool:
    from bench.registry import METHODS

    return method in METHODS and capability in METHODS.get(method).capabilities()


def rung_methods(rung, methods: Iterable[str]) -> list[str]:
    """The methods a rung applies to, among ``methods`` (those the suite runs; never the floor itself)."""
    methods = sorted(m for m in set(methods) if m != FLOOR_METHOD)
    if rung.methods == "all":
        return methods
    if rung.methods == "generative":
        return [m for m in methods if _capable(m, "generate")]
    return [m for m in rung.methods if m in methods]


def _judge(value: float, floor: float, rung, higher: bool) -> str:
    if math.isnan(value):
        return "missing"
    ok = True
    if rung.min is not None:
        ok &= value >= rung.min if higher else value <= rung.min
    if rung.above_floor is not None:
        if math.isnan(floor):
            return "no floor"
        ok &= value >= floor + rung.above_floor if higher else value <= floor - rung.above_floor
    return "pass" if ok else "FAIL"


def _test_text(rung, floor: float) -> str:
    parts = []
    if rung.min is not None:
        parts.append(f"≥ {rung.min:g}")
    if rung.above_floor is not None:
        parts.append(f"floor + {rung.above_floor:g}" + (f" = {floor + rung.above_floor:.3f}" if not math.isnan(floor)
                                                         else ""))
    return " and ".join(parts)


def evaluate_ladder(records: pd.DataFrame, rungs: Sequence, methods: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per (rung, method): the mean over seeds, the untrained floor, the test and its result.

    ``methods``: the methods the suite plans (so that a method with no run reads ``missing``); default: those in
    ``records``."""
    scores = tb.run_scores(tb.final_phase(records, None)[0])
    known = set(methods) if methods is not None else set(scores["method"])
    directions = tb.metric_directions({r.metric for r in rungs}, records)
    rows = []
    for i, rung in enumerate(rungs, 1):
        ratio = tb._ratio(rung.obs_ratio)
        here = scores[(scores["benchmark"] == rung.benchmark) & (scores["metric"] == rung.metric)
                      & (scores["obs_ratio"] == ratio)]
        floor_runs = here[(here["method"] == FLOOR_METHOD) & (here["status"] == "done")]
        floor = float(floor_runs["value"].mean()) if len(floor_runs) else math.nan
        higher = directions.get(rung.metric, True)
        for method in rung_methods(rung, known):
            runs = here[here["method"] == method]
            done = runs[runs["status"] == "done"]
            if len(runs) and not len(done):
                value, result = math.nan, "n/a"
            else:
                value = float(done["value"].mean()) if len(done) else math.nan
                result = _judge(value, floor, rung, higher)
            rows.append({"rung": i, "benchmark": rung.benchmark, "obs_ratio": ratio, "metric": rung.metric,
                         "method": method, "value": value, "floor": floor, "test": _test_text(rung, floor),
                         "result": result, "why": rung.why})
    return pd.DataFrame(rows, columns=COLUMNS)


def failures(ladder: pd.DataFrame) -> pd.DataFrame:
    return ladder[ladder["result"].isin(["FAIL", "missing", "no floor"])]


def summary(ladder: pd.DataFrame) -> str:
    """One line: how many (rung, method) checks passed, and which failed."""
    judged = ladder[ladder["result"] != "n/a"]
    bad = failures(ladder)
    line = f"sanity ladder: {int((judged['result'] == 'pass').sum())} of {len(judged)} checks passed"
    if len(bad):
        line += "; failing: " + ", ".join(f"{r.method} on rung {r.rung} ({r.benchmark} {r.metric}: {r.result})"
                                          for r in bad.itertuples())
    return line


def fmt(x: float) -> str:
    return "-" if math.isnan(x) else tb.fmt_float(x)


def to_markdown(ladder: pd.DataFrame, title: str = "Sanity ladder") -> str:
    lines = [f"# {tb.md_escape(title)}", "", summary(ladder), "",
             "| rung | benchmark | metric | method | value | untrained floor | test | result |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in ladder.itertuples():
        result = f"**{r.result}**" if r.result == "FAIL" else r.result
        lines.append(f"| {r.rung} | {tb.md_escape(r.benchmark)} | {tb.md_escape(r.metric)} | {tb.md_escape(r.method)} "
                     f"| {fmt(r.value)} | {fmt(r.floor)} | {r.test} | {result} |")
    whys = {int(r.rung): r.why for r in ladder.itertuples() if r.why}
    if whys:
        lines += ["", *(f"- rung {k}: {tb.md_escape(v)}" for k, v in sorted(whys.items()))]
    return "\n".join(lines) + "\n"


def to_csv(ladder: pd.DataFrame) -> str:
    return ladder.to_csv(index=False, float_format=f"%.{tb.CSV_DECIMALS}f", lineterminator="\n")
