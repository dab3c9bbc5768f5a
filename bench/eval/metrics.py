"""The registered representation metrics (METHODS.md §9). Each is a pure function of an :class:`EvalContext`
returning ``{target: value}``; importing this module registers them."""

from __future__ import annotations

import numpy as np

from bench.eval import NotApplicable
from bench.eval.context import EvalContext
from bench.eval.representation import kmeans_scores, probe_accuracy
from bench.eval.retrieval import class_precision_at_k, retrieval_recall
from bench.registry import register_metric


def _probe(ctx: EvalContext, kind: str) -> dict[str, float]:
    z_train, y_train = ctx.joint("train"), ctx.labels("train")
    keep = np.isfinite(z_train).all(1)  # a sample whose joint could not be formed is not a training point
    acc = probe_accuracy(z_train[keep], y_train[keep], ctx.joint("test"), ctx.labels("test"), kind=kind,
                         seed=ctx.seed, max_train=ctx.cfg.get("probe_max_train"))
    return {"joint": acc}


@register_metric("probe_linear", higher_is_better=True,
                 description="test accuracy of a logistic-regression probe on the frozen joint representation")
def probe_linear(ctx: EvalContext) -> dict[str, float]:
    return _probe(ctx, "linear")


@register_metric("probe_mlp", higher_is_better=True,
                 description="test accuracy of a one-hidden-layer MLP probe on the frozen joint representation")
def probe_mlp(ctx: EvalContext) -> dict[str, float]:
    return _probe(ctx, "mlp")


def _kmeans(ctx: EvalContext) -> dict[str, float]:
    return ctx.memo("kmeans", lambda: kmeans_scores(ctx.joint("test"), ctx.labels("test"),
                                                    n_clusters=ctx.spec.n_classes, seed=ctx.seed))


@register_metric("kmeans_acc", higher_is_better=True,
                 description="k-means (K = classes) on the joint test representation: Hungarian accuracy")
def kmeans_acc(ctx: EvalContext) -> dict[str, float]:
    return {"joint": _kmeans(ctx)["acc"]}


@register_metric("kmeans_nmi", higher_is_better=True,
                 description="k-means (K = classes) on the joint test representation: normalised mutual information")
def kmeans_nmi(ctx: EvalContext) -> dict[str, float]:
    return {"joint": _kmeans(ctx)["nmi"]}


@register_metric("kmeans_ari", higher_is_better=True,
                 description="k-means (K = classes) on the joint test representation: adjusted Rand index")
def kmeans_ari(ctx: EvalContext) -> dict[str, float]:
    return {"joint": _kmeans(ctx)["ari"]}


def _retrieval(ctx: EvalContext) -> dict[str, dict[int, float]]:
    def compute():
        per = ctx.modality_embeddings("test")
        return {f"{a}->{b}": retrieval_recall(per[a], per[b], ks=(1, 5)) for a in per for b in per if a != b}

    return ctx.memo("retrieval", compute)


@register_metric("retrieval_r1", higher_is_better=True,
                 description="cross-modal retrieval on the test pairs: recall@1 of the paired item (cosine)")
def retrieval_r1(ctx: EvalContext) -> dict[str, float]:
    return {pair: r[1] for pair, r in _retrieval(ctx).items()}


@register_metric("retrieval_r5", higher_is_better=True,
                 description="cross-modal retrieval on the test pairs: recall@5 of the paired item (cosine)")
def retrieval_r5(ctx: EvalContext) -> dict[str, float]:
    return {pair: r[5] for pair, r in _retrieval(ctx).items()}


@register_metric("retrieval_class_p10", higher_is_better=True,
                 description="cross-modal retrieval: fraction of the 10 nearest items of the other modality that "
                             "share the query's class (the meaningful retrieval score under class-level pairing)")
def retrieval_class_p10(ctx: EvalContext) -> dict[str, float]:
    per, y = ctx.modality_embeddings("test"), ctx.labels("test")
    return {f"{a}->{b}": class_precision_at_k(per[a], per[b], y, y, 10) for a in per for b in per if a != b}


__all__ = ["NotApplicable", "EvalContext"]
