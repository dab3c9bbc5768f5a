import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Small, fast defaults for every run a test starts; the tests that measure quality set their own.
FAST = ["benchmark=digits-ms", "benchmark.dm=1", "trainer.epochs=2", "trainer.progress=false",
        "eval.metrics=[probe_linear,kmeans_acc,retrieval_r1]", "eval.probe_max_train=1000"]


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return tmp_path / "results"


@pytest.fixture
def cli_env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env["MMRL_RESULTS"] = str(tmp_path / "results")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def python() -> str:
    return sys.executable
