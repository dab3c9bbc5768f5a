"""Tests for bench.eval.analyses: the DCMEM class-distance and paired/unpaired W2 analyses."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from bench.eval import NotApplicable
from bench.eval.analyses import (
    PROFILE_QUANTILES,
    class_distance_matrix,
    class_distance_profile,
    class_distance_ratio,
    modality_class_distance,
    paired_unpaired_distances,
    paired_unpaired_ratio,
    paired_unpaired_w2,
    w2_diag_gaussian,
    w2_profile,
)
from bench.registry import METRICS


@dataclass
class _Spec:
    modality_names: tuple[str, ...]
    n_classes: int


@dataclass
class _Ctx:
    emb: dict
    y: np.ndarray
    spec: _Spec
    seed: int = 0
    _cache: dict = field(default_factory=dict)

    def embeddings(self, split):
        assert split == "test"
        return self.emb

    def labels(self, split):
        assert split == "test"
        return self.y

    def memo(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]


def _ctx(emb, y, names=("a", "b"), n_classes=None):
    return _Ctx(emb, y, _Spec(tuple(names), n_classes or int(y.max()) + 1))


def _clustered(rng, n_per=60, n_classes=5, dim=16, noise=0.3):
    centres = rng.normal(size=(n_classes, dim))
    y = np.repeat(np.arange(n_classes), n_per)
    za = centres[y] + noise * rng.normal(size=(len(y), dim))
    zb = centres[y] + noise * rng.normal(size=(len(y), dim))   # same class structure, independent instances
    return za, zb, y


# --------------------------------------------------------------------------------------------- class distance


def test_class_distance_matrix_matches_direct_computation():
    rng = np.random.default_rng(0)
    za, zb = rng.normal(size=(12, 3)), rng.normal(size=(9, 3))
    ya, yb = rng.integers(0, 3, 12), np.array([0, 0, 0, 1, 1, 1, 1, 0, 0])  # class 2 absent on the b side
    D = class_distance_matrix(za, zb, ya, yb, 3, max_per_class=None)
    na = za / np.linalg.norm(za, axis=1, keepdims=True)
    nb = zb / np.linalg.norm(zb, axis=1, keepdims=True)
    for c in range(3):
        for c2 in range(2):
            direct = np.linalg.norm(na[ya == c][:, None] - nb[yb == c2][None], axis=-1).mean()
            assert D[c, c2] == pytest.approx(direct, abs=1e-9)
    assert np.isnan(D[:, 2]).all()
    assert np.isfinite(class_distance_ratio(D))


def test_class_distance_ratio_clustered_vs_random():
    rng = np.random.default_rng(1)
    za, zb, y = _clustered(rng)
    assert class_distance_ratio(class_distance_matrix(za, zb, y, y, 5)) > 1.5
    ra, rb = rng.normal(size=za.shape), rng.normal(size=zb.shape)
    assert class_distance_ratio(class_distance_matrix(ra, rb, y, y, 5)) == pytest.approx(1.0, abs=0.05)


def test_class_distance_cap_is_seeded_and_scale_free():
    rng = np.random.default_rng(2)
    za, zb, y = _clustered(rng, n_per=80)
    D1 = class_distance_matrix(za, zb, y, y, 5, max_per_class=30, seed=3)
    D2 = class_distance_matrix(za, zb, y, y, 5, max_per_class=30, seed=3)
    np.testing.assert_array_equal(D1, D2)
    # L2 normalisation: rescaling one modality changes nothing
    np.testing.assert_allclose(class_distance_matrix(za, 100 * zb, y, y, 5, max_per_class=None),
                               class_distance_matrix(za, zb, y, y, 5, max_per_class=None), atol=1e-9)


# --------------------------------------------------------------------------------------------- paired / unpaired


def test_paired_unpaired_noisy_copy_vs_independent():
    rng = np.random.default_rng(3)
    za = rng.normal(size=(400, 16))
    paired, unpaired = paired_unpaired_distances(za, za + 0.05 * rng.normal(size=za.shape), seed=0)
    assert paired.shape == unpaired.shape == (400,)
    assert paired_unpaired_ratio(paired, unpaired) > 10
    p2, u2 = paired_unpaired_distances(za, rng.normal(size=za.shape), seed=0)
    assert paired_unpaired_ratio(p2, u2) == pytest.approx(1.0, abs=0.1)


def test_paired_unpaired_never_pairs_an_instance_with_itself():
    za = np.eye(5)  # every unpaired distance between distinct one-hot rows is sqrt(2)
    paired, unpaired = paired_unpaired_distances(za, za, seed=7)
    np.testing.assert_allclose(paired, 0.0, atol=1e-12)
    np.testing.assert_allclose(unpaired, np.sqrt(2.0))
    a1 = paired_unpaired_distances(np.random.default_rng(0).normal(size=(30, 4)), za[:1].repeat(30, 0)[:, :4], 1)
    a2 = paired_unpaired_distances(np.random.default_rng(0).normal(size=(30, 4)), za[:1].repeat(30, 0)[:, :4], 1)
    np.testing.assert_array_equal(a1[1], a2[1])


def test_w2_diag_gaussian():
    rng = np.random.default_rng(4)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 2, 6), rng.uniform(0.1, 2, 6)
    direct = np.sqrt(np.sum((mu1 - mu2) ** 2) + np.sum((s1 - s2) ** 2))
    assert w2_diag_gaussian(mu1, s1, mu2, s2) == pytest.approx(direct)
    assert w2_diag_gaussian(mu1, s1, mu1, s1) == 0.0
    # batched, symmetric, and the point-mass case is the Euclidean distance
    M1, M2, S1, S2 = (rng.normal(size=(3, 4)) for _ in range(4))
    S1, S2 = np.abs(S1), np.abs(S2)
    np.testing.assert_allclose(w2_diag_gaussian(M1, S1, M2, S2), w2_diag_gaussian(M2, S2, M1, S1))
    np.testing.assert_allclose(w2_diag_gaussian(M1, 0 * S1, M2, 0 * S2), np.linalg.norm(M1 - M2, axis=1))
    # 1-D check against the quantile-function definition: W2^2 = int_0^1 (F1^-1(u) - F2^-1(u))^2 du
    from scipy.stats import norm
    u = (np.arange(20000) + 0.5) / 20000
    q = norm.ppf(u)
    numeric = np.sqrt(np.mean(((0.3 + 1.5 * q) - (-0.4 + 0.7 * q)) ** 2))
    assert w2_diag_gaussian([0.3], [1.5], [-0.4], [0.7]) == pytest.approx(numeric, rel=1e-3)
    with pytest.raises(ValueError):
        w2_diag_gaussian(mu1, -s1, mu2, s2)


# --------------------------------------------------------------------------------------------- metrics


def test_metrics_on_fake_context():
    rng = np.random.default_rng(5)
    za, _, y = _clustered(rng, n_per=50, n_classes=4)
    zb = za + 0.05 * rng.normal(size=za.shape)
    zb[:7] = np.nan                                   # unobserved rows are dropped, not propagated
    ctx = _ctx({"joint": za, "a": za, "b": zb}, y)
    w2 = paired_unpaired_w2(ctx)
    assert set(w2) == {"a->b", "b->a", "mean"} and w2["mean"] > 5
    cd = modality_class_distance(ctx)
    assert set(cd) == {"a->b", "b->a", "mean"} and cd["mean"] > 1.5
    assert cd["a->b"] == pytest.approx(cd["b->a"])    # D_ba = D_ab^T
    # independent modalities: no structure
    ctx2 = _ctx({"a": rng.normal(size=(200, 8)), "b": rng.normal(size=(200, 8))}, rng.integers(0, 4, 200))
    assert paired_unpaired_w2(ctx2)["mean"] == pytest.approx(1.0, abs=0.1)
    assert modality_class_distance(ctx2)["mean"] == pytest.approx(1.0, abs=0.05)


def test_metrics_not_applicable_with_one_modality():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, 50)
    z = rng.normal(size=(50, 4))
    for emb in ({"joint": z, "a": z}, {"joint": z, "a": z, "c": z}):   # "c" is not a modality of the spec
        ctx = _ctx(emb, y, names=("a", "b"))
        with pytest.raises(NotApplicable):
            paired_unpaired_w2(ctx)
        with pytest.raises(NotApplicable):
            modality_class_distance(ctx)


def test_metrics_are_registered():
    # registered on import of bench.eval.analyses (read the table directly: METRICS.get would import every
    # built-in module, which is slow and not what is under test here)
    for name in ("modality_class_distance", "paired_unpaired_w2"):
        info = METRICS._items[name]
        assert info.higher_is_better and info.description


def test_profiles_hold_the_matrix_and_the_distance_quantiles():
    rng = np.random.default_rng(7)
    za, _, y = _clustered(rng, n_per=40, n_classes=3)
    zb = za + 0.05 * rng.normal(size=za.shape)
    ctx = _ctx({"a": za, "b": zb}, y)
    prof = class_distance_profile(ctx)
    assert set(prof) == {f"{i},{j}" for i in range(3) for j in range(3)}
    D = np.array([[prof[f"{i},{j}"] for j in range(3)] for i in range(3)])
    direct = (class_distance_matrix(za, zb, y, y, 3) + class_distance_matrix(zb, za, y, y, 3)) / 2
    np.testing.assert_allclose(D, (direct + direct.T) / 2, rtol=1e-12)
    assert np.all(np.diag(D) < D[~np.eye(3, dtype=bool)].min())       # clustered: same class is closest
    q = w2_profile(ctx)
    assert len(q) == 2 * len(PROFILE_QUANTILES)
    paired = [q[f"paired:q{round(100 * p):02d}"] for p in PROFILE_QUANTILES]
    unpaired = [q[f"unpaired:q{round(100 * p):02d}"] for p in PROFILE_QUANTILES]
    assert paired == sorted(paired) and unpaired == sorted(unpaired)
    assert q["paired:q50"] < q["unpaired:q50"] / 5                    # noisy copies sit far closer than strangers
    both = [paired_unpaired_distances(za, zb, seed=0), paired_unpaired_distances(zb, za, seed=1)]
    assert q["paired:q100"] == pytest.approx(max(d[0].max() for d in both))


def test_profiles_are_not_ranked():
    from reports.tables import about_the_evaluator

    for name in ("class_distance_profile", "w2_profile"):
        assert METRICS._items[name].ranked is False
    assert about_the_evaluator(["class_distance_profile", "w2_profile", "modality_class_distance"]) == {
        "class_distance_profile", "w2_profile"}
