"""Cross-modal retrieval by cosine similarity.

Ties are broken **pessimistically**: a key that scores as high as the correct key is ranked ahead of it.
So a degenerate embedding (e.g. all rows equal) gets the lowest possible recall, never a lucky one. Rows of zero
norm have cosine similarity 0 with everything. "As high" allows TIE_TOL: a matrix product does not give identical
key rows bit-identical scores (BLAS takes other code paths at block edges; measured up to 5e-13 apart for 32-d
rows), and without the tolerance a copy would sometimes fall behind its twin by rounding alone.

Duplicate keys: when a test split holds several copies of one source item (instance pairing with a multiplier
puts each digit in several tuples), a query cannot tell its partner from the partner's copies, and under the
pessimistic rule the copies alone would push every rank past 0. ``key_groups`` names each key's source item; keys of
the correct key's group count as correct (they are left out of the ranking), while keys of every other group still
rank ahead on ties. The groups come from the data (``<modality>_index`` extras), never from embedding equality,
which would reward a collapsed embedding.

Similarities are computed in float64, in blocks of queries, so memory stays O(block * N).
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np

from bench.eval.representation import as_embeddings, as_labels

__all__ = ["class_precision_at_k", "retrieval_recall"]

_BLOCK = 1024
TIE_TOL = 1e-9   # cosines this close to the correct key's tie: above rounding (5e-13), below float32 steps (1e-7)


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


def _key_groups(groups: Any, n: int) -> np.ndarray:
    if hasattr(groups, "detach"):
        groups = groups.detach().cpu().numpy()
    arr = np.asarray(groups)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"key_groups must be an integer array [N={n}] of key identities; got "
                         f"{arr.dtype} {arr.shape}")
    return arr


def retrieval_recall(Q: Any, K: Any, ks: Iterable[int] = (1, 5), key_groups: Any = None) -> dict[int, float]:
    """Recall@k for paired retrieval: the correct key of query i is key i.

    Q, K: [N, D] (the same N). The rank of query i's correct key is the number of keys j with
    cos(q_i, k_j) >= cos(q_i, k_i), j != i (pessimistic ties); recall@k = fraction of queries with rank < k.
    ``key_groups`` (int [N], optional): the source item of each key; keys j with key_groups[j] == key_groups[i]
    are also correct for query i, so only keys of other groups count towards its rank.
    k larger than N gives 1.0. Returns {k: recall}.
    """
    Q, K = _pair(Q, K)
    if Q.shape[0] != K.shape[0]:
        raise ValueError(f"paired retrieval needs as many keys as queries: {Q.shape[0]} vs {K.shape[0]}")
    ks = [int(k) for k in ks]
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be >= 1; got {ks}")
    groups = None if key_groups is None else _key_groups(key_groups, K.shape[0])
    ranks = np.empty(Q.shape[0], dtype=np.int64)
    for start, sim in _similarity_blocks(Q, K):
        rows = np.arange(sim.shape[0])
        ahead = sim >= sim[rows, start + rows][:, None] - TIE_TOL
        if groups is None:
            # >= counts the correct key itself once; subtract it.
            ranks[start : start + sim.shape[0]] = ahead.sum(axis=1) - 1
        else:
            own = groups[start : start + sim.shape[0], None] == groups[None, :]   # includes the correct key
            ranks[start : start + sim.shape[0]] = (ahead & ~own).sum(axis=1)
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
