"""The registered representation metrics (docs/methods.md §9). Each is a pure function of an :class:`EvalContext`
returning ``{target: value}``; importing this module registers them."""

from __future__ import annotations

import numpy as np

from bench.eval import NotApplicable
from bench.eval.context import EvalContext
from bench.eval.representation import kmeans_scores, probe_accuracy
from bench.eval.retrieval import class_precision_at_k, retrieval_recall
from bench.registry import register_metric


# The knobs of the evaluation protocol (bench/train/config.py EvalConfig, EVAL_PROTOCOLS); a context built
# without them (tests, older specs) gets the harness default.
def _knob(ctx: EvalContext, name: str, default):
    value = ctx.cfg.get(name)
    return default if value is None else value


def _finite_joint(ctx: EvalContext, split: str) -> tuple[np.ndarray, np.ndarray]:
    z, y = ctx.joint(split), ctx.labels(split)
    keep = np.isfinite(z).all(1)  # a sample whose joint could not be formed (nothing observed) is left out
    return z[keep], y[keep]


def _probe(ctx: EvalContext, kind: str) -> dict[str, float]:
    z_train, y_train = _finite_joint(ctx, "train")
    acc = probe_accuracy(z_train, y_train, ctx.joint("test"), ctx.labels("test"), kind=kind,
                         seed=ctx.seed, max_train=ctx.cfg.get("probe_max_train"),
                         scaler=bool(_knob(ctx, "probe_scaler", True)),
                         replace=bool(_knob(ctx, "probe_replace", False)))
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
    fit, score = _knob(ctx, "kmeans_fit", "test"), _knob(ctx, "kmeans_score", "test")
    if (fit, score) not in (("test", "test"), ("train", "train"), ("train", "test")):
        raise ValueError(f"eval.kmeans_fit={fit} with eval.kmeans_score={score} is not a protocol; valid: "
                         "test/test, train/train, train/test")

    def compute():
        z, y = _finite_joint(ctx, score) if score == "train" else (ctx.joint("test"), ctx.labels("test"))
        z_fit = None if fit == score else _finite_joint(ctx, fit)[0]
        return kmeans_scores(z, y, n_clusters=ctx.spec.n_classes, seed=ctx.seed,
                             n_init=int(_knob(ctx, "kmeans_n_init", 10)), Z_fit=z_fit)

    return ctx.memo("kmeans", compute)


@register_metric("kmeans_acc", higher_is_better=True,
                 description="k-means (K = classes) on the joint test representation (eval.kmeans_fit/kmeans_score "
                             "name the splits): Hungarian accuracy")
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


def key_groups(ctx: EvalContext, modality: str) -> np.ndarray | None:
    """The test split's ``<modality>_index`` extra (the source item of each row; copies of one item share it), or
    None when the benchmark has none. Retrieval counts a key of the correct key's item as correct."""
    groups = ctx.test.extras.get(f"{modality}_index")
    if groups is None:
        return None
    arr = groups.detach().cpu().numpy() if hasattr(groups, "detach") else np.asarray(groups)
    if arr.shape != (len(ctx.test),) or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"benchmark {ctx.spec.name}: extras[{modality + '_index'!r}] must be an integer array "
                         f"[{len(ctx.test)}] naming each row's source item; got {arr.dtype} {arr.shape}")
    return arr


def _retrieval(ctx: EvalContext) -> dict[str, dict[int, float]]:
    def compute():
        per = ctx.modality_embeddings("test")
        return {f"{a}->{b}": retrieval_recall(per[a], per[b], ks=(1, 5), key_groups=key_groups(ctx, b))
                for a in per for b in per if a != b}

    return ctx.memo("retrieval", compute)


@register_metric("retrieval_r1", higher_is_better=True,
                 description="cross-modal retrieval on the test pairs: recall@1 of the paired item (cosine; copies "
                             "of the paired item count as it)")
def retrieval_r1(ctx: EvalContext) -> dict[str, float]:
    return {pair: r[1] for pair, r in _retrieval(ctx).items()}


@register_metric("retrieval_r5", higher_is_better=True,
                 description="cross-modal retrieval on the test pairs: recall@5 of the paired item (cosine; copies "
                             "of the paired item count as it)")
def retrieval_r5(ctx: EvalContext) -> dict[str, float]:
    return {pair: r[5] for pair, r in _retrieval(ctx).items()}


@register_metric("retrieval_class_p10", higher_is_better=True,
                 description="cross-modal retrieval: fraction of the 10 nearest items of the other modality that "
                             "share the query's class (the meaningful retrieval score under class-level pairing)")
def retrieval_class_p10(ctx: EvalContext) -> dict[str, float]:
    per, y = ctx.modality_embeddings("test"), ctx.labels("test")
    return {f"{a}->{b}": class_precision_at_k(per[a], per[b], y, y, 10) for a in per for b in per if a != b}


__all__ = ["NotApplicable", "EvalContext"]
