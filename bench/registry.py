"""Name -> object registries for methods, benchmarks, metrics and ``python -m bench perf`` verbs.

One generic :class:`Registry`; unknown names raise :class:`UnknownName`, a :class:`BenchError` that names the valid
choices and the closest match, so the CLI can print it as one line.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterator, TypeVar

from bench.errors import BenchError

T = TypeVar("T")


class UnknownName(BenchError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class Registry(Generic[T]):
    """``plugins``: modules that register entries of this registry only, imported (after :data:`BUILTIN_MODULES`)
    on its first lookup."""

    def __init__(self, kind: str, plugins: tuple[str, ...] = ()):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._plugins = plugins
        self._plugins_loaded = not plugins

    def _load(self) -> None:
        _load_builtins()
        if not self._plugins_loaded:
            self._plugins_loaded = True
            for mod in self._plugins:
                importlib.import_module(mod)

    def register(self, name: str, obj: T) -> T:
        if name in self._items and self._items[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj
        return obj

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise UnknownName(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        valid = sorted(self._items)
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} valid: {', '.join(valid)}"

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._items[n]) for n in self.names()]


METHODS: Registry[type] = Registry("method")
BENCHMARKS: Registry[type] = Registry("benchmark")
METRICS: Registry["MetricInfo"] = Registry("metric")
# the engine's own verbs (bench.perf); a method's come with the methods package, the sweep's (sweeps.perf) with
# the command line, which alone may import sweeps (bench/cli.py)
PERF_VERBS: Registry["PerfVerb"] = Registry("perf verb", plugins=("bench.perf",))


@dataclass(frozen=True)
class MetricInfo:
    """A registered metric: a pure function of an evaluation context and its metadata.

    ``fn(ctx)`` returns ``{target: value}`` (target e.g. ``"joint"``, ``"m1"`` or ``"m1->m2"``), or raises
    :class:`bench.eval.NotApplicable` when the method or benchmark cannot serve it.
    """

    name: str
    fn: Callable[[Any], dict[str, float]]
    higher_is_better: bool
    needs: tuple[str, ...]
    description: str
    # False for metrics whose targets are data for a figure (a matrix, quantiles), not a score to rank methods by
    ranked: bool = True


@dataclass(frozen=True)
class PerfVerb:
    """A registered ``python -m bench perf`` verb.

    ``add_arguments(parser)`` declares its options on an :class:`argparse.ArgumentParser`; ``run(args, console,
    out_dir)`` measures and prints to the rich console, writing any file under ``out_dir`` (``results/perf``).
    """

    name: str
    help: str
    add_arguments: Callable[[Any], None]
    run: Callable[[Any, Any, Any], None]


def register_method(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        cls.name = name
        return METHODS.register(name, cls)

    return deco


def register_benchmark(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        cls.name = name
        return BENCHMARKS.register(name, cls)

    return deco


def register_metric(
    name: str, *, higher_is_better: bool, needs: tuple[str, ...] = ("embed",), description: str = "",
    ranked: bool = True,
) -> Callable[[Callable], Callable]:
    def deco(fn: Callable) -> Callable:
        METRICS.register(name, MetricInfo(name, fn, higher_is_better, tuple(needs),
                                          description or (fn.__doc__ or "").strip(), ranked))
        return fn

    return deco


def register_perf_verb(name: str, *, help: str, add_arguments: Callable[[Any], None]) -> Callable[[Callable], Callable]:
    """Decorates the verb's ``run(args, console, out_dir)``."""

    def deco(fn: Callable) -> Callable:
        PERF_VERBS.register(name, PerfVerb(name, help, add_arguments, fn))
        return fn

    return deco


# Modules whose import registers the built-in entries. Imported lazily on first lookup so that importing the
# registry stays cheap and the engine core never imports a particular method at module level.
BUILTIN_MODULES = (
    "bench.data.embedded",
    "bench.data.formats",
    "bench.eval.metrics",
    "bench.eval.generative",
    "bench.eval.analyses",
    "bench.eval.structure",
    "bench.eval.prediction",
    "baselines",
    "methods",
)
_loaded = False


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in BUILTIN_MODULES:
        importlib.import_module(mod)
