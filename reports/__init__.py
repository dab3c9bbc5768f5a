"""Leaderboard reports read from the result store (issue "Reports").

``write_report(records, index, out_dir)`` writes the tables (Markdown, LaTeX, CSV), the statistics across
benchmarks, the figures and a self-contained ``index.html``; ``report_from_store(store, out_dir)`` loads a
:class:`bench.store.ResultStore` first. ``python -m bench report`` is :mod:`reports.cli`.
"""

__all__ = ["report_from_store", "write_report"]


def __getattr__(name: str):
    # lazy: bench/cli.py imports reports.cli on every command, and the plotting stack costs a second or two
    if name in __all__:
        from reports import build

        return getattr(build, name)
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
