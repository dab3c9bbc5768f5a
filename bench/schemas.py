"""The code's Config dataclasses as Hydra structured configs (schemas), so that the YAML tree holds only differences.

Every registered method's and benchmark's ``Config``, :class:`~bench.train.config.TrainerConfig` and
:class:`~bench.train.config.EvalConfig` is stored in Hydra's ConfigStore under ``schema/``::

    schema/method/<name>      schema/benchmark/<name>      schema/trainer      schema/eval

A file in ``sweeps/conf`` names its schema first in its defaults list and states only what differs from it::

    defaults:                      # sweeps/conf/trainer/cpu.yaml
      - /schema/trainer@_here_
      - _self_
    device: cpu         # why this value and not the code's (auto)

The composed section therefore holds every field at its code default unless a file or an override says otherwise,
and Hydra refuses a key the dataclass does not have. The dataclasses stay the one place where a default is written;
bench.config.make_config still builds and validates them from the composed dict.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, List, Optional

from bench.config import config_dict
from bench.registry import BENCHMARKS, METHODS

GROUP = "schema"
_SCALARS = (int, float, bool, str)


def field_type(tp: Any) -> Any:
    """The OmegaConf annotation for a Config field's type.

    A value make_config accepts must come out of OmegaConf as make_config would make it, because 1 and 1.0 give
    different run_ids (bench/spec.py). For plain int, float, bool and str fields it does (OmegaConf only accepts
    more: "2" for a number, 1 for true); for ``float | None`` and the items of a tuple it would not (make_config
    keeps an integer there, OmegaConf would make it a float), so those are left untyped. Tuples become lists, the
    only sequence OmegaConf has."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    optional = origin in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            return Any
        tp = rest[0]
        origin = typing.get_origin(tp)
    if origin in (tuple, list) or tp in (tuple, list):
        inner: Any = List[Any]
    elif tp in _SCALARS and not (optional and tp is float):
        inner = tp
    else:
        return Any
    return Optional[inner] if optional else inner


def schema_class(config_cls: type, name: str | None = None) -> type:
    """A mutable dataclass with ``config_cls``'s fields, OmegaConf-typed (:func:`field_type`) and defaulted to the
    values of ``config_cls()``; with ``name``, a leading ``name`` field (the registered name) as well."""
    hints = typing.get_type_hints(config_cls)
    defaults = config_dict(config_cls())
    fields: list[tuple] = [("name", str, dataclasses.field(default=name))] if name is not None else []
    for f in dataclasses.fields(config_cls):
        value = defaults[f.name]
        default = (dataclasses.field(default_factory=functools.partial(list, value)) if isinstance(value, list)
                   else dataclasses.field(default=value))
        fields.append((f.name, field_type(hints[f.name]), default))
    # frozen stays off: OmegaConf would make a frozen schema's nodes read-only and refuse every override
    return dataclasses.make_dataclass(f"{config_cls.__name__}Schema", fields)


def schema_paths() -> dict[str, type]:
    """ConfigStore path (without ``.yaml``) -> schema class, for every registered method and benchmark, the trainer
    and the evaluation options."""
    from bench.train.config import EvalConfig, TrainerConfig

    out = {f"{GROUP}/trainer": schema_class(TrainerConfig), f"{GROUP}/eval": schema_class(EvalConfig)}
    for group, registry in (("method", METHODS), ("benchmark", BENCHMARKS)):
        for name, cls in registry.items():
            out[f"{GROUP}/{group}/{name}"] = schema_class(cls.Config, name)
    return out


@functools.cache
def register_schemas() -> None:
    """Store every schema in Hydra's ConfigStore (a process-wide singleton, so once per process)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for path, schema in schema_paths().items():
        group, _, name = path.rpartition("/")
        store.store(group=group, name=name, node=schema)
