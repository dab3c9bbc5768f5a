"""Metrics on what a method predicts itself: class labels (``predict``) and per-pixel masks (``segment``).

* ``predict_acc``: test accuracy of argmax ``method.predict(batch)`` (the method's own classifier, e.g.
  CM-GLasso's generative QDA), next to the probe accuracies of every method's frozen representation.
* ``segment_miou``: mean intersection-over-union of ``method.segment(batch)`` against the benchmark's ``mask``
  modality. The batch the method sees has that modality marked unobserved (and its values set to the missing
  placeholder), so a method can never copy the answer. IoU is accumulated over the whole test split per class and
  averaged over the classes that occur in the truth or the prediction (background included, as in PASCAL VOC).

Importing this module registers both; a method without the capability, or a benchmark without a mask modality,
gets ``not_applicable``.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from bench.data.contracts import MISSING_INT
from bench.eval import NotApplicable
from bench.eval.context import EvalContext
from bench.registry import register_metric

__all__ = ["confusion", "mean_iou", "predict_acc", "segment_miou"]


def confusion(pred: np.ndarray, true: np.ndarray, n_classes: int) -> np.ndarray:
    """[n_classes, n_classes] counts, row = true class, column = predicted; entries outside [0, n) are ignored."""
    pred, true = np.asarray(pred).ravel(), np.asarray(true).ravel()
    keep = (true >= 0) & (true < n_classes) & (pred >= 0) & (pred < n_classes)
    return np.bincount(true[keep] * n_classes + pred[keep], minlength=n_classes ** 2).reshape(n_classes, n_classes)


def mean_iou(conf: np.ndarray) -> float:
    """Mean over classes present in the truth or the prediction of TP / (TP + FP + FN)."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    present = union > 0
    if not present.any():
        raise ValueError("mean_iou: no pixel of any class")
    return float((tp[present] / union[present]).mean())


def _dtype(method) -> torch.dtype:
    for p in method.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _batches(ctx: EvalContext, hide: str | None = None) -> Iterator[tuple[dict, dict]]:
    """(device batch for the method, the original CPU batch) over the test split; ``hide`` marks a modality
    unobserved in the method's copy."""
    dtype = _dtype(ctx.method)
    names = ctx.spec.modality_names
    for batch in ctx.test.batches(int(ctx.cfg.get("batch_size", 512))):
        data = dict(batch["data"])
        mask = batch["mask"].clone()
        if hide is not None:
            j = names.index(hide)
            mask[:, j] = False
            x = data[hide]
            data[hide] = torch.full_like(x, float("nan")) if x.is_floating_point() else torch.full_like(x, MISSING_INT)
        moved = {"data": {k: (v.to(ctx.device, dtype) if v.is_floating_point() else v.to(ctx.device))
                          for k, v in data.items()},
                 "mask": mask.to(ctx.device), "label": batch["label"].to(ctx.device)}
        yield moved, batch


def _require(ctx: EvalContext, capability: str) -> None:
    if not callable(getattr(ctx.method, capability, None)):
        raise NotApplicable(f"the method does not implement {capability}")


@register_metric("predict_acc", higher_is_better=True, needs=("predict",),
                 description="test accuracy of the method's own classifier (argmax of predict), e.g. CM-GLasso's "
                             "generative QDA; compare with the probe accuracies of the representations")
def predict_acc(ctx: EvalContext) -> dict[str, float]:
    _require(ctx, "predict")
    ctx.method.eval()
    right = seen = 0
    with torch.no_grad():
        for batch, raw in _batches(ctx):
            pred = ctx.method.predict(batch).argmax(1).cpu()
            right += int((pred == raw["label"]).sum())
            seen += len(pred)
    return {"joint": right / max(seen, 1)}


@register_metric("segment_miou", higher_is_better=True, needs=("segment",),
                 description="mean IoU of the method's per-pixel classes (segment) against the mask modality, "
                             "which the method does not see; background included")
def segment_miou(ctx: EvalContext) -> dict[str, float]:
    _require(ctx, "segment")
    masks = [m for m in ctx.spec.modalities if m.kind == "mask"]
    if not masks:
        raise NotApplicable("the benchmark has no mask modality")
    target = masks[0]
    ctx.method.eval()
    conf = np.zeros((target.n_classes, target.n_classes), dtype=np.int64)
    with torch.no_grad():
        for batch, raw in _batches(ctx, hide=target.name):
            pred = ctx.method.segment(batch).cpu().numpy()
            true = raw["data"][target.name].numpy()
            if pred.shape != true.shape:
                raise ValueError(f"segment returned shape {pred.shape}, the {target.name} modality has {true.shape}")
            conf += confusion(pred, true, target.n_classes)
    return {target.name: mean_iou(conf)}
