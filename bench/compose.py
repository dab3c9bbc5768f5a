"""Hydra composition of ``sweeps/conf`` into a plain dict, with bad names caught before Hydra sees them."""

from __future__ import annotations

from typing import Sequence

from bench.errors import BenchError
from bench.registry import BENCHMARKS, METHODS

CONFIG_MODULE = "sweeps.conf"
_GROUP_REGISTRIES = {"method": METHODS, "benchmark": BENCHMARKS}


def _check_overrides(overrides: Sequence[str]) -> None:
    for ov in overrides:
        if ov.startswith("--"):
            raise BenchError(f"unknown option {ov!r}; overrides are key=value, e.g. method=mvae obs_ratio=0.5")
        key, eq, value = ov.partition("=")
        if not eq:
            raise BenchError(f"override {ov!r} is not key=value (e.g. benchmark=digits-ms, trainer.epochs=5)")
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


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> dict:
    from hydra import compose as hydra_compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides)
    _check_overrides(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            groups = [ov for ov in overrides if "." not in ov.partition("=")[0]]
            _check_keys(overrides, OmegaConf.to_container(hydra_compose(config_name=config_name, overrides=groups)))
            cfg = hydra_compose(config_name=config_name, overrides=overrides)
        return OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BenchError(f"bad configuration override: {first}") from None
    finally:
        GlobalHydra.instance().clear()
