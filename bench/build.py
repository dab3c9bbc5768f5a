"""Objects from config sections: the one place a benchmark or a method is built from its name and its values."""

from __future__ import annotations

from typing import Any, Mapping

from bench.config import make_config
from bench.registry import BENCHMARKS, METHODS


def benchmark_from(name: str, values: Mapping[str, Any] | None = None, where: str | None = None):
    """The registered benchmark ``name`` configured by ``values`` (its Config's fields; a ``name`` key, as in a
    composed config section, is ignored). Unknown names and options are refused in one line."""
    cls = BENCHMARKS.get(name)
    values = {k: v for k, v in (values or {}).items() if k != "name"}
    return cls(make_config(cls.Config, values, where or "benchmark"))


def method_from(name: str, bspec, values: Mapping[str, Any] | None = None, where: str | None = None):
    """The registered method ``name`` for a benchmark whose spec is ``bspec``, configured by ``values``."""
    cls = METHODS.get(name)
    values = {k: v for k, v in (values or {}).items() if k != "name"}
    return cls(bspec, make_config(cls.Config, values, where or "method"))
