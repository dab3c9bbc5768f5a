"""Clustering scores: Hungarian-matched accuracy, NMI and ARI (docs/methods.md §9.5)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

__all__ = ["cluster_scores", "contingency_table", "hungarian_accuracy"]


def _labels(y: Any, name: str) -> np.ndarray:
    if hasattr(y, "detach"):  # torch tensor
        y = y.detach().cpu().numpy()
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:  # a column vector
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got shape {arr.shape}")
    return arr


def contingency_table(y_true: Any, y_pred: Any) -> np.ndarray:
    """Counts [n_clusters, n_classes]: entry (c, k) = #samples with predicted cluster c and true class k.

    Rows and columns follow the sorted unique values of ``y_pred`` and ``y_true``.
    """
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    _, true_idx = np.unique(y_true, return_inverse=True)
    _, pred_idx = np.unique(y_pred, return_inverse=True)
    table = np.zeros((pred_idx.max(initial=-1) + 1, true_idx.max(initial=-1) + 1), dtype=np.int64)
    np.add.at(table, (pred_idx, true_idx), 1)
    return table


def hungarian_accuracy(y_true: Any, y_pred: Any) -> float:
    """max over one-to-one cluster->class maps of the fraction of samples mapped to their true class.

    The table may be rectangular: with more clusters than classes, the clusters left unmatched count as errors
    (and with more classes than clusters, so do the classes left unmatched).
    """
    table = contingency_table(y_true, y_pred)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / table.sum())


def cluster_scores(y_true: Any, y_pred: Any) -> dict[str, float]:
    """{"acc", "nmi", "ari"} for predicted cluster ids against true class labels.

    acc: Hungarian-matched accuracy (:func:`hungarian_accuracy`); nmi: sklearn
    ``normalized_mutual_info_score`` (arithmetic normalisation); ari: sklearn ``adjusted_rand_score``.
    Labels may be any hashable values (ints, strings); the numbers of clusters and classes may differ.
    """
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} vs {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("cluster_scores needs at least one sample")
    return {
        "acc": hungarian_accuracy(y_true, y_pred),
        "nmi": float(normalized_mutual_info_score(y_true, y_pred)),
        "ari": float(adjusted_rand_score(y_true, y_pred)),
    }
