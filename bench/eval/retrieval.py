"""Cross-modal retrieval by cosine similarity.

Ties are broken **pessimistically**: a key that scores exactly as high as the correct key is ranked ahead of it.
So a degenerate embedding (e.g. all rows equal) gets the lowest possible recall, never a lucky one. Rows of zero
norm have cosine similarity 0 with everything.

Similarities are computed in float64, in blocks of queries, so memory stays O(block * N).
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np

from bench.eval.representation import as_embeddings, as_labels

__all__ = ["class_precision_at_k", "retrieval_recall"]

_BLOCK = 1024


def _normalise(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def _similarity_blocks(Q: np.ndarray, K: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first query index, cosine similarities [block, N_keys])."""
    Qn, Kn = _normalise(Q), _normalise(K)
    for start in range(0, Qn.shape[0], _BLOCK):
        yield start, Qn[start : start + _BLOCK] @ Kn.T


def _pair(Q: Any, K: Any) -> tuple[np.ndarray, np.ndarray]:
    Q, K = as_embeddings(Q, "Q"), as_embeddings(K, "K")
    if Q.shape[1] != K.shape[1]:
        raise ValueError(f"queries and keys differ in dimension: {Q.shape[1]} vs {K.shape[1]}")
    if Q.shape[0] == 0 or K.shape[0] == 0:
        raise ValueError("retrieval needs at least one query and one key")
    return Q, K


def retrieval_recall(Q: Any, K: Any, ks: Iterable[int] = (1, 5)) -> dict[int, float]:
    """Recall@k for paired retrieval: the correct key of query i is key i.

    Q, K: [N, D] (the same N). The rank of query i's correct key is the number of keys j with
    cos(q_i, k_j) >= cos(q_i, k_i), j != i (pessimistic ties); recall@k = fraction of queries with rank < k.
    k larger than N gives 1.0. Returns {k: recall}.
    """
    Q, K = _pair(Q, K)
    if Q.shape[0] != K.shape[0]:
        raise ValueError(f"paired retrieval needs as many keys as queries: {Q.shape[0]} vs {K.shape[0]}")
    ks = [int(k) for k in ks]
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be >= 1; got {ks}")
    ranks = np.empty(Q.shape[0], dtype=np.int64)
    for start, sim in _similarity_blocks(Q, K):
        rows = np.arange(sim.shape[0])
        correct = sim[rows, start + rows][:, None]
        # >= counts the correct key itself once; subtract it.
        ranks[start : start + sim.shape[0]] = (sim >= correct).sum(axis=1) - 1
    return {k: float(np.mean(ranks < k)) for k in ks}


def class_precision_at_k(
    Q: Any, K: Any, yq: Any, yk: Any, k: int, exclude_self: bool = False
) -> float:
    """Mean over queries of the fraction of the top-k keys (by cosine) sharing the query's label.

    Ties among keys are broken by key index (stable sort). ``exclude_self=True`` (for Q and K the same set,
    paired by index) drops key i from query i's candidates. k is capped at the number of candidates.
    """
    Q, K = _pair(Q, K)
    yq = as_labels(yq, Q.shape[0], "yq")
    yk = as_labels(yk, K.shape[0], "yk")
    if exclude_self and Q.shape[0] != K.shape[0]:
        raise ValueError("exclude_self needs queries and keys paired by index (the same N)")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    k = min(k, K.shape[0] - int(exclude_self))
    if k < 1:
        raise ValueError("no candidate keys left after excluding self")
    precisions = np.empty(Q.shape[0], dtype=np.float64)
    for start, sim in _similarity_blocks(Q, K):
        rows = np.arange(sim.shape[0])
        if exclude_self:
            sim[rows, start + rows] = -np.inf
        top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        precisions[start : start + sim.shape[0]] = (yk[top] == yq[start : start + sim.shape[0], None]).mean(axis=1)
    return float(precisions.mean())
