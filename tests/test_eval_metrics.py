"""Tests for bench.eval: clustering, representation probes, retrieval, FID (docs/methods.md §9)."""

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


def test_probe_without_scaler_fits_the_raw_features():
    # the class lives in a feature a million times smaller than the noise features: only standardisation lets an
    # L2-regularised logistic regression use it
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 600)
    Z = np.column_stack([(2.0 * y - 1.0) * 1e-6 + 1e-8 * rng.normal(size=600), rng.normal(size=(600, 3))])
    tr, te = slice(0, 400), slice(400, None)
    assert probe_accuracy(Z[tr], y[tr], Z[te], y[te]) > 0.95
    assert probe_accuracy(Z[tr], y[tr], Z[te], y[te], scaler=False) < 0.7


def test_probe_replace_draws_max_train_indices_with_replacement_like_mopoe():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(6)
    Z, y = _blobs(rng, 40, 3, 4, sep=1.5)
    Zt, yt = _blobs(np.random.default_rng(7), 40, 3, 4, sep=1.5)
    idx = np.random.default_rng(11).integers(0, len(y), size=500)           # more draws than samples
    expected = float(np.mean(LogisticRegression(max_iter=1000).fit(Z[idx], y[idx]).predict(Zt) == yt))
    got = probe_accuracy(Z, y, Zt, yt, seed=11, max_train=500, scaler=False, replace=True)
    assert got == expected
    with pytest.raises(ValueError, match="max_train"):
        probe_accuracy(Z, y, Zt, yt, replace=True)


def test_kmeans_fitted_on_another_set_assigns_by_its_centroids():
    Z, y = np.array([[-3.0], [-1.0], [1.0], [3.0]]), np.array([0, 0, 1, 1])
    assert kmeans_scores(Z, y, seed=0)["acc"] == 1.0
    # centroids -2.5 and 10 from the fitting set put every point of Z in one cluster
    far = np.array([[-3.0], [-2.0], [9.0], [11.0]])
    assert kmeans_scores(Z, y, seed=0, Z_fit=far)["acc"] == 0.5
    with pytest.raises(ValueError, match="dimension"):
        kmeans_scores(Z, y, Z_fit=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="n_init"):
        kmeans_scores(Z, y, n_init=0)


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


def _reference_ranks(Q, K, groups=None):
    """Query by query, the keys (of other groups, when given) scoring at least as high as the correct key."""
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    Kn = K / np.linalg.norm(K, axis=1, keepdims=True)
    ranks = []
    for i in range(len(Q)):
        sim = Kn @ Qn[i]
        others = [j for j in range(len(K)) if j != i and (groups is None or groups[j] != groups[i])]
        ranks.append(sum(sim[j] >= sim[i] for j in others))
    return np.array(ranks)


def test_retrieval_with_distinct_groups_or_none_matches_the_reference():
    rng = np.random.default_rng(3)
    Q, K = rng.normal(size=(300, 4)), rng.normal(size=(300, 4))
    K[:150] = Q[:150] + 0.5 * rng.normal(size=(150, 4))     # half the pairs close, half at random
    ranks = _reference_ranks(Q, K)
    expected = {k: float(np.mean(ranks < k)) for k in (1, 5, 20)}
    assert retrieval_recall(Q, K, ks=(1, 5, 20)) == expected
    assert retrieval_recall(Q, K, ks=(1, 5, 20), key_groups=np.arange(300)) == expected   # one key per group
    groups = rng.integers(0, 40, 300)
    ranks = _reference_ranks(Q, K, groups)
    expected = {k: float(np.mean(ranks < k)) for k in (1, 5, 20)}
    assert retrieval_recall(Q, K, ks=(1, 5, 20), key_groups=groups) == expected


def test_retrieval_hand_made_case_with_a_duplicate_key():
    # keys 0 and 1 are copies of one item (group 0); by hand, the ranks are [0, 2, 1, 3] with the groups and
    # [1, 3, 1, 3] without (the copy ties with the correct key and goes ahead of it)
    K = np.array([[1.0, 0.0], [1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    Q = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.8, 0.6]])
    groups = np.array([0, 0, 1, 2])
    assert retrieval_recall(Q, K, ks=(1, 2, 3, 4), key_groups=groups) == {1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}
    assert retrieval_recall(Q, K, ks=(1, 2, 3, 4)) == {1: 0.0, 2: 0.5, 3: 0.5, 4: 1.0}


