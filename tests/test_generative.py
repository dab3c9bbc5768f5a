"""Generative evaluation (docs/methods.md §9.1-§9.3): the harness's classifiers, cross/joint coherence, FID and KID.

The methods here are fakes with known answers: an oracle whose ``generate`` returns the true paired sample, noise,
mismatched pairs, and samplers that replay real test tuples.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.linalg
import torch

import bench.eval.classifiers as C
import bench.eval.generative as G
from bench.config import make_config
from bench.data.contracts import BenchmarkSpec, Modality, MultimodalDataset
from bench.errors import BenchError
from bench.eval import NotApplicable
from bench.eval.context import EvalContext
from bench.eval.evaluate import evaluate
from bench.eval.fid import fid_from_features, frechet_distance
from bench.registry import BENCHMARKS, METRICS

BENCH_KEY = "digits-ms:test:variants=1"
FAST = {"classifier_epochs": 8}  # about half the default training, accurate enough for these checks


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    cls = BENCHMARKS.get("digits-ms")
    bench = cls(make_config(cls.Config, {"variants": 1}, "benchmark"))
    train, test = bench.build()
    return {"spec": bench.spec(), "train": train, "test": test, "cache": tmp_path_factory.mktemp("cache")}


def make_ctx(digits, method, cache=None, spec=None, **cfg) -> EvalContext:
    return EvalContext(method, spec or digits["spec"], digits["train"], digits["test"], {**FAST, **cfg}, seed=0,
                       cache_dir=cache or digits["cache"], benchmark_key=BENCH_KEY)


def accuracies(digits) -> dict[str, float]:
    return C.classifier_acc(make_ctx(digits, object()))


# ------------------------------------------------------------------------------------------------------ fakes


class Oracle:
    """A perfect conditional generator: it recognises the observed source row of the test set and returns that
    row's true ``target`` (the only way a fake can see the target, which the harness masks out)."""

    def __init__(self, ds, shuffle: bool = False):
        self.ds = ds
        self.rows = {m: {ds.data[m][i].numpy().tobytes(): i for i in range(len(ds))} for m in ds.names}
        # the control: the target of a random *other* test row (a generator ignoring its input)
        self.perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(1)) if shuffle else None

    def generate(self, batch, target):
        src = next(m for j, m in enumerate(self.ds.names) if batch["mask"][0, j])
        assert not batch["mask"][:, self.ds.names.index(target)].any()
        rows = torch.tensor([self.rows[src][x.numpy().tobytes()] for x in batch["data"][src]])
        return self.ds.data[target][rows if self.perm is None else self.perm[rows]]


class Noise:
    def generate(self, batch, target):
        return torch.rand_like(batch["data"][target])


class Replay:
    """``sample(n)`` replays real test tuples in order (aligned), or each modality under its own permutation."""

    def __init__(self, ds, mismatched: bool = False, noise: float = 0.0):
        self.ds, self.pos, self.noise = ds, 0, noise
        gen = torch.Generator().manual_seed(2)
        self.order = {m: (torch.randperm(len(ds), generator=gen) if mismatched else torch.arange(len(ds)))
                      for m in ds.names}

    def sample(self, n):
        idx = (torch.arange(n) + self.pos) % len(self.ds)
        self.pos += n
        out = {m: self.ds.data[m][self.order[m][idx]] for m in self.ds.names}
        if self.noise:
            out = {m: (v + self.noise * torch.randn(v.shape)).clamp(0, 1) for m, v in out.items()}
        return out


class Both(Oracle):
    def __init__(self, ds):
        super().__init__(ds)
        self.replay = Replay(ds)

    def sample(self, n):
        return self.replay.sample(n)


# ------------------------------------------------------------------------------------------------ classifiers


def test_classifiers_are_accurate_and_registered(digits):
    acc = accuracies(digits)
    assert set(acc) == {"m1", "m2"}
    assert acc["m1"] > 0.9 and acc["m2"] > 0.8
    for name in ("classifier_acc", "coherence_cross", "coherence_joint", "fid", "kid"):
        assert name in METRICS
    assert METRICS.get("fid").higher_is_better is False and METRICS.get("coherence_cross").higher_is_better
    assert "FID-proxy, not comparable to published Inception FIDs" in METRICS.get("fid").description


