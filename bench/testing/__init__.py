"""Test and benchmark fixtures: tiny files in the real formats; not used by a run.

:mod:`bench.testing.fixtures` writes small copies of the paper datasets' on-disk formats into a temporary folder,
for the readers' tests and ``python -m bench perf data``. Nothing in the engine's run path imports this package.
"""
