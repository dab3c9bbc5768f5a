"""Chance levels: what each metric scores when the representation (or the generator) carries no information.

:data:`CHANCE` maps a metric name to ``fn(ctx, targets) -> {target: chance value}``, computed from the labels of
the run's own splits (so it moves with the split, the seed and the observation ratio exactly as the metric does).
:func:`bench.eval.evaluate.evaluate` records one row per (metric, target) with ``split = "chance"`` beside every
metric computed with status done; the report averages them per table row. Metrics without an entry (FID/KID,
the structure and segmentation metrics, figure data) have no chance level.

Definitions (docs/evaluation.md, "Chance levels and the untrained floor"):

* class accuracies (probes, the method's own classifier, coherence, k-means ACC): the test frequency of the
  majority training class, which is what a predictor that always answers that class scores (cross coherence: on
  the test samples it is scored on; k-means ACC: one cluster holding everything, Hungarian-matched, on the
  split k-means is scored on). Joint
  coherence (class agreement of unconditional samples) takes the same number as its reference: modalities
  whose classes are drawn independently from the class frequencies p agree with probability sum_c p_c^M, which
  is at most that;
* k-means NMI and ARI: 0 (ARI is adjusted for chance by construction; NMI of an assignment independent of the
  classes tends to 0);
* recall@k of paired retrieval: k / N_keys, the probability that the correct key lands in the first k places of
  a uniformly random ranking of N keys (1 for k >= N). Where the benchmark names the source item of each key
  (``<modality>_index`` extras: copies of one item), the copies of the correct key leave the ranking
  (bench.eval.retrieval), so query i's correct key competes with the c_i = N - g_i keys outside its group of g_i
  copies, and the chance level is the mean over queries of min(k, c_i + 1) / (c_i + 1);
* class precision@k of retrieval: sum over classes of (test class frequency)^2. Queries and keys are the test
  split, so a query of class c finds on average n_c / N same-class keys in any k places of a random ranking, and
  the mean over queries of n_c / N is sum_c (n_c / N)^2, exactly, for every k;
* the DCMEM poster's two analyses (off-diagonal / diagonal class distance, median unpaired / median paired
  distance): 1, the ratio of two distances that no structure tells apart (bench.eval.analyses).
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from bench.eval.context import EvalContext

__all__ = ["CHANCE", "chance_levels", "class_frequencies", "expected_recall", "majority_rate"]


def class_frequencies(y) -> np.ndarray:
    """Frequency of each class present in ``y`` (sorted by class id)."""
    _, counts = np.unique(np.asarray(y).ravel(), return_counts=True)
    return counts / counts.sum()


def majority_rate(y_train, y_test) -> float:
    """Test frequency of the most frequent training class (ties: the smallest class id, as np.argmax picks)."""
    classes, counts = np.unique(np.asarray(y_train).ravel(), return_counts=True)
    if not len(classes):
        raise ValueError("majority_rate needs at least one training label")
    y_test = np.asarray(y_test).ravel()
    if not len(y_test):
        raise ValueError("majority_rate needs at least one test label")
    return float(np.mean(y_test == classes[np.argmax(counts)]))


def _same(value: float) -> Callable[[EvalContext, Iterable[str]], dict[str, float]]:
    return lambda ctx, targets: {t: float(value) for t in targets}


def _majority(ctx: EvalContext, targets: Iterable[str]) -> dict[str, float]:
    rate = majority_rate(ctx.labels("train"), ctx.labels("test"))
    return {t: rate for t in targets}


def _kmeans_majority(ctx: EvalContext, targets: Iterable[str]) -> dict[str, float]:
    # the split k-means is scored on: the test set by default, the training set under MVP's protocol (eval=mvp)
    scored = ctx.cfg.get("kmeans_score") or "test"
    rate = majority_rate(ctx.labels("train"), ctx.labels(scored))
    return {t: rate for t in targets}


def _coherence_majority(ctx: EvalContext, targets: Iterable[str]) -> dict[str, float]:
    # the labels of the very test samples coherence is scored on (a seeded subset when the test split is large)
    from bench.eval.generative import _eval_set, _n_eval

    scored = _eval_set(ctx, _n_eval(ctx, "coherence_max_samples")).labels.numpy()
    rate = majority_rate(ctx.labels("train"), scored)
    return {t: rate for t in targets}


def expected_recall(k: int, n_keys: int, groups=None) -> float:
    """Recall@k of a uniformly random ranking of ``n_keys`` keys, the correct key of query i being key i and, with
    ``groups`` (the source item of each key), the other keys of its group left out of the ranking."""
    if n_keys < 1 or k < 1:
        raise ValueError(f"expected_recall needs n_keys >= 1 and k >= 1; got n_keys={n_keys}, k={k}")
    if groups is None:
        return min(k, n_keys) / n_keys
    _, inverse, counts = np.unique(np.asarray(groups).ravel(), return_inverse=True, return_counts=True)
    if len(inverse) != n_keys:
        raise ValueError(f"groups must name the group of each of the {n_keys} keys; got {len(inverse)}")
    candidates = n_keys - counts[inverse] + 1     # the correct key and every key outside its group
    return float(np.mean(np.minimum(k, candidates) / candidates))


def _recall_at(k: int) -> Callable[[EvalContext, Iterable[str]], dict[str, float]]:
    def chance(ctx: EvalContext, targets: Iterable[str]) -> dict[str, float]:
        from bench.eval.metrics import key_groups

        n_keys = len(ctx.labels("test"))
        # target "a->b": queries of a, keys of b, grouped by b's source items when the benchmark names them
        return {t: expected_recall(k, n_keys, key_groups(ctx, t.split("->", 1)[1]) if "->" in t else None)
                for t in targets}

    return chance


def _class_precision(ctx: EvalContext, targets: Iterable[str]) -> dict[str, float]:
    value = float((class_frequencies(ctx.labels("test")) ** 2).sum())
    return {t: value for t in targets}


CHANCE: dict[str, Callable[[EvalContext, Iterable[str]], dict[str, float]]] = {
    "probe_linear": _majority,
    "probe_mlp": _majority,
    "predict_acc": _majority,
    "kmeans_acc": _kmeans_majority,
    "coherence_cross": _coherence_majority,
    "coherence_joint": _majority,
    "kmeans_nmi": _same(0.0),
    "kmeans_ari": _same(0.0),
    "retrieval_r1": _recall_at(1),
    "retrieval_r5": _recall_at(5),
    "retrieval_class_p10": _class_precision,
    "modality_class_distance": _same(1.0),
    "paired_unpaired_w2": _same(1.0),
}


def chance_levels(ctx: EvalContext, metric: str, targets: Iterable[str]) -> dict[str, float]:
    """{target: chance value} for the targets a metric produced; {} for a metric without a chance level."""
    fn = CHANCE.get(metric)
    return fn(ctx, list(targets)) if fn is not None else {}
