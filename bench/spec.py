"""RunSpec: the fully resolved configuration of one run, and its identity.

The identity of a run is its spec less the keys that cannot change the result (paths, logging, progress display,
data-loader workers, fault injection used by tests): :func:`semantic_part`. Everything that names or seeds a run
derives from it, in its canonical JSON (sorted keys, floats in one fixed format): ``run_id`` (the record, the
checkpoint folder, the Ray run), the Optuna study name of a tuned cell (``sweeps.plan``) and, from the benchmark's
part alone, the seeds of the validation hold-out and the observation mask (:func:`data_key`). See
docs/run-identity.md.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

# 2: the split seeds derive from data_key() (1: from the repr of the benchmark's config class); a spec keeps the
# version it was written with, so a version-1 record keeps its run_id and reruns with its old splits
SPEC_VERSION = 2
RUN_ID_LEN = 16

# Dotted paths left out of the identity. "debug" holds fault injection: a run that failed on purpose and is run
# again without it must be the same run. "trainer.workers": the batch size is the global one, so 1 and N
# data-parallel workers train the same run (equal numbers up to the order of float sums; bench/train/loop.py).
NON_SEMANTIC = frozenset({
    "suite",
    "protocol",  # a label: the settings a protocol chose are in the spec itself (sweeps/conf/protocol)
    "results_dir",
    "trainer.workers",
    "trainer.progress",
    "trainer.num_workers",
    "trainer.log_every",
    "trainer.keep_checkpoints",
    "trainer.tensorboard",  # whether curves are written, not what they hold
    "debug",
    "benchmark.config.root",  # where a paper dataset is read from (the same files anywhere give the same run)
})


def _canon(obj: Any) -> Any:
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"non-finite float {obj} in a run spec")
        # one textual form per value: 0.1 + 0.2 and 0.3 give the same id; 1 and 1.0 stay distinct types on purpose
        return float(format(obj, ".12g"))
    if isinstance(obj, Mapping):
        return {str(k): _canon(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canon(v) for v in obj]
    raise TypeError(f"unsupported value {obj!r} of type {type(obj).__name__} in a run spec")


def canonical_json(obj: Any) -> str:
    return json.dumps(_canon(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _drop(d: dict, dotted: str) -> None:
    head, _, rest = dotted.partition(".")
    if head not in d:
        return
    if rest:
        if isinstance(d[head], dict):
            _drop(d[head], rest)
    else:
        del d[head]


def semantic_part(spec: Mapping[str, Any]) -> dict:
    """The identity of a run: its spec without the NON_SEMANTIC keys."""
    d = copy.deepcopy(dict(spec))
    for key in NON_SEMANTIC:
        _drop(d, key)
    return d


def canonical_digest(obj: Any) -> str:
    """The sha256 hex digest of the canonical JSON of ``obj``: the one hash that names runs and studies."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def compute_run_id(spec: Mapping[str, Any]) -> str:
    return canonical_digest(semantic_part(spec))[:RUN_ID_LEN]


def seed_from_text(text: str) -> int:
    """A 63-bit seed from a string: the first 8 bytes of its sha256, little-endian, halved. Stable across
    processes and platforms (unlike ``hash``); the embedded datasets are generated with it, so it never changes."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def derive_seed(run_id: str, purpose: str) -> int:
    """A 63-bit seed for one purpose of one run (benchopt-style: derived, never global)."""
    return seed_from_text(f"{run_id}/{purpose}")


def benchmark_identity(section: Mapping[str, Any]) -> dict:
    """The identity of the data of a run: a spec's ``benchmark`` section ({"name", "version", "config"}) without
    its NON_SEMANTIC keys (the data root)."""
    if not isinstance(section, Mapping) or set(section) != {"name", "version", "config"}:
        got = sorted(section) if isinstance(section, Mapping) else type(section).__name__
        raise ValueError(f"a benchmark section has exactly the keys ['config', 'name', 'version'], got {got}")
    return semantic_part({"benchmark": dict(section)})["benchmark"]


def data_key(section: Mapping[str, Any]) -> str:
    """The text the split seeds of a benchmark derive from (with :func:`derive_seed`): the canonical JSON of its
    identity. The method is not in it: every method sees the same data."""
    return canonical_json(benchmark_identity(section))


@dataclass(frozen=True)
class RunSpec:
    """Plain-dict parts so that the spec crosses process and Ray boundaries unchanged."""

    method: dict
    benchmark: dict
    obs_ratio: float
    seed: int
    trainer: dict
    eval: dict
    missing: str = "paired"
    suite: str = "adhoc"
    phase: str = "final"     # "final" runs feed leaderboards; "tune" trials only inform the search
    debug: dict = field(default_factory=dict)
    protocol: str = "default"  # the training protocol that composed the spec (sweeps/conf/protocol); a label
    spec_version: int = SPEC_VERSION

    def to_dict(self) -> dict:
        d = {
            "spec_version": self.spec_version,
            "method": self.method,
            "benchmark": self.benchmark,
            "obs_ratio": float(self.obs_ratio),
            "missing": self.missing,
            "seed": int(self.seed),
            "trainer": self.trainer,
            "eval": self.eval,
            "suite": self.suite,
            "phase": self.phase,
            "debug": self.debug,
        }
        if self.protocol != "default":  # left out at the default, so specs from before protocols read back unchanged
            d["protocol"] = self.protocol
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunSpec":
        known = {"spec_version", "method", "benchmark", "obs_ratio", "missing", "seed", "trainer", "eval",
                 "suite", "phase", "debug", "protocol"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown run-spec keys {sorted(unknown)}; valid: {sorted(known)}")
        return cls(**{k: v for k, v in d.items()})

    @property
    def run_id(self) -> str:
        return compute_run_id(self.to_dict())

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2)
