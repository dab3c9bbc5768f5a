"""Structure metrics: the learned graphs against a benchmark's known graphs (``ggm-synth``; docs/methods.md §3).

A method that learns graphs over the benchmark's own variables exposes ``structure() -> {"theta0": [p, p],
"delta": [K, p, p], "nodes": "inputs"}`` (CM-GLasso: the shared precision Theta_0 and the class-specific Delta_k,
with variables in modality order, i.e. ``torch.cat`` of the modalities as ggm-synth's ``precision`` indexes them).
A benchmark that knows its graphs puts ``shared_edges`` [p, p] and ``specific_edges`` [K, p, p] (bool) in its
``extras``.

* **shared** edges: the estimated ones are supp(Theta_0) off the diagonal.
* **specific** edges of class k: supp(Delta_k) minus supp(Theta_0): the edges class k has beyond the shared graph.
  A Delta_k entry on an edge Theta_0 already has is a class-specific *value* of a shared edge, not a new edge; the
  truth's specific edges are by construction pairs that are not shared. Counts are pooled over the K classes.

Each pair (i < j) counts once. Precision, recall and F1 are 0/0-safe: with no estimated edge precision is 1 when
there is no true edge either and 0 otherwise; F1 is 0 when precision + recall = 0. Importing this module registers
``edge_precision``, ``edge_recall`` and ``edge_f1``, each with targets ``shared`` and ``specific``.
"""

from __future__ import annotations

import numpy as np

from bench.eval import NotApplicable
from bench.eval.context import EvalContext
from bench.registry import register_metric

__all__ = ["edge_counts", "edge_scores", "estimated_edges", "structure_scores"]


def _upper(adj: np.ndarray) -> np.ndarray:
    p = adj.shape[-1]
    iu = np.triu_indices(p, 1)
    return np.asarray(adj, dtype=bool)[..., iu[0], iu[1]]


def edge_counts(estimated: np.ndarray, true: np.ndarray) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of boolean adjacency matrices [..., p, p]."""
    e, t = _upper(estimated), _upper(true)
    if e.shape != t.shape:
        raise ValueError(f"edge_counts: estimated graph {estimated.shape} and true graph {true.shape} differ in shape")
    return int((e & t).sum()), int((e & ~t).sum()), int((~e & t).sum())


def edge_scores(estimated: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """{"precision", "recall", "f1"} of the estimated edges (upper triangle, pooled over leading dimensions)."""
    tp, fp, fn = edge_counts(estimated, true)
    precision = tp / (tp + fp) if tp + fp else float(tp + fn == 0)
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def estimated_edges(theta0: np.ndarray, delta: np.ndarray, atol: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(shared [p, p], specific [K, p, p]) boolean graphs of a (Theta_0, Delta) fit, as the module doc defines."""
    off = ~np.eye(theta0.shape[-1], dtype=bool)
    shared = (np.abs(theta0) > atol) & off
    specific = (np.abs(delta) > atol) & off & ~shared
    return shared, specific


def structure_scores(theta0, delta, true_shared, true_specific) -> dict[str, dict[str, float]]:
    shared, specific = estimated_edges(np.asarray(theta0), np.asarray(delta))
    if specific.shape != np.shape(true_specific):
        raise ValueError(f"structure_scores: {specific.shape[0]} estimated classes of {specific.shape[1]} variables, "
                         f"truth has shape {np.shape(true_specific)}")
    return {"shared": edge_scores(shared, true_shared), "specific": edge_scores(specific, true_specific)}


def _scores(ctx: EvalContext) -> dict[str, dict[str, float]]:
    def compute():
        extras = ctx.test.extras
        if "shared_edges" not in extras or "specific_edges" not in extras:
            raise NotApplicable("the benchmark has no known graphs (extras shared_edges / specific_edges)")
        get = getattr(ctx.method, "structure", None)
        graphs = get() if callable(get) else None
        if not graphs:
            raise NotApplicable("the method learns no graph (no structure(), or it was not fitted)")
        if graphs.get("nodes") != "inputs":
            raise NotApplicable("the method's graph is over learned nodes, not the benchmark's variables")
        true_shared, true_specific = np.asarray(extras["shared_edges"]), np.asarray(extras["specific_edges"])
        if np.shape(graphs["delta"]) != true_specific.shape:
            raise NotApplicable(f"the method's graphs have shape {np.shape(graphs['delta'])}, the benchmark's "
                                f"{true_specific.shape}")
        return structure_scores(graphs["theta0"], graphs["delta"], true_shared, true_specific)

    return ctx.memo("structure", compute)


def _register(stat: str, what: str) -> None:
    @register_metric(f"edge_{stat}", higher_is_better=True, needs=("structure",),
                     description=f"{what} of the learned graph's edges against the benchmark's known graphs; "
                                 "targets shared (supp Theta_0) and specific (supp Delta_k minus supp Theta_0, "
                                 "pooled over classes)")
    def metric(ctx: EvalContext) -> dict[str, float]:
        return {target: scores[stat] for target, scores in _scores(ctx).items()}


for _stat, _what in (("precision", "precision"), ("recall", "recall"), ("f1", "F1")):
    _register(_stat, _what)