def test_classifier_cache_loads_without_training(digits, tmp_path, monkeypatch):
    calls = []
    real_train = C.train_classifier
    monkeypatch.setattr(C, "train_classifier", lambda *a, **k: calls.append(a[0].name) or real_train(*a, **k))
    first = make_ctx(digits, object(), cache=tmp_path, classifier_epochs=1)
    acc = C.classifier_acc(first)
    assert sorted(calls) == ["m1", "m2"]
    files = sorted((tmp_path / "classifiers").glob("*.pt"))
    assert len(files) == 2 and not list((tmp_path / "classifiers").glob("*.tmp"))

    second = make_ctx(digits, object(), cache=tmp_path, classifier_epochs=1)
    assert C.classifier_acc(second) == acc
    assert sorted(calls) == ["m1", "m2"]  # loaded from disk, not retrained
    x = digits["test"].data["m2"][:50]
    assert np.array_equal(C.predict(C.get_classifier(first, "m2").model, x)[0],
                          C.predict(C.get_classifier(second, "m2").model, x)[0])

    payload = torch.load(files[0], weights_only=True)
    assert payload["key"] == files[0].stem and 0.0 <= payload["test_acc"] <= 1.0
    assert all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values())

    # another classifier config is another classifier
    C.classifier_acc(make_ctx(digits, object(), cache=tmp_path, classifier_epochs=2))
    assert len(calls) == 4

    # a corrupt cache file is retrained over, never trusted
    files[0].write_bytes(b"not a checkpoint")
    assert C.classifier_acc(make_ctx(digits, object(), cache=tmp_path, classifier_epochs=1)) == acc
    assert len(calls) == 5 and torch.load(files[0], weights_only=True)["key"] == files[0].stem


def test_classifier_training_is_deterministic(digits):
    x, y = C.observed_rows(digits["train"], "m1")
    cfg = C.ClassifierConfig(epochs=1)
    a = C.train_classifier(digits["spec"].modality("m1"), 10, x, y, cfg)
    state = torch.get_rng_state()
    b = C.train_classifier(digits["spec"].modality("m1"), 10, x, y, cfg)
    assert torch.equal(state, torch.get_rng_state())  # the caller's RNG is untouched
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


# ----------------------------------------------------------------------------------------------- coherence


def test_perfect_generator_scores_the_classifier_accuracy(digits):
    acc = accuracies(digits)
    out = G.coherence_cross(make_ctx(digits, Oracle(digits["test"])))
    assert out["m1->m2"] == pytest.approx(acc["m2"], abs=0.01)
    assert out["m2->m1"] == pytest.approx(acc["m1"], abs=0.01)
    assert out["mean"] >= 0.9
    assert out["size=1"] == pytest.approx(out["mean"])
    assert out["*->m2"] == out["m1->m2"]
    assert set(out) == {"m1->m2", "m2->m1", "*->m1", "*->m2", "size=1", "mean"}


class OracleJudge(torch.nn.Module):
    """A judge that knows the true label of every real test sample (by its bytes): accuracy exactly 1, so any
    coherence below 1 comes from the generator, not from the classifier."""

    def __init__(self, ds, target):
        super().__init__()
        self.labels = {ds.data[target][i].numpy().tobytes(): int(ds.labels[i]) for i in range(len(ds))}
        self.n = int(ds.labels.max()) + 1
        self.head = torch.nn.Linear(self.n, self.n, bias=False)
        self.head.weight.data = torch.eye(self.n)

    def features(self, x):
        return torch.nn.functional.one_hot(torch.tensor([self.labels[r.numpy().tobytes()] for r in x]),
                                           self.n).float()


def test_perfect_generator_scores_one_under_a_perfect_judge(digits):
    ds = digits["test"]
    ctx = make_ctx(digits, Oracle(ds))
    for m in ds.names:
        ctx.memo(("classifier", m), lambda m=m: C.TrainedClassifier(OracleJudge(ds, m), 1.0, "oracle"))
    out = G.coherence_cross(ctx)
    assert out["m1->m2"] == 1.0 and out["m2->m1"] == 1.0 and out["mean"] == 1.0
    shuffled = make_ctx(digits, Oracle(ds, shuffle=True))     # same judge, a generator that ignores its input
    for m in ds.names:
        shuffled.memo(("classifier", m), lambda m=m: C.TrainedClassifier(OracleJudge(ds, m), 1.0, "oracle"))
    assert G.coherence_cross(shuffled)["mean"] < 0.2


@pytest.mark.parametrize("method", [Noise(), "shuffled"])
def test_uninformed_generators_score_near_chance(digits, method):
    method = Oracle(digits["test"], shuffle=True) if method == "shuffled" else method
    out = G.coherence_cross(make_ctx(digits, method))
    assert out["mean"] < 0.3


def test_joint_coherence(digits):
    aligned = G.coherence_joint(make_ctx(digits, Replay(digits["test"])))["joint"]
    acc = accuracies(digits)
    assert aligned >= acc["m1"] * acc["m2"] - 0.02 and aligned > 0.8
    mismatched = G.coherence_joint(make_ctx(digits, Replay(digits["test"], mismatched=True)))["joint"]
    assert mismatched < 0.25


def test_subset_sizes_and_caps():
    names = ("a", "b", "c", "d", "e")
    assert G.source_subsets(names, 2, 10) == list(itertools.combinations(names, 2))
    picked = G.source_subsets(names, 2, 3)
    assert len(picked) == 3 and picked == G.source_subsets(names, 2, 3) and all(len(s) == 2 for s in picked)
    idx = G.eval_indices(100, 10)
    assert len(idx) == 10 and torch.equal(idx, idx.sort().values) and torch.equal(idx, G.eval_indices(100, 10))
    assert torch.equal(G.eval_indices(5, 10), torch.arange(5))


