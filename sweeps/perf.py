"""``python -m bench perf sweep``: the same runs trained one after the other in this process, then through
``bench sweep`` (Ray, claims, store); the difference divided by the number of runs is the harness overhead per trial.

Registered in :data:`bench.registry.PERF_VERBS`, which imports this module when the perf verbs are first looked up.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.registry import register_perf_verb


def perf_sweep(n_runs: int = 6, epochs: int = 1) -> dict:
    """Harness overhead per trial: the same runs in-process (no Ray) and through a one-CPU sweep."""
    import yaml

    from bench.run import run_one
    from bench.store import ResultStore
    from sweeps.driver import run_sweep
    from sweeps.plan import default_runs, make_plan
    from sweeps.progress import SweepDisplay
    from sweeps.suite import load_suite

    with tempfile.TemporaryDirectory(prefix="mmrl-perf-") as tmp:
        tmp = Path(tmp)
        suite_file = tmp / "suite.yaml"
        suite_file.write_text(yaml.safe_dump({
            "name": "perf", "methods": ["mvae"], "benchmarks": ["bc-3view"], "obs_ratios": [1.0],
            "seeds": list(range(n_runs)), "max_retries": 0,
            "overrides": ["trainer.progress=false", f"trainer.epochs={epochs}", "eval.metrics=[probe_linear]"]}))
        plan = make_plan(load_suite(str(suite_file)))
        store = ResultStore(tmp / "inproc")
        run_one(default_runs(plan)[0], ResultStore(tmp / "warm"))  # imports and first-call costs, not measured
        t0 = time.perf_counter()
        for spec in default_runs(plan):
            run_one(spec, store)
        inproc = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = run_sweep(plan, tmp / "sweep", num_cpus=1, display=SweepDisplay())
        swept = time.perf_counter() - t0
        if not result.ok:
            raise RuntimeError(f"perf sweep: runs failed: {[r.error for r in result.runs if r.error]}")
    return {"runs": n_runs, "in_process_s": inproc, "sweep_s": swept, "ratio": swept / inproc,
            "overhead_per_run_s": (swept - inproc) / n_runs}


def print_perf_sweep(console, r: dict) -> None:
    console.print(f"{r['runs']} runs: in-process {r['in_process_s']:.1f} s, through bench sweep (1 CPU) "
                  f"{r['sweep_s']:.1f} s: ratio {r['ratio']:.2f}, harness overhead {r['overhead_per_run_s']:.2f} s "
                  "per run")


def add_arguments(parser) -> None:
    parser.add_argument("--runs", type=int, default=6, help="runs of the perf sweep")


@register_perf_verb("sweep", help="harness overhead per trial: runs in this process against the same runs swept",
                    add_arguments=add_arguments)
def run(args, console, out_dir) -> None:
    print_perf_sweep(console, perf_sweep(n_runs=args.runs))