def test_duplicate_keys_no_longer_push_recall_to_zero():
    rng = np.random.default_rng(4)
    items = rng.normal(size=(50, 8))
    source = np.repeat(np.arange(50), 4)              # every item four times, as instance pairing with dm = 4
    K = items[source]                                 # identical copies of each key
    Q = items[source] + 0.01 * rng.normal(size=(200, 8))
    assert retrieval_recall(Q, K, ks=(1, 5)) == {1: 0.0, 5: 1.0}          # the copies tie ahead of the key
    assert retrieval_recall(Q, K, ks=(1, 5), key_groups=source) == {1: 1.0, 5: 1.0}
    assert retrieval_recall(Q, K, ks=(1,), key_groups=torch.from_numpy(source)) == {1: 1.0}


def test_identical_keys_tie_despite_rounding_in_the_matrix_product():
    # BLAS scores identical key rows up to ~1e-13 apart; the tie tolerance keeps every copy ahead of the correct
    # key (without it, 1 of these 900 queries ranked its key first by rounding alone, on the machine measured)
    codes = np.random.default_rng(0).normal(size=(300, 32))
    K = codes[np.repeat(np.arange(300), 3)]
    assert retrieval_recall(K, K, ks=(1, 3)) == {1: 0.0, 3: 1.0}


def test_a_degenerate_embedding_still_gets_the_minimum_with_groups():
    source = np.repeat(np.arange(50), 4)
    same = np.ones((200, 8))
    assert retrieval_recall(same, same, ks=(1, 5), key_groups=source) == {1: 0.0, 5: 0.0}
    zero = np.zeros((200, 8))                         # zero rows: cosine 0 with everything, all ties
    assert retrieval_recall(zero, zero, ks=(1, 5), key_groups=source) == {1: 0.0, 5: 0.0}


def test_retrieval_key_groups_are_checked():
    Q = np.eye(4)
    with pytest.raises(ValueError, match="key_groups"):
        retrieval_recall(Q, Q, key_groups=np.arange(3))
    with pytest.raises(ValueError, match="key_groups"):
        retrieval_recall(Q, Q, key_groups=np.array([0.0, 1.0, 2.0, 3.0]))


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


# --------------------------------------------------------------------------------------------- registered metrics


class SourceOracle(torch.nn.Module):
    """Embeds every test row as a random code of its source item (read from the row's bytes), the same code for
    every modality: a model that has learned exactly which instance a tuple shows, and nothing else."""

    def __init__(self, ds, constant: bool = False):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))   # EvalContext reads the dtype of the parameters
        self.source = {m: {ds.data[m][i].numpy().tobytes(): int(ds.extras[f"{m}_index"][i]) for i in range(len(ds))}
                       for m in ds.names}
        n = 1 + max(max(s.values()) for s in self.source.values())
        self.codes = torch.randn(n, 32, generator=torch.Generator().manual_seed(0))
        self.constant = constant

    def embed(self, batch):
        out = {}
        for m, x in batch["data"].items():
            rows = torch.tensor([self.source[m][r.cpu().numpy().tobytes()] for r in x])
            out[m] = torch.ones(len(rows), 32) if self.constant else self.codes[rows]
        out["joint"] = out[next(iter(out))]
        return out


@pytest.fixture(scope="module")
def instance_pairs():
    from bench.config import make_config
    from bench.registry import BENCHMARKS

    cls = BENCHMARKS.get("digits-ms")
    bench = cls(make_config(cls.Config, {"dm": 3, "pairing": "instance"}, "benchmark"))
    train, test = bench.build()
    assert len(np.unique(test.extras["m1_index"].numpy())) * 3 == len(test)   # each m1 image three times
    return bench.spec(), train, test


def test_retrieval_metrics_count_copies_of_the_correct_key_on_instance_pairs(instance_pairs):
    import dataclasses

    from bench.eval.context import EvalContext
    from bench.eval.metrics import retrieval_r1, retrieval_r5

    spec, train, test = instance_pairs
    ctx = EvalContext(SourceOracle(test), spec, train, test, {}, seed=0)
    assert retrieval_r1(ctx) == {"m1->m2": 1.0, "m2->m1": 1.0}
    # without the extras the copies of m1 tie ahead of the correct key: R@1 is 0 whatever the model (the old bug)
    bare = dataclasses.replace(test, extras={})
    ctx = EvalContext(SourceOracle(test), spec, train, bare, {}, seed=0)
    assert retrieval_r1(ctx)["m2->m1"] == 0.0
    # a collapsed embedding still scores the minimum
    ctx = EvalContext(SourceOracle(test, constant=True), spec, train, test, {}, seed=0)
    assert retrieval_r1(ctx) == {"m1->m2": 0.0, "m2->m1": 0.0}
    assert retrieval_r5(ctx) == {"m1->m2": 0.0, "m2->m1": 0.0}


