import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Small, fast defaults for every run a test starts; the tests that measure quality set their own.
FAST = ["benchmark=digits-ms", "benchmark.variants=1", "trainer.epochs=2", "trainer.progress=false",
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


# benchmarks with image and text modalities, and with five modalities, and the shapes of their modalities
REAL_SHAPES = [("digits-mst", {"m1": (1, 16, 16), "m2": (3, 16, 16), "text": (8,)}),
               ("digits-poly5", {f"m{k}": (3, 16, 16) for k in range(5)})]


def partly_observed_batch(name: str, n: int = 5):
    """(spec, batch) of the first n training samples of a real benchmark (variants=1) where sample 0 misses the second
    modality and sample 1 observes only the first."""
    import torch

    from bench.registry import BENCHMARKS

    cls = BENCHMARKS.get(name)
    bench = cls(cls.Config(variants=1))
    batch = bench.build()[0].batch(torch.arange(n))
    batch["mask"][0, 1] = False
    batch["mask"][1, 1:] = False
    return bench.spec(), batch


def assert_unobserved_values_change_nothing(model, batch: dict, scramble, seed: int = 2) -> None:
    """Loss, every gradient and every embedding are bitwise the same after ``scramble(data)`` rewrote the values of
    unobserved entries (same seed for the method's own sampling); the loss and gradients are finite."""
    import torch

    def run(b):
        model.zero_grad()
        torch.manual_seed(seed)
        out = model.loss(b)
        assert all(torch.isfinite(v) for v in out.values())
        out["loss"].backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        assert all(torch.isfinite(g).all() for g in grads.values())
        return out["loss"], grads, model.embed(b)

    other = {**batch, "data": {k: v.clone() for k, v in batch["data"].items()}}
    scramble(other["data"])
    (l1, g1, e1), (l2, g2, e2) = run(batch), run(other)
    assert torch.equal(l1, l2)
    assert g1.keys() == g2.keys() and all(torch.equal(g1[k], g2[k]) for k in g1)
    assert e1.keys() == e2.keys() and all(torch.equal(e1[k].nan_to_num(7.0), e2[k].nan_to_num(7.0)) for k in e1)
