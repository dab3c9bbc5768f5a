"""``bc-3view`` and ``bc-report``: the Wisconsin diagnostic breast cancer data as a small clinical multi-view set.

scikit-learn's ``load_breast_cancer`` (569 samples, shipped inside scikit-learn) holds 10 measurements of the cell
nuclei of a fine-needle aspirate (radius, texture, perimeter, area, smoothness, compactness, concavity, concave
points, symmetry, fractal dimension), each summarised three ways. Those three summaries are the three vector views
of ``bc-3view``, 10 features each: ``mean``, ``se`` (standard error) and ``worst`` (mean of the three largest).
Labels are scikit-learn's: 0 = malignant (212), 1 = benign (357).

The split is stratified 70/30 (398 / 171), a pure function of ``Config.seed``; each view is standardised with the
training split's mean and standard deviation only.

``bc-report`` adds a ``report`` text modality: a short templated report generated *only* from the tertiles (cut
points computed on the training split) of four measurements of the ``mean`` view — radius, texture, smoothness,
concavity — e.g. ``"findings radius high , texture medium , smoothness low , concavity low ."``. It never sees the
label; it is a lossy (3^4 = 81 patterns) function of another modality. With ``wording_variation`` (default) each
report draws, from a generator seeded by ``Config.seed`` and the sample's position only, an optional opening, a
clause order, a synonym per measurement and per level, and a word order per clause; with it off every report is the
canonical text of its tertile pattern. Word-level tokens (``bench.data.text.Vocabulary`` built on the training
reports), length 24.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from bench.data.contracts import (PREDICTION_METRICS, REPRESENTATION_METRICS, Benchmark, BenchmarkSpec, Modality,
                                  MultimodalDataset)
from bench.data.embedded.mfeat6 import standardize_on_train
from bench.data.splits import split_seed, stratified_split
from bench.data.text import Vocabulary, words
from bench.registry import register_benchmark

MEASUREMENTS: tuple[str, ...] = (
    "radius", "texture", "perimeter", "area", "smoothness",
    "compactness", "concavity", "concave points", "symmetry", "fractal dimension",
)
VIEWS: tuple[str, ...] = ("mean", "se", "worst")  # columns 0-9, 10-19, 20-29 of load_breast_cancer
TEST_FRACTION = 0.3
N_CLASSES = 2
TEXT_LEN = 24

# The report: tertile level (0 low, 1 medium, 2 high) of these measurements of the ``mean`` view.
REPORT_MEASUREMENTS: tuple[str, ...] = ("radius", "texture", "smoothness", "concavity")
# First entry of each list = the canonical wording (used when wording_variation is off).
MEASUREMENT_WORDS: dict[str, tuple[str, ...]] = {
    "radius": ("radius", "size", "nuclear radius"),
    "texture": ("texture", "grey level variation", "chromatin texture"),
    "smoothness": ("smoothness", "contour smoothness", "border regularity"),
    "concavity": ("concavity", "contour concavity", "indentation"),
}
LEVEL_WORDS: tuple[tuple[str, ...], ...] = (
    ("low", "small", "reduced", "mild"),
    ("medium", "moderate", "intermediate", "average"),
    ("high", "large", "elevated", "marked"),
)
OPENINGS: tuple[str, ...] = ("findings", "", "report", "cytology shows", "aspirate shows")



@functools.lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    ds = load_breast_cancer()
    names = [str(n) for n in ds.feature_names]
    expected = [f"mean {m}" for m in MEASUREMENTS] + [f"{m} error" for m in MEASUREMENTS] + [f"worst {m}" for m in MEASUREMENTS]
    if names != expected:  # the view split relies on scikit-learn's column order
        raise RuntimeError(f"load_breast_cancer feature order changed: {names}")
    return np.asarray(ds.data, dtype=np.float64), np.asarray(ds.target, dtype=np.int64)


@functools.lru_cache(maxsize=8)
def _split(seed: int) -> dict:
    """Raw split arrays shared by both benchmarks: indices, labels, raw and standardised views, statistics."""
    x, y = _raw()
    tr, te = stratified_split(y, TEST_FRACTION, split_seed("bc-3view", "split", seed))
    out = {"train_index": tr, "test_index": te, "y_train": y[tr], "y_test": y[te],
           "raw_train": x[tr], "raw_test": x[te], "train": {}, "test": {}, "mean": {}, "std": {}}
    for j, view in enumerate(VIEWS):
        cols = slice(10 * j, 10 * (j + 1))
        a, b, mean, std = standardize_on_train(x[tr, cols], x[te, cols])
        out["train"][view], out["test"][view] = a, b
        out["mean"][view], out["std"][view] = mean, std
    return out


def _view_modalities() -> tuple[Modality, ...]:
    return tuple(Modality(v, "vector", (10,), likelihood="gaussian") for v in VIEWS)


def _datasets(s: dict, extra_modalities=(), extra_train=None, extra_test=None, extras_train=None, extras_test=None):
    mods = _view_modalities() + tuple(extra_modalities)
    common = {"feature_names": MEASUREMENTS, "feature_mean": dict(s["mean"]), "feature_std": dict(s["std"])}
    dtr = {v: torch.from_numpy(s["train"][v]) for v in VIEWS} | dict(extra_train or {})
    dte = {v: torch.from_numpy(s["test"][v]) for v in VIEWS} | dict(extra_test or {})
    train = MultimodalDataset.complete(mods, dtr, s["y_train"], {**common, "source_index": torch.from_numpy(s["train_index"]),
                                                                 **(extras_train or {})})
    test = MultimodalDataset.complete(mods, dte, s["y_test"], {**common, "source_index": torch.from_numpy(s["test_index"]),
                                                               **(extras_test or {})})
    return train, test


_SPEC_COMMON = dict(
    n_classes=N_CLASSES,
    tasks=("representation", "retrieval"),
    default_metrics=REPRESENTATION_METRICS + PREDICTION_METRICS + ("retrieval_r1", "retrieval_r5"),
)


@register_benchmark("bc-3view")
class BreastCancer3View(Benchmark):
    """Three 10-d views (mean / se / worst) of 569 breast-cancer aspirates; 398 / 171 split, train-standardised.

    ``extras`` of both splits: ``feature_names`` (the 10 measurements, in column order), ``feature_mean`` /
    ``feature_std`` (dicts view -> float64 [10], training statistics) and ``source_index`` (row in the original 569).
    """

    version = 1

    @dataclass(frozen=True)
    class Config:
        seed: int = 0

    def spec(self) -> BenchmarkSpec:
        return BenchmarkSpec(name="bc-3view", modalities=_view_modalities(), **_SPEC_COMMON)

    def build(self) -> tuple[MultimodalDataset, MultimodalDataset]:
        return _build_3view(int(self.cfg.seed))


@functools.lru_cache(maxsize=8)
def _build_3view(seed: int) -> tuple[MultimodalDataset, MultimodalDataset]:
    return _datasets(_split(seed))


def tertile_codes(raw: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Levels 0/1/2 (x <= q1, q1 < x <= q2, x > q2) of the report measurements; ``raw`` is [N, 30] unstandardised."""
    cols = [MEASUREMENTS.index(m) for m in REPORT_MEASUREMENTS]  # columns of the ``mean`` view
    x = raw[:, cols]
    return (x > thresholds[:, 0]).astype(np.int64) + (x > thresholds[:, 1]).astype(np.int64)