def test_a_malformed_index_extra_is_refused_by_name(instance_pairs):
    import dataclasses

    from bench.eval.context import EvalContext
    from bench.eval.metrics import retrieval_r1

    spec, train, test = instance_pairs
    bad = dataclasses.replace(test, extras={**test.extras, "m1_index": test.extras["m1_index"][:10]})
    with pytest.raises(ValueError, match="m1_index"):
        retrieval_r1(EvalContext(SourceOracle(test), spec, train, bad, {}, seed=0))


class FirstModality(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def embed(self, batch):
        return {"joint": batch["data"]["a"]}


def _vector_ctx(train_z, train_y, test_z, test_y, **cfg):
    from bench.data.contracts import BenchmarkSpec, Modality, MultimodalDataset
    from bench.eval.context import EvalContext

    mod = Modality("a", "vector", (np.asarray(train_z).shape[1],))
    spec = BenchmarkSpec("toy", (mod,), n_classes=int(max(np.max(train_y), np.max(test_y))) + 1)
    make = lambda z, y: MultimodalDataset.complete((mod,), {"a": torch.tensor(z, dtype=torch.float32)}, y)
    return EvalContext(FirstModality(), spec, make(train_z, train_y), make(test_z, test_y), cfg, seed=0)


@pytest.mark.parametrize("fit, score, acc", [("test", "test", 1.0), ("train", "train", 5 / 6), ("train", "test", 0.5)])
def test_kmeans_metric_follows_the_protocol_splits(fit, score, acc):
    from bench.eval.metrics import kmeans_acc

    train_z = [[-3.0], [-2.0], [-2.5], [9.0], [11.0], [10.0]]     # centroids -2.5 and 10
    ctx = _vector_ctx(train_z, [0, 0, 1, 1, 1, 1], [[-3.0], [-1.0], [1.0], [3.0]], [0, 0, 1, 1],
                      kmeans_fit=fit, kmeans_score=score, kmeans_n_init=1)
    assert kmeans_acc(ctx)["joint"] == pytest.approx(acc)


def test_probe_metric_follows_the_protocol_knobs():
    from bench.eval.metrics import probe_linear

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 600)
    Z = np.column_stack([(2.0 * y - 1.0) * 1e-6 + 1e-8 * rng.normal(size=600), rng.normal(size=(600, 3))])
    default = probe_linear(_vector_ctx(Z[:400], y[:400], Z[400:], y[400:]))["joint"]
    mopoe = probe_linear(_vector_ctx(Z[:400], y[:400], Z[400:], y[400:], probe_max_train=500, probe_scaler=False,
                                     probe_replace=True))["joint"]
    assert default > 0.95 and mopoe < 0.7


def test_eval_protocols_fix_their_knobs():
    from bench.compose import compose
    from bench.errors import BenchError
    from bench.run import resolve_spec
    from bench.train.config import EVAL_PROTOCOLS

    for name in ("default", "mopoe", "mvp"):
        ev = resolve_spec(compose([f"eval={name}"]))["eval"]
        assert ev["protocol"] == name
        assert {k: ev[k] for k in EVAL_PROTOCOLS[name]} == EVAL_PROTOCOLS[name]
    assert EVAL_PROTOCOLS["mopoe"]["probe_max_train"] == 500 and not EVAL_PROTOCOLS["mopoe"]["probe_scaler"]
    assert EVAL_PROTOCOLS["mvp"]["kmeans_fit"] == "train"
    default = resolve_spec(compose([]))["eval"]
    assert (default["protocol"], default["probe_max_train"], default["probe_scaler"], default["kmeans_fit"]) == \
        ("default", 5000, True, "test")
    assert resolve_spec(compose(["eval.probe_max_train=300"]))["eval"]["protocol"] == "default"   # a budget there
    with pytest.raises(BenchError, match="eval.protocol=mopoe fixes probe_max_train=500"):
        resolve_spec(compose(["eval=mopoe", "eval.probe_max_train=2000"]))
    with pytest.raises(BenchError, match="eval.protocol=custom"):
        resolve_spec(compose(["eval.kmeans_fit=train"]))
    assert resolve_spec(compose(["eval.protocol=custom", "eval.kmeans_fit=train"]))["eval"]["kmeans_fit"] == "train"
    with pytest.raises(BenchError, match="default, mopoe, mvp, custom"):
        resolve_spec(compose(["eval.protocol=paper"]))
    with pytest.raises(BenchError, match="kmeans_score=train needs"):
        resolve_spec(compose(["eval.protocol=custom", "eval.kmeans_score=train"]))
