"""The method contract, generated from the registries (timm style): every registered method builds on every
embedded benchmark, takes two training steps at rho = 1 and rho = 0.5, embeds with the documented shapes, and
respects the mask. A newly registered method or benchmark is covered without touching this file."""

import pytest
import torch

from bench.config import make_config
from bench.data import load_splits
from bench.data.contracts import MISSING_INT
from bench.registry import BENCHMARKS, METHODS

# the paper benchmarks read datasets that CI never has; their readers have their own tests (tests/test_formats_*)
EMBEDDED = [n for n in BENCHMARKS.names() if not getattr(BENCHMARKS.get(n), "needs_data", False)]
SMALL = {"digits-ms": {"variants": 1}, "digits-ms-inst": {"variants": 1}, "digits-mst": {"variants": 1},
         "digits-poly5": {"variants": 1}, "digits-seg": {"n_train": 64, "n_test": 32}}
_splits = {}


def train_split(benchmark: str, rho: float):
    if (benchmark, rho) not in _splits:
        cls = BENCHMARKS.get(benchmark)
        bench = cls(make_config(cls.Config, SMALL.get(benchmark, {}), benchmark))
        _splits[benchmark, rho] = (bench.spec(), load_splits(bench, rho, seed=0)[0])
    return _splits[benchmark, rho]


def build(method: str, spec):
    cls = METHODS.get(method)
    torch.manual_seed(0)
    return cls(spec, cls.Config())


def scrambled(batch: dict, spec) -> dict:
    """The same batch with different values in every unobserved entry."""
    data = {}
    for j, m in enumerate(spec.modalities):
        x = batch["data"][m.name].clone()
        missing = ~batch["mask"][:, j]
        if m.is_integer:
            hi = m.vocab_size or m.n_classes
            x[missing] = torch.randint(0, hi, x[missing].shape, generator=torch.Generator().manual_seed(1))
        else:
            x[missing] = torch.rand(x[missing].shape, generator=torch.Generator().manual_seed(1)) * 7 - 3
        data[m.name] = x
    return {**batch, "data": data}


@pytest.mark.parametrize("rho", [1.0, 0.5])
@pytest.mark.parametrize("method", METHODS.names())
@pytest.mark.parametrize("benchmark", EMBEDDED)
def test_two_steps_and_embed(method, benchmark, rho):
    spec, train = train_split(benchmark, rho)
    model = build(method, spec)
    # DeepSpeed's initial parameter broadcast views each parameter as bytes, which fails on a 0-dim tensor
    assert all(p.dim() >= 1 for p in model.parameters()), "a 0-dim parameter: DeepSpeed cannot broadcast it"
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    batch = train.batch(torch.arange(min(32, len(train))))
    assert bool(batch["mask"].all()) == (rho == 1.0)
    for _ in range(2):
        out = model.loss(batch)
        assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
        opt.zero_grad()
        out["loss"].backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
    emb = model.embed(batch)
    b = len(batch["label"])
    assert emb["joint"].dim() == 2 and emb["joint"].shape[0] == b
    if METHODS.get(method).joint_needs_every_modality:  # finite exactly on the complete rows, NaN elsewhere
        complete = batch["mask"].all(1)
        assert torch.isfinite(emb["joint"][complete]).all() and torch.isnan(emb["joint"][~complete]).all()
    else:
        assert torch.isfinite(emb["joint"]).all()
    for j, m in enumerate(spec.modalities):
        if m.name in emb:  # per-modality embeddings: defined where observed, NaN where not
            z = emb[m.name]
            assert z.shape[0] == b
            observed = batch["mask"][:, j]
            assert torch.isfinite(z[observed]).all() and torch.isnan(z[~observed]).all()


@pytest.mark.parametrize("method", METHODS.names())
@pytest.mark.parametrize("benchmark", ["digits-mst", "mfeat6", "digits-seg"])
def test_unobserved_values_change_nothing(method, benchmark):
    spec, train = train_split(benchmark, 0.5)
    model = build(method, spec)
    batch = train.batch(torch.arange(min(32, len(train))))
    assert not batch["mask"].all()
    placeholders = [batch["data"][m.name][~batch["mask"][:, j]] for j, m in enumerate(spec.modalities)]
    assert all(bool(torch.isnan(p).all()) if p.is_floating_point() else bool((p == MISSING_INT).all())
               for p in placeholders)
    grads = []
    for b in (batch, scrambled(batch, spec)):
        model.zero_grad()
        torch.manual_seed(3)
        loss = model.loss(b)["loss"]
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
        emb = model.embed(b)["joint"]
        grads[-1] += (emb,)
    (l1, g1, e1), (l2, g2, e2) = grads
    assert torch.equal(l1, l2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))
    assert torch.equal(e1.isnan(), e2.isnan()) and torch.equal(e1.nan_to_num(), e2.nan_to_num())


@pytest.mark.parametrize("method", [m for m in METHODS.names() if {"generate", "sample"} & set(METHODS.get(m).capabilities())])
@pytest.mark.parametrize("benchmark", EMBEDDED)
def test_generate_and_sample_give_each_modality_in_its_own_form(method, benchmark):
    spec, train = train_split(benchmark, 0.5)
    model = build(method, spec)
    batch = train.batch(torch.arange(min(8, len(train))))
    caps = METHODS.get(method).capabilities()
    for m in spec.modalities:
        if "generate" in caps:
            out = model.generate(batch, m.name)
            assert out.shape == (len(batch["label"]), *m.shape)
            assert (out.dtype == torch.long) == m.is_integer
        if "sample" in caps:
            assert model.sample(3)[m.name].shape == (3, *m.shape)
