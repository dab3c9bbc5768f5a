"""Hydra composition of ``sweeps/conf`` into a plain dict, with bad names caught before Hydra sees them.

The files sit on the Config dataclasses, registered as structured-config schemas (bench/schemas.py), so a composed
section holds every field: the code's default unless a file or an override says otherwise.

A **training protocol** (the ``protocol`` group, ``sweeps/conf/protocol/<name>.yaml``) is a set of override strings
per method and benchmark. :func:`compose` composes once to learn the method, the benchmark and the protocol, then
again with the protocol's overrides placed *before* the caller's, so that an explicit override always wins. The
composed dict holds the protocol's name under ``protocol``; the settings it chose are in the other sections, so
they enter the run's identity like any other value. A protocol file::

    name: paper
    families: {mnist-svhn: [mnist-svhn, mnist-svhn-text], polymnist: [polymnist]}   # family -> benchmarks
    rules:                          # method (or "*") -> family, benchmark (or "*") -> overrides
      "*": {"*": [trainer.epochs=100]}
      mopoe: {polymnist: [method.latent_dim=512, method.beta=2.5]}

For one (method, benchmark) the rules apply from the least to the most specific: ``*``/``*``, ``*``/family,
``*``/benchmark, then method/``*``, method/family, method/benchmark (a later value of the same key wins).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Sequence

from bench.errors import BenchError
from bench.registry import BENCHMARKS, METHODS
from bench.schemas import register_schemas

CONFIG_MODULE = "sweeps.conf"
_GROUP_REGISTRIES = {"method": METHODS, "benchmark": BENCHMARKS}
PROTOCOL_DIR = Path(__file__).resolve().parents[1] / "sweeps" / "conf" / "protocol"
ANY = "*"


def protocol_names() -> list[str]:
    return sorted(p.stem for p in PROTOCOL_DIR.glob("*.yaml"))


def check_protocol_name(name: str) -> None:
    valid = protocol_names()
    if name not in valid:
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise BenchError(f"unknown protocol {name!r}{hint} valid: {', '.join(valid)}")


def _check_overrides(overrides: Sequence[str]) -> None:
    for ov in overrides:
        if ov.startswith("--"):
            raise BenchError(f"unknown option {ov!r}; overrides are key=value, e.g. method=mvae obs_ratio=0.5")
        key, eq, value = ov.partition("=")
        if not eq:
            raise BenchError(f"override {ov!r} is not key=value (e.g. benchmark=digits-ms, trainer.epochs=5)")
        if key.lstrip("+~") == "protocol":
            check_protocol_name(value)
        reg = _GROUP_REGISTRIES.get(key.lstrip("+~"))
        if reg is not None:
            reg.get(value)  # raises UnknownName with the valid names and a close match


def _check_keys(overrides: Sequence[str], base: dict) -> None:
    """A dotted override must name an existing key (Hydra's own message says only 'Could not override')."""
    for ov in overrides:
        key = ov.partition("=")[0]
        if key[:1] in "+~" or "." not in key:
            continue
        node, parts = base, key.split(".")
        for i, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                parent = ".".join(parts[:i])
                valid = sorted(f"{parent}.{k}" for k in node) if isinstance(node, dict) else []
                raise BenchError(f"unknown option {key!r}; valid: {', '.join(valid) or '(none)'}")
            node = node[part]


# --- protocols ------------------------------------------------------------------------------------------------------
def check_protocol(protocol: dict) -> None:
    """Refuse a malformed protocol file in one line: families of registered benchmarks (each in one family at most),
    rules keyed by registered methods and by families or benchmarks, values that are dotted ``key=value`` strings."""
    name = protocol.get("name", "?")
    unknown = set(protocol) - {"name", "families", "rules"}
    if unknown:
        raise BenchError(f"protocol {name}: unknown key(s) {', '.join(sorted(unknown))}; valid: families, name, rules")
    families = protocol.get("families") or {}
    seen: dict[str, str] = {}
    for family, members in families.items():
        for b in members or ():
            BENCHMARKS.get(b)
            if b in seen:
                raise BenchError(f"protocol {name}: benchmark {b!r} is in two families, {seen[b]} and {family}")
            seen[b] = family
    places = {ANY, *families, *BENCHMARKS.names()}
    for method, by_place in (protocol.get("rules") or {}).items():
        if method != ANY:
            METHODS.get(method)
        for place, overrides in (by_place or {}).items():
            if place not in places:
                raise BenchError(f"protocol {name}, rules of {method}: {place!r} is neither a family "
                                 f"({', '.join(families) or 'none'}), a benchmark nor '*'")
            for ov in overrides or ():
                key, eq, _ = str(ov).partition("=")
                if not eq or "." not in key or key[:1] in "+~":
                    raise BenchError(f"protocol {name}, rule {method}/{place}: {ov!r} is not a dotted key=value "
                                     "override of an existing option (e.g. method.beta=2.5)")


def family_of(protocol: dict, benchmark: str) -> str | None:
    for family, members in (protocol.get("families") or {}).items():
        if benchmark in (members or ()):
            return family
    return None


def protocol_overrides(protocol: dict, method: str, benchmark: str) -> list[str]:
    """The protocol's override strings for one (method, benchmark), least specific first (see the module doc)."""
    rules = protocol.get("rules") or {}
    places = [ANY, family_of(protocol, benchmark), benchmark]
    return [str(ov) for m in (ANY, method) for place in places if place is not None
            for ov in (rules.get(m) or {}).get(place) or ()]


def _first_lines(e: BaseException) -> str:
    """The first line of Hydra's error and of its cause: "Error merging override method.hidden=abc" says where, the
    schema's ValidationError under it says what is wrong ("could not be converted to Integer")."""
    lines = [str(x).strip().splitlines()[0] for x in (e, e.__cause__) if x is not None and str(x).strip()]
    return ": ".join(dict.fromkeys(lines)) or type(e).__name__


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> dict:
    from hydra import compose as hydra_compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides)
    _check_overrides(overrides)
    register_schemas()  # the files' defaults lists name them (bench/schemas.py)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            groups = [ov for ov in overrides if "." not in ov.partition("=")[0]]
            first = hydra_compose(config_name=config_name, overrides=groups)
            base = OmegaConf.to_container(first)
            _check_keys(overrides, base)
            protocol = base.get("protocol")
            chosen = []
            if isinstance(protocol, dict):
                check_protocol(protocol)
                chosen = protocol_overrides(protocol, base["method"]["name"], base["benchmark"]["name"])
                try:
                    _check_keys(chosen, base)
                except BenchError as e:
                    raise BenchError(f"protocol {protocol.get('name')}: {e}") from None
            # the second composition would repeat the first when it adds nothing to it: skip it (half the cost)
            final = first if not chosen and len(groups) == len(overrides) else \
                hydra_compose(config_name=config_name, overrides=[*chosen, *overrides])
            cfg = OmegaConf.to_container(final, resolve=True)
        if isinstance(protocol, dict):
            cfg["protocol"] = str(protocol.get("name"))
        return cfg
    except (HydraException, OmegaConfBaseException) as e:
        raise BenchError(f"bad configuration override: {_first_lines(e)}") from None
    finally:
        GlobalHydra.instance().clear()
