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


def random_batch(mods, n: int = 6, seed: int = 0) -> dict:
    """A complete batch of random data in each modality's own form (token ids for text, [0, 1] images)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    data = {}
    for m in mods:
        if m.kind == "text":
            data[m.name] = torch.randint(0, m.vocab_size, (n,) + m.shape, generator=g)
        elif m.kind == "image":
            data[m.name] = torch.rand((n,) + m.shape, generator=g)
        else:
            data[m.name] = torch.randn((n,) + m.shape, generator=g)
    return {"data": data, "mask": torch.ones(n, len(mods), dtype=torch.bool), "label": torch.zeros(n, dtype=torch.long)}
