"""Tests for bench.eval: clustering, representation probes, retrieval, FID (METHODS.md §9)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.eval import NotApplicable
from bench.eval.clustering import cluster_scores, contingency_table
from bench.eval.fid import feature_statistics, fid_from_features, frechet_distance
from bench.eval.representation import kmeans_scores, probe_accuracy
from bench.eval.retrieval import class_precision_at_k, retrieval_recall


def _blobs(rng: np.random.Generator, n_per: int, n_classes: int, dim: int, sep: float):
    centres = rng.normal(size=(n_classes, dim)) * sep
    y = np.repeat(np.arange(n_classes), n_per)
    return centres[y] + rng.normal(size=(len(y), dim)), y


def test_not_applicable_is_an_exception():
    assert issubclass(NotApplicable, Exception)


# --------------------------------------------------------------------------------------------- clustering


def test_cluster_scores_perfect_up_to_relabelling():
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    pred = np.array([5, 5, 9, 9, 1, 1, 1])
    assert cluster_scores(y, pred) == pytest.approx({"acc": 1.0, "nmi": 1.0, "ari": 1.0})
    s = cluster_scores(torch.tensor(y), ["a", "a", "b", "b", "c", "c", "c"])
    assert s == pytest.approx({"acc": 1.0, "nmi": 1.0, "ari": 1.0})
    assert all(isinstance(v, float) for v in s.values())


def test_cluster_scores_random_labels():
    rng = np.random.default_rng(0)
    y, pred = rng.integers(0, 10, 5000), rng.integers(0, 10, 5000)
    s = cluster_scores(y, pred)
    assert abs(s["ari"]) < 0.05
    assert s["nmi"] < 0.05
    assert s["acc"] < 0.2


def test_cluster_scores_more_clusters_than_classes():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    pred = np.array([0, 0, 1, 1, 2, 2, 2, 3])  # 4 clusters, 2 classes
    s = cluster_scores(y, pred)
    # best one-to-one map: cluster 2 -> class 1 (3 right), cluster 0 or 1 -> class 0 (2 right); the rest are errors
    assert s["acc"] == pytest.approx(5 / 8)
    assert contingency_table(y, pred).shape == (4, 2)
    # and fewer clusters than classes
    assert cluster_scores(pred, y)["acc"] == pytest.approx(5 / 8)


def test_cluster_scores_length_mismatch():
    with pytest.raises(ValueError, match="length"):
        cluster_scores([0, 1, 2], [0, 1])


# --------------------------------------------------------------------------------------------- representation


def test_kmeans_scores_on_separated_blobs():
    rng = np.random.default_rng(0)
    Z, y = _blobs(rng, 100, 4, 8, sep=20.0)
    s = kmeans_scores(Z, y, seed=0)
    assert s["acc"] > 0.99 and s["nmi"] > 0.97 and s["ari"] > 0.97
    assert kmeans_scores(torch.from_numpy(Z).float(), torch.from_numpy(y))["acc"] > 0.99


def test_kmeans_scores_rejects_nan():
    Z = np.zeros((10, 2))
    Z[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN/inf"):
        kmeans_scores(Z, np.arange(10) % 2)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_probe_separable_vs_random(kind):
    rng = np.random.default_rng(1)
    Z, y = _blobs(rng, 150, 3, 10, sep=5.0)
    perm = rng.permutation(len(y))
    Z, y = Z[perm], y[perm]
    tr, te = slice(0, 300), slice(300, None)
    assert probe_accuracy(Z[tr], y[tr], Z[te], y[te], kind=kind) > 0.95
    y_rand = rng.integers(0, 3, len(y))
    acc = probe_accuracy(Z[tr], y_rand[tr], Z[te], y_rand[te], kind=kind, max_train=200)
    assert abs(acc - 1 / 3) < 0.15


def test_probe_max_train_is_seeded():
    rng = np.random.default_rng(2)
    Z, y = _blobs(rng, 100, 2, 5, sep=1.0)
    a = probe_accuracy(Z, y, Z, y, max_train=20, seed=3)
    b = probe_accuracy(Z, y, Z, y, max_train=20, seed=3)
    assert a == b


def test_probe_errors():
    Z = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ValueError, match="two classes"):
        probe_accuracy(Z, np.zeros(20), Z, np.zeros(20))
    with pytest.raises(ValueError, match="NaN/inf"):
        probe_accuracy(np.full((20, 3), np.inf), np.arange(20) % 2, Z, np.arange(20) % 2)
    with pytest.raises(ValueError, match="linear, mlp"):
        probe_accuracy(Z, np.arange(20) % 2, Z, np.arange(20) % 2, kind="svm")


# --------------------------------------------------------------------------------------------- retrieval


def test_retrieval_identity_and_shuffled():
    rng = np.random.default_rng(0)
    Q = rng.normal(size=(2000, 16))
    assert retrieval_recall(Q, Q, ks=(1, 5)) == {1: 1.0, 5: 1.0}
    rec = retrieval_recall(Q, Q[rng.permutation(2000)], ks=(1, 5, 100))
    for k, r in rec.items():
        assert abs(r - k / 2000) < 0.02, (k, r)


def test_retrieval_ties_are_pessimistic():
    Q = np.ones((5, 3))
    assert retrieval_recall(Q, Q, ks=(1, 4, 5)) == {1: 0.0, 4: 0.0, 5: 1.0}


def test_class_precision_at_k():
    rng = np.random.default_rng(0)
    Z, y = _blobs(rng, 50, 3, 6, sep=20.0)
    assert class_precision_at_k(Z, Z, y, y, k=10, exclude_self=True) == pytest.approx(1.0)
    p = class_precision_at_k(Z, Z, y, rng.permutation(y), k=10, exclude_self=True)
    assert abs(p - 1 / 3) < 0.1


# --------------------------------------------------------------------------------------------- FID


def test_frechet_distance_identical_and_diagonal():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 6))
    sigma = A @ A.T + 0.1 * np.eye(6)
    mu = rng.normal(size=6)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    a, b = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    mu2 = rng.normal(size=6)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + np.sum((mu - mu2) ** 2)
    assert frechet_distance(mu, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_singular_covariances():
    # rank-deficient covariances: the product is singular; the result must stay finite and close to the truth
    a, b = np.array([1.0, 0.0, 2.0]), np.array([0.0, 3.0, 2.0])
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(np.zeros(3), np.diag(a), np.zeros(3), np.diag(b)) == pytest.approx(expected, abs=1e-3)


def test_fid_from_features_same_vs_shifted():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(2000, 8))
    fake = rng.normal(size=(2000, 8))
    same = fid_from_features(real, fake)
    shifted = fid_from_features(real, torch.from_numpy(fake + 1.0).float())
    assert same < 0.1
    assert shifted > 7.0  # ||shift||^2 = 8
    assert shifted == pytest.approx(frechet_distance(*feature_statistics(real), *feature_statistics(fake + 1.0)),
                                    rel=1e-4)
    with pytest.raises(ValueError, match="dimension"):
        fid_from_features(real, fake[:, :4])
