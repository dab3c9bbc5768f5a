"""The reduced sanity ladder, end to end: one method per family on the instance-paired control, through
`bench sweep`, must clear the sanity suite's own rungs for that benchmark (the full ladder: `bench sweep --suite
sanity`, minutes per method; its figures and the cause of every failing rung are in docs/sanity.md)."""

from __future__ import annotations

import dataclasses

import yaml

from sweeps.suite import load_suite
from test_sweep import sweep

BENCHMARK = "digits-ms-inst"
# one per family: the floor, a generative model, a model that aligns with a contrastive term
METHODS = ["untrained", "mopoe", "cm_glasso"]


def reduced_suite(tmp_path) -> tuple[str, list]:
    full = load_suite("sanity")
    bench = next(b for b in full.benchmarks if b.name == BENCHMARK)
    rungs = [r for r in full.ladder if r.benchmark == BENCHMARK]
    suite = {"name": "sanity-reduced", "methods": METHODS,
             "benchmarks": [{"name": bench.name, "overrides": list(bench.overrides)}],
             "obs_ratios": [1.0], "seeds": [0], "overrides": list(full.overrides), "max_retries": 0,
             "ladder": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(r).items()}
                        for r in rungs]}
    path = tmp_path / "sanity-reduced.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return str(path), rungs


def test_reduced_ladder_passes_and_the_sweep_ends_with_it(tmp_path):
    path, rungs = reduced_suite(tmp_path)
    assert {r.metric for r in rungs} >= {"coherence_cross", "retrieval_class_p10", "probe_linear"}
    out = sweep(["--suite", path, "--cpus", "2"], tmp_path, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = " ".join(out.stdout.split())
    assert "sanity ladder" in text
    tail = text[text.rindex("sanity ladder"):]
    assert "FAIL" not in tail and "missing" not in tail, out.stdout[-4000:]
    report = tmp_path / "results" / "report" / "sanity-reduced"
    ladder = (report / "ladder.md").read_text()
    # every (rung, method) the suite asks for was judged, and passed
    assert "checks passed" in ladder and "FAIL" not in ladder
    judged = [line for line in ladder.splitlines() if line.startswith("| ") and "pass" in line]
    assert {m for m in METHODS if m != "untrained"} <= {line.split(" | ")[3] for line in judged}
    assert 'id="ladder"' in (report / "index.html").read_text()
