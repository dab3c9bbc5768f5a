"""``python -m bench report``: the store's results as tables, statistics, figures and one HTML page.

bench/cli.py registers it with ``add_report_parser(sub)``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.errors import BenchError


def results_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("MMRL_RESULTS") or "results")


def cmd_report(args: argparse.Namespace) -> int:
    from bench.store import ResultStore
    from reports.build import report_from_store

    results = results_dir(args.results)
    if not results.is_dir():  # ResultStore would create an empty store and report on nothing
        raise BenchError(f"no results folder at {results} (give --results or set MMRL_RESULTS)")
    out = Path(args.out) if args.out else results / "report"
    paths = report_from_store(ResultStore(results), out, suite=args.suite, ladder=_suite_ladder(args.suite))
    print(paths["index.html"])
    return 0


def _suite_ladder(name: str | None) -> tuple:
    """The sanity rungs of a known suite (``--suite sanity``), so the standalone report judges them too."""
    from sweeps.suite import load_suite, suite_names

    return load_suite(name).ladder if name in suite_names() else ()


def add_report_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="write leaderboard tables, statistics, figures and index.html from the result store",
        description="Reads only the result store. Writes leaderboard.{md,tex,csv}, stats.{md,csv}, figures/*.png "
                    "and a self-contained index.html, and prints the path of index.html.")
    p.add_argument("--suite", help="only the runs of this suite (default: every run in the store)")
    p.add_argument("--out", help="report folder (default: <results>/report)")
    p.add_argument("--results", help="results folder (default: $MMRL_RESULTS or ./results)")
    p.set_defaults(func=cmd_report)
