"""Search spaces: ``sweeps/conf/search/<method>.yaml`` maps dotted config paths to distributions::

    trainer.lr: {loguniform: [1.0e-4, 3.0e-3]}
    method.beta: {uniform: [0.25, 2.0]}
    method.latent_dim: {choice: [8, 16, 32]}
    method.hidden: {int: [64, 256]}

Paths address the composed run configuration (``method.<field>``, ``trainer.<field>``, ``benchmark.<field>``);
a path the method's configuration does not have is refused before anything trains.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from bench.errors import BenchError

SEARCH_DIR = Path(__file__).resolve().parent / "conf" / "search"
KINDS = ("uniform", "loguniform", "choice", "int")


def load_space(method: str, override: dict | None = None) -> dict[str, dict]:
    """The method's search space: ``override`` (a suite's own) or ``sweeps/conf/search/<method>.yaml``; {} if none."""
    path = SEARCH_DIR / f"{method}.yaml"
    if override is not None:
        raw, where = override, f"the suite's search space for {method}"
    elif path.exists():
        raw, where = yaml.safe_load(path.read_text()) or {}, f"search space {path.name}"
    else:
        return {}
    for key, dist in raw.items():
        if not (isinstance(dist, dict) and len(dist) == 1 and next(iter(dist)) in KINDS):
            raise BenchError(f"{where}: {key} must be one of {{{', '.join(KINDS)}: [...]}}, got {dist!r}")
    return dict(raw)


def get_dotted(cfg: dict, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def set_dotted(cfg: dict, key: str, value: Any) -> dict:
    out = copy.deepcopy(cfg)
    node = out
    *head, last = key.split(".")
    for part in head:
        node = node[part]
    node[last] = value
    return out


def check_space(space: dict, cfg: dict, method: str) -> None:
    """Every parameter must exist in the run configuration the search will modify."""
    for key in space:
        try:
            get_dotted(cfg, key)
        except (KeyError, TypeError):
            group = key.split(".")[0]
            valid = sorted(f"{group}.{k}" for k in (cfg.get(group) or {}) if k != "name") if isinstance(cfg.get(group), dict) else []
            raise BenchError(f"search space of {method} names {key!r}, which {method}'s configuration does not have; "
                             f"valid: {', '.join(valid) or 'method.*, trainer.*, benchmark.*'}") from None


def safe_name(key: str) -> str:
    # Tune treats '/' and '.' in parameter names specially in places; keep them out
    return key.replace(".", "__")


def to_optuna(space: dict) -> dict:
    """The space as Optuna distributions (safe names), handed to the searcher as they are. Ray Tune's own domains
    would be converted to these same distributions (``int: [a, b]`` includes b), but with a warning per cell that
    the space was "unresolved"."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    builders = {
        "uniform": lambda a: FloatDistribution(float(a[0]), float(a[1])),
        "loguniform": lambda a: FloatDistribution(float(a[0]), float(a[1]), log=True),
        "choice": lambda a: CategoricalDistribution(list(a)),
        "int": lambda a: IntDistribution(int(a[0]), int(a[1])),
    }
    return {safe_name(k): builders[next(iter(d))](next(iter(d.values()))) for k, d in space.items()}


def apply_params(cfg: dict, params: dict) -> dict:
    """Sampled parameters (safe names) written into a composed configuration."""
    for safe, value in params.items():
        cfg = set_dotted(cfg, safe.replace("__", "."), value.item() if hasattr(value, "item") else value)
    return cfg
