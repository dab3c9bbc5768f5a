"""Representation quality: k-means clustering scores and linear / MLP probes (docs/methods.md §9.4-§9.5).

Embeddings may be numpy arrays or torch tensors ([N, D]); labels are 1-D. Non-finite embeddings are refused with a
ValueError rather than silently producing a meaningless score.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bench.eval.clustering import cluster_scores

__all__ = ["as_embeddings", "as_labels", "kmeans_scores", "probe_accuracy"]

PROBE_KINDS = ("linear", "mlp")


def as_embeddings(Z: Any, name: str = "Z") -> np.ndarray:
    """Return Z as a finite float64 array [N, D] (a 1-D input is read as N samples of dimension 1).

    Raises ValueError("... embeddings contain NaN/inf") for non-finite values.
    """
    if hasattr(Z, "detach"):  # torch tensor
        Z = Z.detach().cpu().double().numpy()
    arr = np.asarray(Z, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, D]; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        n_bad = int((~np.isfinite(arr).all(axis=1)).sum())
        raise ValueError(f"{name}: embeddings contain NaN/inf ({n_bad} of {arr.shape[0]} rows)")
    return arr


def as_labels(y: Any, n: int, name: str = "y") -> np.ndarray:
    """Return y as a 1-D array of length n."""
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    arr = np.asarray(y).reshape(-1)
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} labels but the embeddings have {n} rows")
    return arr


def kmeans_scores(Z: Any, y: Any, n_clusters: int | None = None, seed: int = 0, n_init: int = 10,
                  Z_fit: Any = None) -> dict[str, float]:
    """k-means clusters of Z, scored against y with :func:`bench.eval.clustering.cluster_scores`.

    K defaults to the number of distinct labels in y. sklearn ``KMeans(n_init=n_init, random_state=seed)``,
    fitted on Z itself, or on ``Z_fit`` when given (e.g. training-set representations) and then applied to Z
    (each row to its nearest centroid).
    Z is used **as given** (no standardisation): the geometry of the representation is what is being measured,
    and rescaling dimensions would change it. Callers that want standardised or L2-normalised features should
    transform Z before calling.

    Returns {"acc", "nmi", "ari"}.
    """
    Z = as_embeddings(Z, "Z")
    y = as_labels(y, Z.shape[0], "y")
    fit = Z if Z_fit is None else as_embeddings(Z_fit, "Z_fit")
    if fit.shape[1] != Z.shape[1]:
        raise ValueError(f"Z_fit and Z differ in dimension: {fit.shape[1]} vs {Z.shape[1]}")
    k = len(np.unique(y)) if n_clusters is None else int(n_clusters)
    if k < 1:
        raise ValueError(f"n_clusters must be >= 1; got {k}")
    if int(n_init) < 1:
        raise ValueError(f"n_init must be >= 1; got {n_init}")
    if fit.shape[0] < k:
        raise ValueError(f"k-means with {k} clusters needs at least {k} samples; got {fit.shape[0]}")
    km = KMeans(n_clusters=k, n_init=int(n_init), random_state=seed).fit(fit)
    return cluster_scores(y, km.labels_ if Z_fit is None else km.predict(Z))


def probe_accuracy(
    Z_train: Any,
    y_train: Any,
    Z_test: Any,
    y_test: Any,
    kind: str = "linear",
    seed: int = 0,
    max_train: int | None = None,
    scaler: bool = True,
    replace: bool = False,
) -> float:
    """Test accuracy of a classifier trained on frozen embeddings.

    kind="linear": StandardScaler + LogisticRegression(max_iter=1000).
    kind="mlp": StandardScaler + MLPClassifier(hidden_layer_sizes=(128,), max_iter=300, random_state=seed,
    early_stopping=False).
    ``scaler=False`` drops the StandardScaler (MoPoE's protocol fits the classifier on the raw latent means).
    ``max_train``: if set and smaller than the training set, train on that many samples drawn without replacement
    by ``numpy.random.default_rng(seed)``. ``replace=True`` instead always draws ``max_train`` indices uniformly
    with replacement, as MoPoE does (``np.random.randint(n, size=500)``), whatever the training set's size.

    The iteration budgets are part of the protocol, so sklearn's ConvergenceWarning is silenced inside the fit.
    Test classes never seen in training simply count as errors.

    Raises ValueError for an unknown kind, non-finite embeddings, or fewer than two classes in the (subsampled)
    training labels.
    """
    if kind not in PROBE_KINDS:
        raise ValueError(f"unknown probe kind {kind!r}; valid kinds: {', '.join(PROBE_KINDS)}")
    Z_train = as_embeddings(Z_train, "Z_train")
    Z_test = as_embeddings(Z_test, "Z_test")
    y_train = as_labels(y_train, Z_train.shape[0], "y_train")
    y_test = as_labels(y_test, Z_test.shape[0], "y_test")
    if Z_train.shape[1] != Z_test.shape[1]:
        raise ValueError(f"train and test embeddings differ in dimension: {Z_train.shape[1]} vs {Z_test.shape[1]}")
    if Z_test.shape[0] == 0:
        raise ValueError("probe_accuracy needs at least one test sample")
    if max_train is not None:
        if max_train < 1:
            raise ValueError(f"max_train must be >= 1; got {max_train}")
        if Z_train.shape[0] == 0:
            raise ValueError("probe_accuracy needs at least one training sample")
        if replace:
            idx = np.random.default_rng(seed).integers(0, Z_train.shape[0], size=max_train)
            Z_train, y_train = Z_train[idx], y_train[idx]
        elif max_train < Z_train.shape[0]:
            idx = np.random.default_rng(seed).choice(Z_train.shape[0], size=max_train, replace=False)
            Z_train, y_train = Z_train[idx], y_train[idx]
    elif replace:
        raise ValueError("replace=True needs max_train (how many samples to draw)")
    classes = np.unique(y_train)
    if len(classes) < 2:
        raise ValueError(
            f"probe needs at least two classes in its training labels; got {len(classes)} "
            f"({classes.tolist()!r}) among {len(y_train)} training samples"
        )
    if kind == "linear":
        clf = LogisticRegression(max_iter=1000)
    else:
        clf = MLPClassifier(hidden_layer_sizes=(128,), max_iter=300, random_state=seed, early_stopping=False)
    model = make_pipeline(StandardScaler(), clf) if scaler else clf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        model.fit(Z_train, y_train)
    return float(np.mean(model.predict(Z_test) == y_test))


def split_half_probe(Z: Any, y: Any, seed: int = 0) -> float:
    """Linear-probe accuracy within one labelled set: fit on one stratified half, score the other, both ways.

    The per-epoch validation metric: it needs no training embeddings, so it costs one pass over the small
    validation split, and unlike the validation loss it is comparable across hyperparameters (a smaller beta
    lowers the loss without improving the representation)."""
    from bench.data.splits import stratified_split

    Z = as_embeddings(Z, "Z")
    y = as_labels(y, Z.shape[0], "y")
    a, b = stratified_split(y, 0.5, seed)
    return 0.5 * (probe_accuracy(Z[a], y[a], Z[b], y[b], "linear", seed) + probe_accuracy(Z[b], y[b], Z[a], y[a], "linear", seed))
