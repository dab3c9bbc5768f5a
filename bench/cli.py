"""``python -m bench``: sweep | run | report | perf | ls | data.

Bad input prints one line and exits 2; a run that fails is recorded as failed and exits 1.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path
from typing import Sequence

from bench.errors import BenchError, RunFailed

log = logging.getLogger("bench")


def _console():
    from rich.console import Console

    return Console(stderr=False, highlight=False)


def figure_data_metrics(metrics) -> list[str]:
    """The metrics among ``metrics`` whose rows are data for a figure (``ranked=False``: quantiles, a matrix), not
    scores: dozens of rows per run that the report draws."""
    from bench.registry import METRICS

    return sorted({m for m in metrics if m in METRICS and not METRICS.get(m).ranked})


def results_table(record, title: str):
    """The test metrics of a run; figure data stays in the record and the report, named in the caption."""
    from rich.table import Table

    test = record[(record["split"] == "test")]
    figures = figure_data_metrics(test["metric"].unique())
    table = Table(title=title, caption=f"figure data in the record and the report: {', '.join(figures)}"
                  if figures else None)
    for col in ("metric", "target", "value"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for r in test[~test["metric"].isin(figures)].itertuples():
        value = "n/a" if r.status == "not_applicable" or math.isnan(r.value) else f"{r.value:.4f}"
        table.add_row(r.metric, r.target, value)
    return table


class Progress:
    """A rich progress bar over the steps of all epochs (silent when stdout is not a terminal, except one
    line per epoch)."""

    def __init__(self, console, epochs: int):
        self.console, self.epochs = console, epochs
        self.bar = None

    def __call__(self, ev: dict) -> None:
        if ev["event"] == "step":
            if self.bar is None and self.console.is_terminal:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

                self.bar = RichProgress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                                        TextColumn("{task.description}"), TimeRemainingColumn(),
                                        console=self.console, transient=True)
                self.bar.start()
                self.task = self.bar.add_task("", total=ev["steps"] * self.epochs,
                                              completed=ev["steps"] * ev["epoch"])
            if self.bar is not None:
                self.bar.update(self.task, advance=1, description=f"epoch {ev['epoch'] + 1}/{self.epochs} loss {ev['loss']:.3f}")
        elif ev["event"] == "epoch":
            val = f" val_loss {ev['val_loss']:.4f} val_probe {ev['val_probe']:.3f}" if "val_loss" in ev else ""
            self.console.print(f"epoch {ev['epoch'] + 1}/{ev['epochs']}: train_loss {ev['train_loss']:.4f}{val}")
            if ev["epoch"] + 1 == ev["epochs"]:
                self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def cmd_run(args: argparse.Namespace) -> int:
    from bench.compose import compose
    from bench.run import check_device, resolve_spec, run_one
    from bench.spec import compute_run_id
    from bench.store import ResultStore, results_dir

    cfg = compose(args.overrides)
    spec = resolve_spec(cfg)
    store = ResultStore(results_dir(args.results, cfg.get("results_dir")), cfg.get("index_url"))
    run_id = compute_run_id(spec)
    console = _console()
    label = f"{spec['method']['name']} on {spec['benchmark']['name']} (obs_ratio={spec['obs_ratio']}, seed={spec['seed']})"
    requested = int(spec["trainer"].get("workers", 1))
    if store.is_done(run_id) and not args.force:
        outcome_record = store.get(run_id)
        console.print(f"already done: {label}{trained_by(outcome_record, requested)}, run {run_id}; showing the "
                      "stored result (--force retrains)")
    else:
        _check_data(spec)
        check_device(spec["trainer"])  # run_one checks too; here it comes before the "training" line
        console.print(f"training {label}{f' on {requested} workers' if requested > 1 else ''}, run {run_id}")
        progress = Progress(console, spec["trainer"]["epochs"]) if spec["trainer"]["progress"] else None
        try:
            outcome = run_one(spec, store, force=args.force, progress=progress)
        finally:
            if progress:
                progress.close()
        outcome_record = outcome.record
        console.print(f"done in {outcome.wall_s:.1f} s{trained_by(outcome_record, requested)}")
    console.print(results_table(outcome_record, f"{label}: test metrics"))
    console.print(f"record: {store.record_path(run_id)}")
    return 0


def trained_by(record, requested: int) -> str:
    """" by N workers" from the record (how many data-parallel workers trained it) when that is not one process
    or not what this command asked for (the worker count is not part of the run's identity), else ""."""
    n = int(record["workers"].iloc[0]) if record is not None and len(record) else requested
    return f" by {n} worker{'s' if n != 1 else ''}" if n > 1 or n != requested else ""


def _check_data(spec: dict) -> None:
    """A paper benchmark whose files are missing is refused before the run is claimed (exit 2), as sweeps are."""
    from bench.build import benchmark_from

    benchmark = benchmark_from(spec["benchmark"]["name"], spec["benchmark"]["config"])
    if getattr(benchmark, "needs_data", False):
        benchmark.check_present()


def cmd_sweep(args: argparse.Namespace) -> int:
    from rich.table import Table

    from bench.store import ResultStore, results_dir
    from sweeps.driver import dry_run_rows, run_sweep
    from sweeps.plan import make_plan
    from sweeps.progress import SweepDisplay
    from sweeps.suite import load_suite

    suite = _suite_for_this_machine(load_suite(args.suite), args)
    plan = make_plan(suite, tuple(args.overrides), data_root=args.root, skip_missing=args.skip_missing)
    root = results_dir(args.results)
    console = _console()
    console.print(f"suite {suite.name}: {len(plan.cells)} cells x {len(suite.seeds)} seeds"
                  + (f", tuning {suite.tune.n_trials} trials per cell" if suite.tune else ", no tuning"))
    if plan.missing_methods:
        console.print(f"missing (not registered yet): methods {', '.join(plan.missing_methods)}")
    if plan.missing_benchmarks:
        console.print(f"missing (not registered yet): benchmarks {', '.join(plan.missing_benchmarks)}")
    if plan.missing_data:
        console.print(f"missing (no data under {plan.data_root}, skipped): benchmarks {', '.join(plan.missing_data)}; "
                      f"see python -m bench data check --suite {suite.name}", soft_wrap=True)
    if args.dry_run:
        store = ResultStore(root, args.index_url)
        t = Table(title=f"suite {suite.name}: final runs")
        for c in ("run", "run_id", "status"):
            t.add_column(c)
        rows = dry_run_rows(plan, store)
        for row in rows:
            t.add_row(*row)
        console.print(t)
        counts = {s: sum(r[2] == s for r in rows) for s in sorted({r[2] for r in rows})}
        console.print(", ".join(f"{n} {s}" for s, n in counts.items()))
        return 0
    result = run_sweep(plan, root, index_url=args.index_url, optuna_url=args.optuna_storage, address=args.address,
                       num_cpus=args.cpus, fresh=args.fresh, display=SweepDisplay(console))
    console.print(f"sweep {suite.name}: {result.count('done')} trained, {result.count('cached')} already done, "
                  f"{result.count('failed')} failed, {result.count('busy')} held by another driver, "
                  f"in {result.wall_s:.0f} s")
    _write_sweep_report(console, plan, root, args.index_url, result, args.optuna_storage)
    _print_trackers(console, plan, root, args.index_url, args.optuna_storage)
    if plan.suite.ladder:
        _print_ladder(console, plan, root, args.index_url)
    bad = [r for r in result.runs if r.status not in ("done", "cached")]
    for r in bad:
        console.print(f"{r.status}: {r.label} ({r.run_id}): {r.error.splitlines()[0] if r.error else ''}")
    if bad:
        print(f"error: {len(bad)} of {len(result.runs)} runs did not finish: "
              + ", ".join(f"{r.label} ({r.status})" for r in bad), file=sys.stderr)
        return 1
    return 0


def _suite_for_this_machine(suite, args: argparse.Namespace):
    """The suite's GPU settings when the sweep has GPUs (--gpu / --no-gpu, else whether this machine sees one), and
    for a local Ray instance no more CPUs per run than it has (Ray would wait forever for a larger slot)."""
    import dataclasses

    gpu = args.gpu
    if gpu is None:
        import torch

        gpu = torch.cuda.is_available()
    suite = suite.for_device(gpu)
    if not args.address:
        cpus = args.cpus or os.cpu_count() or 1
        if suite.resources.get("cpu", 1) > cpus:
            suite = dataclasses.replace(suite, resources={**suite.resources, "cpu": cpus})
    return suite


def _print_ladder(console, plan, root: Path, index_url) -> None:
    """The suite's sanity ladder (reports/ladder.py) as the sweep's last table: one row per rung and method."""
    from rich.table import Table

    from bench.store import ResultStore
    from reports import ladder as ld

    records = ResultStore(root, index_url).load()
    records = records[records["suite"] == plan.suite.name]
    table = ld.evaluate_ladder(records, plan.suite.ladder, methods={c.method for c in plan.cells})
    t = Table(title=f"suite {plan.suite.name}: sanity ladder")
    for c in ("rung", "benchmark", "metric", "method", "value", "untrained", "test", "result"):
        t.add_column(c)
    for r in table.itertuples():
        style = {"pass": "green", "FAIL": "bold red"}.get(r.result, "yellow")
        t.add_row(str(r.rung), r.benchmark, r.metric, r.method, ld.fmt(r.value), ld.fmt(r.floor), r.test,
                  f"[{style}]{r.result}[/{style}]")
    console.print(t)
    console.print(ld.summary(table), soft_wrap=True)


def _sweep_tuning(plan, root: Path, index_url, optuna_url):
    """The Tuning section of a tuned suite's report: its studies in the storage the sweep used (none untuned)."""
    if not plan.tuned:
        return None
    from reports.tuning import default_url, read_tuning

    url = optuna_url or default_url(root, index_url)
    return read_tuning(url, suite=plan.suite.name) if url else None


def _print_trackers(console, plan, root: Path, index_url, optuna_url) -> None:
    """Where to look at curves and studies: folders and databases that outlive the sweep (Ray's own TensorBoard
    hint names its temporary session folder, deleted when the sweep ends; it is silenced in sweeps/compat.py)."""
    from bench.store import mask_url
    from bench.train.tracking import TENSORBOARD_FOLDER

    # no hint where there are no curves (trainer.tensorboard=false and no tuning); "tune" is Ray Tune's storage_path
    if any(any((root / d).glob("**/events.out.tfevents.*")) for d in (TENSORBOARD_FOLDER, "tune")):
        console.print(f"curves (every run's epochs, every tuning trial): tensorboard --logdir {root}", soft_wrap=True)
    if plan.tuned:
        from reports.tuning import default_url

        url = optuna_url or default_url(root, index_url)
        if url:
            console.print(f"studies: optuna-dashboard {mask_url(url)}", soft_wrap=True)


def _write_sweep_report(console, plan, root: Path, index_url, result, optuna_url: str | None = None) -> None:
    """The suite's report when the reports module is present, else a summary table of the final runs."""
    from bench.store import ResultStore

    store = ResultStore(root, index_url)
    try:
        from reports.build import report_from_store
    except ImportError:
        report_from_store = None
    if report_from_store is not None:
        import pandas as pd

        expected = pd.DataFrame([{"method": s["method"]["name"], "benchmark": s["benchmark"]["name"],
                                  "obs_ratio": s["obs_ratio"], "seed": s["seed"]} for s in result.specs]
                                # benchmarks skipped for want of data read "missing" in the report
                                + [{"method": m, "benchmark": b, "obs_ratio": r, "seed": seed}
                                   for b in plan.missing_data for m in sorted({c.method for c in plan.cells})
                                   for r in plan.suite.obs_ratios for seed in plan.suite.seeds])
        paths = report_from_store(store, root / "report" / plan.suite.name, suite=plan.suite.name, expected=expected,
                                  config={"suite": plan.suite.__dict__ | {"source": plan.suite.source}},
                                  ladder=plan.suite.ladder, tuning=_sweep_tuning(plan, root, index_url, optuna_url))
        console.print(f"report: {paths['index.html']}")
        return
    from rich.table import Table

    t = Table(title=f"suite {plan.suite.name}: test metrics of the final runs (joint)")
    for c in ("run", "status", "probe_linear", "probe_mlp", "kmeans_acc"):
        t.add_column(c)
    for r in result.runs:
        rec = store.get(r.run_id)
        vals = {}
        if rec is not None:
            test = rec[(rec["split"] == "test") & (rec["target"] == "joint")]
            vals = dict(zip(test["metric"], test["value"]))
        t.add_row(r.label, r.status, *(f"{vals[m]:.3f}" if m in vals else "-" for m in ("probe_linear", "probe_mlp", "kmeans_acc")))
    console.print(t)


def cmd_perf(args: argparse.Namespace) -> int:
    """The verb named by ``args.what`` (bench.registry.PERF_VERBS), with its own options parsed from ``args.options``;
    what it writes goes under ``results/perf``."""
    from bench.store import results_dir

    verb = _perf_verbs().get(args.what)
    options = perf_verb_parser(verb, args.perf_prog).parse_args(args.options)
    verb.run(options, _console(), results_dir() / "perf")
    return 0


def perf_verb_parser(verb, perf_prog: str) -> argparse.ArgumentParser:
    """``python -m bench perf VERB``'s parser: the options the verb declares."""
    parser = argparse.ArgumentParser(prog=f"{perf_prog} {verb.name}", description=verb.help)
    verb.add_arguments(parser)
    return parser


def perf_verbs_text() -> str:
    """The registered perf verbs, one line each with its help."""
    verbs = _perf_verbs()
    width = max(map(len, verbs.names()))
    return "verbs (python -m bench perf VERB --help shows a verb's options):\n" + "\n".join(
        f"  {name:<{width}}  {verb.help}" for name, verb in verbs.items())


def _perf_verbs():
    """bench.registry.PERF_VERBS with the sweep's verb too: the engine's registry never imports sweeps itself."""
    import sweeps.perf  # noqa: F401  (registers `perf sweep`)
    from bench.registry import PERF_VERBS

    return PERF_VERBS


class _PerfHelp(argparse.Action):
    """``perf --help``: the usage and the registered verbs. The verbs are read from the registry only when asked
    for (here and in cmd_perf): loading them imports the methods, which no other command's parser needs."""

    def __init__(self, option_strings, dest, help=None):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.epilog = perf_verbs_text()
        parser.print_help()
        parser.exit()


def _add_perf_parser(sub) -> None:
    """The verb and everything after it are taken as they are; cmd_perf parses them with the verb's own options."""
    pf = sub.add_parser("perf", help="performance benchmarks, reported as ratios against a baseline in the same run",
                        add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter)
    pf.add_argument("-h", "--help", action=_PerfHelp, help="show this help, with the verbs, and exit")
    pf.add_argument("what", metavar="verb", help="what to measure (the verbs below)")
    # argparse marks every REMAINDER positional required; a verb without options is complete
    pf.add_argument("options", nargs=argparse.REMAINDER, help="the verb's options").required = False
    pf.set_defaults(func=cmd_perf, perf_prog=pf.prog)


def cmd_ls(args: argparse.Namespace) -> int:
    from rich.table import Table

    from bench.registry import BENCHMARKS, METHODS, METRICS

    what = args.what
    console = _console()
    if what == "runs":
        return _ls_runs(console, args)
    if what in ("methods", "all"):
        t = Table(title="methods")
        for c in ("name", "kind", "version", "capabilities"):
            t.add_column(c)
        for name, cls in METHODS.items():
            t.add_row(name, cls.kind, str(cls.version), ", ".join(("loss", "embed") + cls.capabilities()))
        console.print(t)
    if what in ("benchmarks", "all"):
        t = Table(title="benchmarks")
        for c in ("name", "modalities", "classes", "default metrics"):
            t.add_column(c)
        for name, cls in BENCHMARKS.items():
            if getattr(cls, "needs_data", False):  # never read a dataset just to list it
                from bench.data.formats.base import DiskBenchmark

                static = cls.spec is not DiskBenchmark.spec  # a spec that needs no data
                spec = cls().spec() if static else None
                t.add_row(name, f"{cls.summary} (data: bench data check)", str(spec.n_classes) if spec else "from data",
                          ", ".join(spec.default_metrics) if spec else "")
                continue
            spec = cls().spec()
            mods = ", ".join(f"{m.name} {m.kind} {'x'.join(map(str, m.shape))}" for m in spec.modalities)
            t.add_row(name, mods, str(spec.n_classes), ", ".join(spec.default_metrics))
        console.print(t)
    if what in ("suites", "all"):
        from sweeps.suite import load_suite, suite_names

        t = Table(title="suites (python -m bench sweep --suite NAME)")
        t.add_column("name", no_wrap=True)
        t.add_column("benchmarks")
        for c in ("methods", "obs ratios", "seeds", "tuning"):
            t.add_column(c, no_wrap=True)
        for name in suite_names():
            s = load_suite(name)
            t.add_row(name, ", ".join(b.name for b in s.benchmarks), str(len(s.methods)),
                      ", ".join(f"{r:g}" for r in s.obs_ratios), str(len(s.seeds)),
                      f"{s.tune.n_trials} trials" if s.tune else "none")
        console.print(t)
    if what in ("metrics", "all"):
        t = Table(title="metrics")
        for c in ("name", "better", "needs", "description"):
            t.add_column(c)
        for name, info in METRICS.items():
            t.add_row(name, "higher" if info.higher_is_better else "lower", ", ".join(info.needs), info.description)
        console.print(t)
    return 0


def _ls_runs(console, args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from bench.store import ResultStore, mask_url, results_dir, run_listing

    store = ResultStore(results_dir(args.results), args.index_url, read_only=True)
    runs = [r for r in run_listing(store) if not args.suite or r["suite"] == args.suite]
    t = Table(title=f"runs in {store.root} (index {escape(mask_url(store.index_url))})")
    for c in ("run_id", "method", "benchmark", "rho", "seed", "suite", "status", "detail"):
        t.add_column(c, no_wrap=c in ("run_id", "status"))
    for r in runs:
        rho = "" if r["obs_ratio"] is None else f"{float(r['obs_ratio']):g}"
        t.add_row(r["run_id"], *(escape(str(r[k] if r[k] is not None else "")) for k in ("method", "benchmark")),
                  rho, "" if r["seed"] is None else str(r["seed"]), escape(str(r["suite"] or "")), r["status"],
                  escape(r["detail"]))
    console.print(t)
    counts = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    console.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no runs")
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    from bench.store import mask_url, rebuild, results_dir

    store, changed, moved = rebuild(results_dir(args.results), args.index_url)
    if moved is not None:
        print(f"the damaged index was moved to {moved}")
    print(f"index {mask_url(store.index_url)} rebuilt from {store.runs_dir}: {len(changed['done'])} done, "
          f"{len(changed['dropped'])} marked done without a readable record dropped (they will be trained again), "
          f"{len(changed['unreadable'])} unreadable records (trained again by the next sweep), "
          f"{len(changed['removed'])} temporary files of killed writers removed")
    for rid in changed["unreadable"]:
        print(f"  unreadable: {store.record_path(rid)}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from bench.datacheck import check_suite, report
    from sweeps.suite import load_suite

    suite = load_suite(args.suite)
    return report(check_suite(suite, args.root), suite.name, args.root, _console())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="mmrl-bench: benchmark multimodal representation learning")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train and evaluate one run (method x benchmark x obs_ratio x seed)",
                       description="Hydra overrides, e.g. method=mvae benchmark=digits-ms obs_ratio=0.5 seed=0 trainer.epochs=5")
    r.add_argument("overrides", nargs="*", help="key=value Hydra overrides")
    r.add_argument("--force", action="store_true", help="retrain even if the store already has this run")
    r.add_argument("--results", help="results folder (default: results_dir in the config, $MMRL_RESULTS or ./results)")
    r.set_defaults(func=cmd_run)
    sw = sub.add_parser("sweep", help="run a suite: tune (Ray Tune + Optuna + ASHA) then final runs for every seed",
                        description="Runs done in the results folder are never trained again; re-running a killed "
                                    "sweep finishes what is left.")
    sw.add_argument("overrides", nargs="*", help="key=value Hydra overrides applied to every run")
    sw.add_argument("--suite", default="quick", help="quick (default), embedded, paper, or a path to a suite .yaml")
    sw.add_argument("--address", help="join the Ray cluster at HOST:PORT instead of starting a local one")
    sw.add_argument("--results", help="results folder (default: $MMRL_RESULTS or ./results)")
    sw.add_argument("--store", "--index-url", dest="index_url", metavar="URL",
                    help="database URL of the run index, e.g. postgresql://user:password@host/db to share it "
                         "between drivers; a non-SQLite URL also holds the Optuna studies (default: SQLite in the "
                         "results folder)")
    sw.add_argument("--optuna-storage", metavar="URL",
                    help="Optuna RDB storage URL (default: the --store database, else SQLite in the results folder)")
    sw.add_argument("--cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    sw.add_argument("--fresh", action="store_true", help="start new Optuna studies for this suite's cells")
    sw.add_argument("--dry-run", action="store_true", help="print the runs as new / done / failed and exit")
    sw.add_argument("--root", help="data root of the paper benchmarks (default: $MMRL_DATA, else ~/.mmrl-bench/data)")
    sw.add_argument("--skip-missing", action="store_true",
                    help="run the benchmarks whose data is present and list the others as missing (default: refuse)")
    sw.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=None,
                    help="use the suite's GPU settings (default: when this machine sees a GPU)")
    sw.set_defaults(func=cmd_sweep)
    _add_perf_parser(sub)
    from reports.cli import add_report_parser

    add_report_parser(sub)
    ls = sub.add_parser("ls", help="list registered methods, benchmarks or metrics")
    ls.add_argument("what", nargs="?", default="all",
                    choices=("methods", "benchmarks", "metrics", "suites", "runs", "all"))
    ls.add_argument("--results", help="runs: results folder (default: $MMRL_RESULTS or ./results)")
    ls.add_argument("--store", "--index-url", dest="index_url", metavar="URL",
                    help="runs: the run index the sweep used (default: SQLite in the results folder)")
    ls.add_argument("--suite", help="runs: only this suite's runs")
    ls.set_defaults(func=cmd_ls)
    st = sub.add_parser("store", help="maintain the result store: rebuild its index from the records",
                        description="rebuild: the records are the truth. A SQLite index that cannot be opened is "
                                    "moved aside and made anew; every readable record becomes a done row, done rows "
                                    "without a readable record are dropped (trained again by the next sweep).")
    st.add_argument("action", choices=("rebuild",))
    st.add_argument("--results", help="results folder (default: $MMRL_RESULTS or ./results)")
    st.add_argument("--store", "--index-url", dest="index_url", metavar="URL",
                    help="the run index (default: SQLite in the results folder)")
    st.set_defaults(func=cmd_store)
    data = sub.add_parser("data", help="the paper datasets on disk: what is present, what is missing, where to get it")
    data.add_argument("action", choices=("check",))
    data.add_argument("--suite", default="paper", help="the suite whose benchmarks are checked (default: paper)")
    data.add_argument("--root", help="data root (default: $MMRL_DATA, else ~/.mmrl-bench/data)")
    data.set_defaults(func=cmd_data)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except RunFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        lost = _lost_database(e, args)
        if lost is None:
            raise
        print(f"error: {lost}", file=sys.stderr)
        return lost.exit_code


def _lost_database(e: BaseException, args: argparse.Namespace):
    """The one line of a sweep's lost database (sweeps.driver.store_unavailable) for a database that went away
    outside the sweep's own loop: while its report, ladder or study summary is read, or under ``report`` and
    ``ls runs``. None for any other error, which keeps its traceback."""
    from bench.store import connection_lost, index_url_for, results_dir

    if connection_lost(e) is None:
        return None
    from reports.tuning import default_url
    from sweeps.driver import store_unavailable

    root = results_dir(getattr(args, "results", None))
    index_url = getattr(args, "index_url", None)
    optuna_url = getattr(args, "optuna_storage", None) or default_url(root, index_url) or "(none)"
    return store_unavailable(e, index_url_for(root, index_url), optuna_url)