def test_size_k_targets_on_three_modalities(digits):
    """Subset sizes 1..M-1 over a three-modality spec (m1, m2 and a copy of m1), with the subset cap."""
    ds = digits["test"]
    m3 = Modality("m3", "image", ds.modalities[0].shape, likelihood="bernoulli")
    spec = BenchmarkSpec("tri", digits["spec"].modalities + (m3,), 10)
    tri = MultimodalDataset.complete(spec.modalities, {**ds.data, "m3": ds.data["m1"]}, ds.labels)
    ctx = EvalContext(Oracle(tri), spec, digits["train"], tri, {**FAST, "coherence_max_subsets": 2}, seed=0,
                      cache_dir=digits["cache"], benchmark_key=BENCH_KEY)
    ctx.memo(("classifier", "m3"), lambda: C.get_classifier(ctx, "m1"))  # m3 is m1: reuse its judge
    out = G.coherence_cross(ctx)
    assert {"size=1", "size=2", "mean"} <= set(out) and "size=3" not in out
    assert len([k for k in out if "->" in k and not k.startswith("*")]) == 6
    assert out["size=2"] >= 0.9


# --------------------------------------------------------------------------------------------------- FID/KID


def test_frechet_distance_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 8)), rng.normal(loc=0.3, size=(300, 8)) @ rng.normal(size=(8, 8))
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(direct, abs=1e-6)
    assert fid_from_features(a, b) == pytest.approx(direct, rel=1e-6)


def test_fid_and_kid_on_features():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-6)
    assert fid_from_features(x, x + 1.0) == pytest.approx(16.0, rel=1e-6)  # a unit mean shift in 16 dimensions
    shifted = G.kid_from_features(x, x + 1.0, subsets=10, subset_size=200)
    assert shifted > 0.1
    assert abs(G.kid_from_features(x, x, subsets=10, subset_size=200)) < 0.02 * shifted


def test_fid_of_real_images_is_zero_and_noise_raises_it(digits):
    perfect = G.fid(make_ctx(digits, Both(digits["test"])))
    assert set(perfect) == {"m1:uncond", "m1:cross", "m2:uncond", "m2:cross"}
    assert all(v == pytest.approx(0.0, abs=1e-6) for v in perfect.values())
    noisy = G.fid(make_ctx(digits, Replay(digits["test"], noise=0.6)))
    assert set(noisy) == {"m1:uncond", "m2:uncond"}  # no generate: no cross targets
    assert noisy["m1:uncond"] > 2.0 and noisy["m2:uncond"] > 2.0
    # the unbiased MMD^2 of a set against itself is -2 (mean k(x, x) - mean k(x, y)) / (m - 1): small, not 0
    kid_same = G.kid(make_ctx(digits, Both(digits["test"])))
    kid_noisy = G.kid(make_ctx(digits, Replay(digits["test"], noise=0.6)))
    assert all(abs(v) < 0.03 for v in kid_same.values())
    assert all(kid_noisy[k] > 2 * abs(kid_same[k]) for k in kid_noisy)


def test_inception_features_need_a_local_weights_file(digits, tmp_path):
    ctx = make_ctx(digits, Both(digits["test"]), fid_inception_weights=str(tmp_path / "missing.pth"))
    with pytest.raises(BenchError, match="fid_inception_weights"):
        G.fid(ctx)
    with pytest.raises(BenchError, match="fid_features"):
        G.fid(make_ctx(digits, Both(digits["test"]), fid_features="nope"))


# --------------------------------------------------------------------------------------------- applicability


def test_not_applicable(digits):
    bare = make_ctx(digits, object())
    for fn in (G.coherence_cross, G.coherence_joint, G.fid, G.kid):
        with pytest.raises(NotApplicable):
            fn(bare)
    with pytest.raises(NotApplicable, match="sample"):
        G.coherence_joint(make_ctx(digits, Oracle(digits["test"])))
    with pytest.raises(NotApplicable, match="generate"):
        G.coherence_cross(make_ctx(digits, Replay(digits["test"])))
    vectors = BenchmarkSpec("vec", (Modality("a", "vector", (4,)), Modality("b", "vector", (4,))), 2)
    with pytest.raises(NotApplicable, match="image"):
        G.fid(make_ctx(digits, Both(digits["test"]), spec=vectors))
    single = BenchmarkSpec("one", digits["spec"].modalities[:1], 10)
    with pytest.raises(NotApplicable, match="two modalities"):
        G.coherence_cross(make_ctx(digits, Oracle(digits["test"]), spec=single))

    rows = evaluate(bare, ["coherence_cross", "classifier_acc"])
    assert rows[0]["status"] == "not_applicable" and math.isnan(rows[0]["value"])
    assert {r["target"] for r in rows[1:]} == {"m1", "m2"} and all(r["status"] == "done" for r in rows[1:])
