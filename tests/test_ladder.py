"""The sanity ladder: rungs parsed from a suite, judged per method against thresholds and the untrained floor."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml

from bench.errors import BenchError
from bench.records import make_rows
from reports import ladder as ld
from sweeps.suite import Rung, load_suite


def _records(values: dict[tuple[str, str, int], float | None]) -> pd.DataFrame:
    """{(method, metric, seed): value (None = not applicable)} on benchmark b at ratio 1 -> record rows."""
    frames = []
    by_run: dict[tuple[str, int], list[dict]] = {}
    for (method, metric, seed), v in values.items():
        row = {"metric": metric, "target": "joint", "value": math.nan if v is None else v, "higher_is_better": True,
               "split": "test", "status": "not_applicable" if v is None else "done"}
        by_run.setdefault((method, seed), []).append(row)
    for (method, seed), rows in sorted(by_run.items()):
        spec = {"method": {"name": method}, "benchmark": {"name": "b"}, "obs_ratio": 1.0, "seed": seed, "suite": "s"}
        run_id = "".join(c for c in method if c.isalnum()) + f"-{seed}"
        frames.append(make_rows(spec, run_id, "method", rows, epoch=1, wall_s=1.0))
    return pd.concat(frames, ignore_index=True)


def test_rungs_judge_thresholds_and_floor():
    records = _records({
        ("untrained", "probe_linear", 0): 0.50, ("untrained", "probe_linear", 1): 0.52,
        ("good", "probe_linear", 0): 0.70, ("good", "probe_linear", 1): 0.72,
        ("flat", "probe_linear", 0): 0.53, ("flat", "probe_linear", 1): 0.55,   # 0.54: above the floor, not by 0.05
        ("good", "coherence_cross", 0): 0.65, ("good", "coherence_cross", 1): 0.61,
        ("flat", "coherence_cross", 0): None, ("flat", "coherence_cross", 1): None,
    })
    rungs = [Rung("b", "probe_linear", "all", above_floor=0.05), Rung("b", "coherence_cross", ("good", "flat", "gone"),
                                                                       min=0.6)]
    table = ld.evaluate_ladder(records, rungs, methods=["untrained", "good", "flat", "gone"])
    got = {(r.rung, r.method): r.result for r in table.itertuples()}
    assert got == {(1, "flat"): "FAIL", (1, "gone"): "missing", (1, "good"): "pass",
                   (2, "good"): "pass", (2, "flat"): "n/a", (2, "gone"): "missing"}
    row = table[(table["rung"] == 1) & (table["method"] == "good")].iloc[0]
    assert row["value"] == pytest.approx(0.71) and row["floor"] == pytest.approx(0.51)
    assert "untrained" not in set(table["method"])  # the floor is not judged against itself
    line = ld.summary(table)
    assert line.startswith("sanity ladder: 2 of 5 checks passed") and "flat on rung 1" in line
    md = ld.to_markdown(table)
    assert "| 1 | b | probe_linear | flat | 0.540 | 0.510 |" in md and "**FAIL**" in md


def test_a_floor_rung_without_untrained_cannot_pass():
    records = _records({("good", "probe_linear", 0): 0.99})
    table = ld.evaluate_ladder(records, [Rung("b", "probe_linear", above_floor=0.01)])
    assert list(table["result"]) == ["no floor"]


def test_min_threshold_is_inclusive_and_exclusive_below():
    records = _records({("a", "probe_linear", 0): 0.6, ("c", "probe_linear", 0): 0.5999})
    table = ld.evaluate_ladder(records, [Rung("b", "probe_linear", min=0.6)])
    assert dict(zip(table["method"], table["result"])) == {"a": "pass", "c": "FAIL"}


def test_bad_rungs_are_refused_in_one_line(tmp_path):
    base = {"name": "t", "methods": ["mvae"], "benchmarks": ["digits-ms"]}
    for rung, needle in [({"benchmark": "digits-ms", "metric": "probe_linear"}, "min, above_floor or both"),
                         ({"benchmark": "digits-ms", "metric": "probe_linear", "min": 0.5, "methods": "vae"},
                          "generative"),
                         ({"benchmark": "digits-ms", "metric": "probe_linear", "min": 0.5, "bogus": 1}, "valid keys")]:
        path = tmp_path / "s.yaml"
        path.write_text(yaml.safe_dump({**base, "ladder": [rung]}))
        with pytest.raises(BenchError, match=needle) as e:
            load_suite(str(path))
        assert "\n" not in str(e.value)


def test_sanity_suite_has_a_ladder_over_registered_names():
    from bench.registry import BENCHMARKS, METHODS, METRICS

    suite = load_suite("sanity")
    assert suite.ladder and "untrained" in {m.name for m in suite.methods}
    planned = {b.name for b in suite.benchmarks}
    for rung in suite.ladder:
        assert rung.benchmark in planned and rung.benchmark in BENCHMARKS
        assert rung.metric in METRICS
        assert isinstance(rung.methods, str) or all(m in METHODS for m in rung.methods)


def test_report_writes_the_ladder_first_and_escaped(tmp_path):
    from bench.store import ResultStore
    from reports.build import report_from_store

    store = ResultStore(tmp_path / "results")
    records = _records({("untrained", "probe_linear", 0): 0.5, ("good", "probe_linear", 0): 0.9,
                        ("<b>x</b>", "probe_linear", 0): 0.5})
    for run_id, rec in records.groupby("run_id"):
        first = rec.iloc[0]
        spec = {"method": {"name": first["method"]}, "benchmark": {"name": "b"}, "obs_ratio": 1.0, "seed": 0,
                "suite": "s"}
        store.claim(run_id, meta={"method": first["method"], "benchmark": "b", "obs_ratio": 1.0, "seed": 0,
                                  "suite": "s"})
        store.put(run_id, spec, rec.reset_index(drop=True))
    paths = report_from_store(store, tmp_path / "report", suite="s",
                              ladder=(Rung("b", "probe_linear", above_floor=0.1, why="known <answer>"),))
    md = paths["ladder.md"].read_text()
    assert "1 of 2 checks passed" in md and "| good | 0.900 | 0.500 |" in md
    page = paths["index.html"].read_text()
    assert page.index('id="ladder"') < page.index('id="leaderboard"')
    assert "known &lt;answer&gt;" in page and "<b>x</b>" not in page