def report_text(codes: np.ndarray, rng: np.random.Generator | None) -> str:
    """The report of one tertile pattern; ``rng=None`` gives the canonical wording (no randomness at all)."""
    clauses = []
    for m, level in zip(REPORT_MEASUREMENTS, codes):
        if rng is None:
            clauses.append(f"{MEASUREMENT_WORDS[m][0]} {LEVEL_WORDS[level][0]}")
            continue
        name = MEASUREMENT_WORDS[m][rng.integers(len(MEASUREMENT_WORDS[m]))]
        lvl = LEVEL_WORDS[level][rng.integers(len(LEVEL_WORDS[level]))]
        clauses.append(f"{name} {lvl}" if rng.random() < 0.5 else f"{lvl} {name}")
    opening = OPENINGS[0]
    if rng is not None:
        clauses = [clauses[i] for i in rng.permutation(len(clauses))]
        opening = OPENINGS[rng.integers(len(OPENINGS))]
    return (f"{opening} " if opening else "") + " , ".join(clauses) + " ."


def _reports(codes: np.ndarray, rng: np.random.Generator | None) -> list[str]:
    texts = [report_text(c, rng) for c in codes]
    longest = max(len(words(t)) for t in texts)
    assert longest < TEXT_LEN, f"a report has {longest} tokens, more than {TEXT_LEN - 1}"
    return texts


@functools.lru_cache(maxsize=8)
def _build_report(seed: int, wording_variation: bool) -> tuple[MultimodalDataset, MultimodalDataset]:
    s = _split(seed)
    cols = [MEASUREMENTS.index(m) for m in REPORT_MEASUREMENTS]
    thresholds = np.quantile(s["raw_train"][:, cols], [1 / 3, 2 / 3], axis=0).T  # [4, 2], training split only
    codes_tr, codes_te = tertile_codes(s["raw_train"], thresholds), tertile_codes(s["raw_test"], thresholds)
    if wording_variation:
        g_tr, g_te = (np.random.default_rng(split_seed("bc-report", "wording", seed, part)) for part in ("train", "test"))
    else:
        g_tr = g_te = None
    texts_tr, texts_te = _reports(codes_tr, g_tr), _reports(codes_te, g_te)
    vocab = Vocabulary.build(texts_tr)
    report = Modality("report", "text", (TEXT_LEN,), vocab_size=len(vocab), vocab=vocab.itos)
    extras = {"tertile_thresholds": thresholds, "report_measurements": REPORT_MEASUREMENTS, "vocab": vocab}
    return _datasets(
        s, (report,),
        {"report": vocab.encode(texts_tr, max_len=TEXT_LEN)},
        {"report": vocab.encode(texts_te, max_len=TEXT_LEN)},
        {**extras, "tertiles": torch.from_numpy(codes_tr)},
        {**extras, "tertiles": torch.from_numpy(codes_te)},
    )


@register_benchmark("bc-report")
class BreastCancerReport(Benchmark):
    """``bc-3view`` plus a ``report`` text modality generated from feature tertiles only (never from the label).

    Extra ``extras`` (both splits): ``tertiles`` (int64 [N, 4] levels of :data:`REPORT_MEASUREMENTS`),
    ``tertile_thresholds`` (float64 [4, 2] training cut points), ``report_measurements`` and ``vocab`` (the
    :class:`~bench.data.text.Vocabulary`).
    """

    version = 1

    @dataclass(frozen=True)
    class Config:
        seed: int = 0
        wording_variation: bool = True

    def _built(self) -> tuple[MultimodalDataset, MultimodalDataset]:
        return _build_report(int(self.cfg.seed), bool(self.cfg.wording_variation))

    def spec(self) -> BenchmarkSpec:
        # the vocabulary size depends on the training reports, so the spec needs the (memoised, ~20 ms) build
        train, _ = self._built()
        return BenchmarkSpec(name="bc-report", modalities=train.modalities, **_SPEC_COMMON)

    def build(self) -> tuple[MultimodalDataset, MultimodalDataset]:
        return self._built()
