"""``python -m bench report``: the store's results as tables, statistics, figures and one HTML page.

bench/cli.py registers it with ``add_report_parser(sub)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.errors import BenchError


def cmd_report(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from bench.store import ResultStore, open_error, results_dir
    from reports.build import report_from_store

    results = results_dir(args.results)
    if not results.is_dir():  # there would be nothing to report on, and a reader creates nothing
        raise BenchError(f"no results folder at {results} (give --results or set MMRL_RESULTS)")
    out = Path(args.out) if args.out else results / "report"
    # read-only: a report never creates index.sqlite, a table or an Optuna storage, wherever the index lives
    store = ResultStore(results, args.index_url, read_only=True)
    try:
        if store.engine is not None:  # None: no index yet; an unreachable index is named before Optuna's storage
            store.engine.connect().close()
        tuning = _read_tuning(results, args)
        paths = report_from_store(store, out, suite=args.suite, ladder=_suite_ladder(args.suite), tuning=tuning)
    except sa.exc.SQLAlchemyError as e:  # the index is the only other database read; its raw text may echo the URL
        raise BenchError(open_error(store.index_url, e)) from None
    print(paths["index.html"])
    return 0


def _read_tuning(results: Path, args: argparse.Namespace):
    """The Optuna studies of the sweep (``--optuna-storage``, else the storage the sweep used by default), or None
    when there is no storage to read."""
    from reports.tuning import default_url, read_tuning

    url = args.optuna_storage or default_url(results, args.index_url)
    return read_tuning(url, suite=args.suite) if url else None


def _suite_ladder(name: str | None) -> tuple:
    """The sanity rungs of a known suite (``--suite sanity``), so the standalone report judges them too."""
    from sweeps.suite import load_suite, suite_names

    return load_suite(name).ladder if name in suite_names() else ()


def add_report_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="write leaderboard tables, statistics, figures and index.html from the result store",
        description="Reads the result store (its run index read-only) and the sweep's Optuna studies. Writes "
                    "leaderboard.{md,tex,csv}, stats.{md,csv}, figures/*.png, tuning.md (when there are Optuna "
                    "studies) and a self-contained index.html, and prints the path of index.html.")
    p.add_argument("--suite", help="only the runs of this suite (default: every run in the store)")
    p.add_argument("--out", help="report folder (default: <results>/report)")
    p.add_argument("--results", help="results folder (default: $MMRL_RESULTS or ./results)")
    p.add_argument("--store", "--index-url", dest="index_url", metavar="URL",
                   help="database URL of the run index the sweep used, e.g. postgresql://user:password@host/db; "
                        "opened read-only (default: SQLite in the results folder)")
    p.add_argument("--optuna-storage", metavar="URL",
                   help="Optuna RDB storage URL whose studies fill the Tuning section, opened read-only (default: "
                        "the --store database when it is not SQLite, else <results>/optuna.sqlite when it exists, "
                        "else no section)")
    p.set_defaults(func=cmd_report)
