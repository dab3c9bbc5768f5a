"""Run every metric a benchmark asks for that the method can serve; the others are recorded as not applicable
(value NaN, status ``not_applicable``), never as zero. Beside each metric computed with status done that has a
chance level (:mod:`bench.eval.chance`), one row per target with ``split = "chance"`` records it."""

from __future__ import annotations

import logging
import math

from threadpoolctl import threadpool_limits

from bench.eval import NotApplicable
from bench.eval.chance import chance_levels
from bench.eval.context import EvalContext
from bench.registry import METRICS

log = logging.getLogger(__name__)


def evaluate(ctx: EvalContext, metric_names: list[str]) -> list[dict]:
    # scikit-learn's k-means and probes run 10-100x slower on 2 cores when OpenMP/OpenBLAS threads compete with
    # each other and with torch (measured: k-means 10.5 s -> 0.12 s); the metric work is small, so one thread.
    with threadpool_limits(1):
        return _evaluate(ctx, metric_names)


def _evaluate(ctx: EvalContext, metric_names: list[str]) -> list[dict]:
    rows = []
    for name in metric_names:
        info = METRICS.get(name)
        try:
            values = info.fn(ctx)
        except NotApplicable as e:
            log.info("metric %s not applicable: %s", name, e)
            rows.append({"metric": name, "target": "", "value": math.nan, "higher_is_better": info.higher_is_better,
                         "split": "test", "status": "not_applicable"})
            continue
        for target, value in values.items():
            rows.append({"metric": name, "target": target, "value": float(value),
                         "higher_is_better": info.higher_is_better, "split": "test", "status": "done"})
        for target, value in chance_levels(ctx, name, values).items():
            rows.append({"metric": name, "target": target, "value": float(value),
                         "higher_is_better": info.higher_is_better, "split": "chance", "status": "done"})
    return rows
