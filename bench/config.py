"""Building typed config dataclasses from plain dicts, with one-line errors for unknown keys."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping

from bench.errors import BenchError


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if tp is bool and not isinstance(value, bool):
        raise BenchError(f"{where} must be true or false, got {value!r}")
    if tp in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise BenchError(f"{where} must be a number, got {value!r}")
    return value


def make_config(cls: type, values: Mapping[str, Any] | None, where: str) -> Any:
    """``cls(**values)`` with unknown keys refused (naming the valid ones) and numbers coerced to field types."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise BenchError(f"unknown {where} option(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields)) or 'none'}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints.get(k, Any), f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise BenchError(f"invalid {where} options: {e}") from None


def config_dict(cfg: Any) -> dict:
    """A JSON-friendly dict of a config dataclass (tuples become lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}
