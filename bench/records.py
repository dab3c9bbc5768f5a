"""The run record: long format, one row per (split, metric, target) of one run.

Schema changes bump :data:`SCHEMA_VERSION`; readers migrate older files in :func:`migrate`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from functools import lru_cache
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa

SCHEMA_VERSION = 2   # 2: the workers column

# the training loop's per-epoch history keys -> record rows: (history key, metric, split, higher_is_better)
HISTORY_ROWS = (("train_loss", "loss", "train", False), ("val_loss", "loss", "val", False),
                ("val_probe", "probe_split_half", "val", True))
# a validation metric -> the history key the loop reports it under (what Ray Tune watches during a trial)
VAL_HISTORY_KEY = {metric: key for key, metric, split, _ in HISTORY_ROWS if split == "val"}

SCHEMA = pa.schema([
    ("run_id", pa.string()),
    ("schema_version", pa.int32()),
    ("suite", pa.string()),
    ("phase", pa.string()),         # "final" (feeds leaderboards) | "tune" (a search trial)
    ("method", pa.string()),
    ("kind", pa.string()),          # "method" | "baseline"
    ("benchmark", pa.string()),
    ("obs_ratio", pa.float64()),
    ("missing", pa.string()),
    ("seed", pa.int64()),
    ("metric", pa.string()),
    ("target", pa.string()),        # what the metric was computed on: "joint", a modality, "m1->m2", "" for a scalar
    ("value", pa.float64()),        # NaN when status is "not_applicable"
    ("higher_is_better", pa.bool_()),
    ("split", pa.string()),         # "test" | "val" | "train" | "chance" (the metric's chance level, bench/eval/chance.py)
    ("status", pa.string()),        # "done" | "pruned" | "not_applicable"
    ("epoch", pa.int64()),
    ("wall_s", pa.float64()),
    ("git_sha", pa.string()),
    ("versions", pa.string()),      # JSON {package: version}
    ("hardware", pa.string()),
    ("workers", pa.int32()),        # data-parallel workers that trained the run (1: one process)
])
COLUMNS = [f.name for f in SCHEMA]


@lru_cache(maxsize=1)
def git_sha() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


@lru_cache(maxsize=1)
def package_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    vs = {}
    for pkg in ("mmrl-bench", "torch", "deepspeed", "ray", "optuna", "numpy", "scikit-learn"):
        try:
            vs[pkg] = version(pkg)
        except PackageNotFoundError:
            vs[pkg] = ""
    return json.dumps(vs, sort_keys=True)


def hardware() -> str:
    import torch

    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return f"{platform.machine()}/{os.cpu_count()}cpu/{dev}"


def make_rows(spec: dict, run_id: str, kind: str, results: Iterable[dict[str, Any]], epoch: int,
              wall_s: float, workers: int = 1) -> pd.DataFrame:
    """``results``: dicts with metric, target, value, higher_is_better, split, status."""
    base = {
        "run_id": run_id,
        "schema_version": SCHEMA_VERSION,
        "suite": spec.get("suite", ""),
        "phase": spec.get("phase", "final"),
        "method": spec["method"]["name"],
        "kind": kind,
        "benchmark": spec["benchmark"]["name"],
        "obs_ratio": float(spec["obs_ratio"]),
        "missing": spec.get("missing", "paired"),
        "seed": int(spec["seed"]),
        "epoch": int(epoch),
        "wall_s": float(wall_s),
        "git_sha": git_sha(),
        "versions": package_versions(),
        "hardware": hardware(),
        "workers": int(workers),
    }
    df = pd.DataFrame([{**base, **r} for r in results], columns=COLUMNS)
    return df


def migrate(df: pd.DataFrame) -> pd.DataFrame:
    """Bring a record read from disk to the current schema."""
    version = int(df["schema_version"].iloc[0]) if len(df) else SCHEMA_VERSION
    if version > SCHEMA_VERSION:
        raise ValueError(f"record schema version {version} is newer than this mmrl-bench ({SCHEMA_VERSION})")
    if version < 2 and "workers" not in df.columns:
        df = df.assign(workers=1)  # before multi-worker trials every run trained in one process
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"record lacks columns {missing}")
    return df[COLUMNS]
