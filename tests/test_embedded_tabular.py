"""The embedded tabular benchmarks: mfeat6, bc-3view, bc-report and ggm-synth (all offline, seconds to build)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data.contracts import MultimodalDataset
from bench.data.embedded import breast_cancer, ggm_synth, mfeat6
from bench.data.text import EOS, PAD, words
from bench.errors import BenchError
from bench.registry import BENCHMARKS


def _assert_train_standardised(train: MultimodalDataset, test: MultimodalDataset, names) -> None:
    for name in names:
        x = train.data[name].double()
        assert x.mean(0).abs().max() < 1e-4, name
        assert (x.std(0, unbiased=False) - 1).abs().max() < 1e-3, name
        # the test split is scaled with the training statistics, so it is not exactly standardised
        assert test.data[name].double().mean(0).abs().max() > 1e-2, name


def _assert_same(a: MultimodalDataset, b: MultimodalDataset) -> None:
    assert a.names == b.names
    assert torch.equal(a.labels, b.labels) and torch.equal(a.mask, b.mask)
    for k in a.data:
        assert torch.equal(a.data[k], b.data[k]), k


def test_registered():
    for name, cls in [("mfeat6", mfeat6.MFeat6), ("bc-3view", breast_cancer.BreastCancer3View),
                      ("bc-report", breast_cancer.BreastCancerReport), ("ggm-synth", ggm_synth.GGMSynth)]:
        assert cls.name == name
        assert BENCHMARKS._items[name] is cls  # registered at import (no lookup, which would import every builtin)


# ----------------------------------------------------------------------------------------------------------- mfeat6

def test_mfeat6_packaged_arrays():
    raw = mfeat6.load_raw()
    assert {k: raw[k].dtype for k in mfeat6.VIEWS} == {
        "fou": np.float32, "fac": np.uint16, "kar": np.float32, "pix": np.uint8, "zer": np.float32, "mor": np.float32}
    assert {k: raw[k].shape for k in mfeat6.VIEWS} == {k: (2000, d) for k, d in mfeat6.VIEW_DIMS.items()}
    assert np.array_equal(raw["labels"], np.repeat(np.arange(10), 200))  # rows sorted by class
    assert raw["pix"].max() == 6 and raw["pix"].reshape(2000, 16, 15).shape == (2000, 16, 15)


def test_mfeat6_shapes_and_balance():
    bench = mfeat6.MFeat6()
    spec = bench.spec()
    train, test = bench.build()
    assert spec.modality_names == ("fou", "fac", "kar", "pix", "zer", "mor")
    assert [m.shape for m in spec.modalities] == [(76,), (216,), (64,), (240,), (47,), (6,)]
    assert all(m.kind == "vector" and m.likelihood == "gaussian" for m in spec.modalities)
    assert spec.n_classes == 10 and train.modalities == spec.modalities
    assert (len(train), len(test)) == (1400, 600)
    for ds in (train, test):
        assert ds.labels.dtype == torch.int64 and bool(ds.mask.all())
        assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in ds.data.values())
    assert train.labels.bincount().tolist() == [140] * 10
    assert test.labels.bincount().tolist() == [60] * 10
    rows = torch.cat([train.extras["source_index"], test.extras["source_index"]])
    assert sorted(rows.tolist()) == list(range(2000))
    _assert_train_standardised(train, test, spec.modality_names)


def test_mfeat6_views_subset_and_validation():
    bench = mfeat6.MFeat6(mfeat6.MFeat6.Config(views=["mor", "fac"]))  # a list is normalised to a tuple
    train, test = bench.build()
    assert bench.spec().modality_names == ("mor", "fac") == train.names
    full_train, _ = mfeat6.MFeat6().build()
    assert torch.equal(train.data["fac"], full_train.data["fac"])  # same split and scaling as the full set
    with pytest.raises(BenchError, match="valid views: fou, fac, kar, pix, zer, mor"):
        mfeat6.MFeat6.Config(views=("fou", "pixels"))
    with pytest.raises(BenchError):
        mfeat6.MFeat6.Config(views=())
    with pytest.raises(BenchError):
        mfeat6.MFeat6.Config(views=("fou", "fou"))


def test_mfeat6_deterministic_and_seeded():
    a, _ = mfeat6.MFeat6().build()
    mfeat6._build.cache_clear()
    b, _ = mfeat6.MFeat6().build()
    assert a is not b
    _assert_same(a, b)
    c, _ = mfeat6.MFeat6(mfeat6.MFeat6.Config(seed=1)).build()
    assert not torch.equal(a.extras["source_index"], c.extras["source_index"])
    assert c.labels.bincount().tolist() == [140] * 10


def test_mfeat6_views_are_real_and_heterogeneous():
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    train, test = mfeat6.MFeat6().build()

    def acc(view: str) -> float:
        # one BLAS thread: on a busy 2-core machine a multi-threaded OpenBLAS fit is ~50x slower (0.1 s vs 5 s)
        with threadpool_limits(1):
            clf = LogisticRegression(max_iter=1000).fit(train.data[view].numpy(), train.labels.numpy())
        return clf.score(test.data[view].numpy(), test.labels.numpy())

    fac, mor = acc("fac"), acc("mor")
    assert fac > 0.9
    assert mor < fac - 0.1


# --------------------------------------------------------------------------------------------------------- bc-3view

def test_bc3view_shapes_balance_and_standardisation():
    bench = breast_cancer.BreastCancer3View()
    spec = bench.spec()
    train, test = bench.build()
    assert spec.modality_names == ("mean", "se", "worst") and spec.n_classes == 2
    assert all(m.shape == (10,) and m.likelihood == "gaussian" for m in spec.modalities)
    assert (len(train), len(test)) == (398, 171)
    assert train.labels.bincount().tolist() == [148, 250] and test.labels.bincount().tolist() == [64, 107]
    assert all(t.dtype == torch.float32 and t.shape[1] == 10 for t in train.data.values())
    _assert_train_standardised(train, test, spec.modality_names)


def test_bc3view_views_are_the_sklearn_columns():
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer()
    train, _ = breast_cancer.BreastCancer3View().build()
    rows = train.extras["source_index"].numpy()
    for j, view in enumerate(("mean", "se", "worst")):
        mean, std = train.extras["feature_mean"][view], train.extras["feature_std"][view]
        expected = (raw.data[rows, 10 * j: 10 * j + 10] - mean) / std
        np.testing.assert_allclose(train.data[view].double().numpy(), expected, atol=1e-5)
    assert np.array_equal(train.labels.numpy(), raw.target[rows])


def test_bc3view_deterministic_and_seeded():
    a, _ = breast_cancer.BreastCancer3View().build()
    breast_cancer._build_3view.cache_clear()
    breast_cancer._split.cache_clear()
    b, _ = breast_cancer.BreastCancer3View().build()
    _assert_same(a, b)
    c, _ = breast_cancer.BreastCancer3View(breast_cancer.BreastCancer3View.Config(seed=3)).build()
    assert not torch.equal(a.extras["source_index"], c.extras["source_index"])


# -------------------------------------------------------------------------------------------------------- bc-report

def _parse_report(text: str) -> list[int]:
    """Tertile levels of REPORT_MEASUREMENTS read back from a report, whatever its wording."""
    level_of = {w: lvl for lvl, ws in enumerate(breast_cancer.LEVEL_WORDS) for w in ws}
    measure_of = {tuple(words(s)): m for m, ss in breast_cancer.MEASUREMENT_WORDS.items() for s in ss}
    toks = words(text)
    assert toks[-1] == "."
    for opening in sorted(breast_cancer.OPENINGS, key=len, reverse=True):
        if opening and toks[: len(words(opening))] == words(opening):
            toks = toks[len(words(opening)):]
            break
    found = {}
    for clause in " ".join(toks[:-1]).split(" , "):
        cw = clause.split()
        lv = [w for w in cw if w in level_of]
        assert len(lv) == 1, clause
        found[measure_of[tuple(w for w in cw if w not in level_of)]] = level_of[lv[0]]
    return [found[m] for m in breast_cancer.REPORT_MEASUREMENTS]


def test_bc_report_shapes_and_tokens():
    bench = breast_cancer.BreastCancerReport()
    spec = bench.spec()
    train, test = bench.build()
    assert spec.modality_names == ("mean", "se", "worst", "report")
    report = spec.modality("report")
    assert report.kind == "text" and report.shape == (24,) and report.vocab_size == len(report.vocab)
    assert report.vocab == train.extras["vocab"].itos
    assert (len(train), len(test)) == (398, 171)
    for ds in (train, test):
        tok = ds.data["report"]
        assert tok.dtype == torch.int64 and tok.shape == (len(ds), 24)
        assert int(tok.min()) >= 0 and int(tok.max()) < report.vocab_size
        assert bool(((tok == EOS).sum(1) == 1).all()) and bool((tok[:, -1] == PAD).all())  # never truncated
    # the three views are exactly bc-3view's
    v_train, _ = breast_cancer.BreastCancer3View().build()
    assert all(torch.equal(train.data[v], v_train.data[v]) for v in ("mean", "se", "worst"))


def test_bc_report_is_a_function_of_train_tertiles_not_the_label():
    train, test = breast_cancer.BreastCancerReport().build()
    thresholds = train.extras["tertile_thresholds"]
    cols = [breast_cancer.MEASUREMENTS.index(m) for m in breast_cancer.REPORT_MEASUREMENTS]
    # cut points are the training tertiles of the raw ``mean`` features
    raw_mean = train.data["mean"].double().numpy() * train.extras["feature_std"]["mean"] + train.extras["feature_mean"]["mean"]
    np.testing.assert_allclose(thresholds, np.quantile(raw_mean[:, cols], [1 / 3, 2 / 3], axis=0).T, rtol=1e-5)
    for ds in (train, test):
        raw = ds.data["mean"].double().numpy() * ds.extras["feature_std"]["mean"] + ds.extras["feature_mean"]["mean"]
        codes = ds.extras["tertiles"].numpy()
        expected = (raw[:, cols] > thresholds[:, 0]).astype(int) + (raw[:, cols] > thresholds[:, 1]).astype(int)
        assert (codes == expected).mean() > 0.995  # float32 round trip may flip a value sitting on a cut point
        texts = train.extras["vocab"].decode(ds.data["report"])
        # with wording variation every report still reads back as exactly its tertile pattern
        assert [_parse_report(t) for t in texts] == codes.tolist()
    assert len(set(train.extras["vocab"].decode(train.data["report"]))) > 100  # and the wording does vary

    # without variation the tokens are a function of the tertile pattern alone, across both labels
    plain, _ = breast_cancer.BreastCancerReport(breast_cancer.BreastCancerReport.Config(wording_variation=False)).build()
    codes, tok, y = plain.extras["tertiles"].numpy(), plain.data["report"], plain.labels.numpy()
    patterns = {}
    for i, c in enumerate(map(tuple, codes)):
        patterns.setdefault(c, []).append(i)
    mixed = 0
    for idx in patterns.values():
        assert bool((tok[idx] == tok[idx[0]]).all())
        mixed += len(set(y[idx])) == 2
    assert mixed >= 3  # some patterns hold both malignant and benign samples: same report, different labels
    assert len({tuple(r) for r in tok.tolist()}) == len(patterns)  # distinct patterns give distinct reports


def test_bc_report_deterministic():
    a, _ = breast_cancer.BreastCancerReport().build()
    breast_cancer._build_report.cache_clear()
    b, _ = breast_cancer.BreastCancerReport().build()
    assert a is not b
    _assert_same(a, b)
    c, _ = breast_cancer.BreastCancerReport(breast_cancer.BreastCancerReport.Config(seed=1)).build()
    assert not torch.equal(a.extras["source_index"], c.extras["source_index"])


# -------------------------------------------------------------------------------------------------------- ggm-synth

def _full(ds: MultimodalDataset) -> np.ndarray:
    return torch.cat([ds.data["x1"], ds.data["x2"]], dim=1).double().numpy()


def _partial_correlation(prec: np.ndarray) -> np.ndarray:
    d = np.sqrt(np.diag(prec))
    return -prec / np.outer(d, d)


def test_ggm_shapes_from_config():
    cfg = ggm_synth.GGMSynth.Config(p=11, n_classes=4, n_per_class=50, n_test_per_class=20, seed=2)
    bench = ggm_synth.GGMSynth(cfg)
    spec = bench.spec()
    train, test = bench.build()
    assert spec.modality_names == ("x1", "x2") and spec.n_classes == 4
    assert [m.shape for m in spec.modalities] == [(5,), (6,)] and spec.modalities == train.modalities
    assert "structure" in spec.tasks and "classification" in spec.tasks
    assert (len(train), len(test)) == (200, 80)
    assert train.labels.bincount().tolist() == [50] * 4 and test.labels.bincount().tolist() == [20] * 4
    assert train.data["x1"].dtype == torch.float32 and train.labels.dtype == torch.int64
    ex = train.extras
    assert ex["precision"].shape == (4, 11, 11) and ex["precision"].dtype == np.float64
    assert ex["shared_edges"].shape == (11, 11) and ex["shared_edges"].dtype == bool
    assert ex["specific_edges"].shape == (4, 11, 11) and ex["specific_edges"].dtype == bool
    assert ex["view_index"]["x2"].tolist() == list(range(5, 11))


def test_ggm_precision_and_graph_truth():
    cfg = ggm_synth.GGMSynth.Config()  # p=30, K=3
    assert (cfg.n_shared_edges, cfg.n_specific_edges) == (15, 7)  # the p-derived defaults
    train, _ = ggm_synth.GGMSynth(cfg).build()
    prec, shared, specific = (train.extras[k] for k in ("precision", "shared_edges", "specific_edges"))
    eye = np.eye(cfg.p, dtype=bool)
    assert not shared[eye].any() and np.array_equal(shared, shared.T)
    assert shared.sum() // 2 == (cfg.p - 1) + cfg.n_shared_edges
    assert all(shared[j, j + 1] for j in range(cfg.p - 1))  # the chain
    for k in range(cfg.n_classes):
        assert np.allclose(prec[k], prec[k].T) and np.linalg.eigvalsh(prec[k])[0] > 0  # symmetric positive definite
        np.testing.assert_allclose(np.diag(np.linalg.inv(prec[k])), 1.0, rtol=1e-8)  # unit marginal variances
        assert np.array_equal(specific[k], specific[k].T) and specific[k].sum() // 2 == cfg.n_specific_edges
        assert not (specific[k] & shared).any()
        # the support of each precision is exactly shared + its own specific edges
        assert np.array_equal((prec[k] != 0) & ~eye, shared | specific[k])
        for j in range(k):
            assert not (specific[k] & specific[j]).any()  # specific edges differ across classes


def test_ggm_empirical_partial_correlations_recover_the_graph():
    cfg = ggm_synth.GGMSynth.Config(p=20, n_per_class=4000, n_test_per_class=10, seed=5)
    train, _ = ggm_synth.GGMSynth(cfg).build()
    x, y = _full(train), train.labels.numpy()
    shared, specific = train.extras["shared_edges"], train.extras["specific_edges"]
    off = ~np.eye(cfg.p, dtype=bool)
    pcs = [np.abs(_partial_correlation(np.linalg.inv(np.cov(x[y == k].T)))) for k in range(cfg.n_classes)]
    for k, pc in enumerate(pcs):
        edges = shared | specific[k]
        assert pc[edges].mean() > 3 * pc[off & ~edges].mean()
        assert pc[shared].min() > 0.05  # shared edges present in every class
        other = specific[(k + 1) % cfg.n_classes]
        assert pc[specific[k]].mean() > 3 * pc[other].mean()  # class k's own edges, absent elsewhere
        # and the empirical values match the truth
        true = np.abs(_partial_correlation(train.extras["precision"][k]))
        assert np.abs(pc - true)[off].max() < 0.1


def test_ggm_deterministic_seeded_and_validated():
    cfg = ggm_synth.GGMSynth.Config(p=12, n_per_class=40, n_test_per_class=10, n_shared_edges=5, n_specific_edges=3)
    a, at = ggm_synth.GGMSynth(cfg).build()
    ggm_synth._build.cache_clear()
    b, bt = ggm_synth.GGMSynth(cfg).build()
    assert a is not b
    _assert_same(a, b)
    _assert_same(at, bt)
    assert np.array_equal(a.extras["precision"], b.extras["precision"])
    c, _ = ggm_synth.GGMSynth(ggm_synth.GGMSynth.Config(p=12, n_per_class=40, n_test_per_class=10, n_shared_edges=5,
                                                         n_specific_edges=3, seed=1)).build()
    assert not torch.equal(a.data["x1"], c.data["x1"])
    assert not np.array_equal(a.extras["shared_edges"], c.extras["shared_edges"])
    with pytest.raises(BenchError, match="variable pairs"):
        ggm_synth.GGMSynth.Config(p=6, n_shared_edges=10, n_specific_edges=3)
    with pytest.raises(BenchError):
        ggm_synth.GGMSynth.Config(n_classes=1)


def test_ggm_class_mean_shift():
    cfg = ggm_synth.GGMSynth.Config(p=10, n_per_class=2000, n_test_per_class=10, class_mean_shift=2.0)
    train, _ = ggm_synth.GGMSynth(cfg).build()
    means = train.extras["class_means"]
    np.testing.assert_allclose(np.linalg.norm(means, axis=1), 2.0)
    x, y = _full(train), train.labels.numpy()
    for k in range(cfg.n_classes):
        assert np.abs(x[y == k].mean(0) - means[k]).max() < 0.15
