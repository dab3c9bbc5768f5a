"""GRAM's volume objective (Cicchetti et al., ICLR 2025, arXiv 2412.11959; code ispamm/GRAM ``utils/volume.py``),
docs/methods.md §1.11: the alternative alignment that PMRL argues against, selectable with ``objective=gram``.

[paper] The volume of k unit vectors is sqrt(det G) with G their k x k Gram matrix (= the product of the singular
values of the stacked matrix); the batch's cross-volume matrix pairs anchor i with sample j's other modalities; the
loss is a symmetric cross-entropy with -Vol / tau as logits, label smoothing 0.1, a learnable tau initialised at 0.07.

[reconstructed] The anchor is the benchmark's first modality (GRAM anchors on text). det G is clamped at 1e-12 before
the square root (GRAM's code takes sqrt |det|, whose gradient is infinite at a zero volume: identical vectors). The
loss runs over the complete instances of the batch only (anchor and every other modality observed): the cross-volume
needs the same k for every (i, j), and an instance missing a modality has no k-tuple; a batch with fewer than two
complete instances contributes 0. GRAM's data-anchor matching head is dropped, as PMRL's ITM head is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

DET_FLOOR = 1e-12
LABEL_SMOOTHING = 0.1
INIT_TAU = 0.07


def gram_volume(z: torch.Tensor) -> torch.Tensor:
    """Volume spanned by the rows of z [..., k, d]: sqrt(det(z z^T)) in float32; [...]."""
    z = z.float()
    det = torch.linalg.det(z @ z.transpose(-1, -2))
    return det.clamp(min=DET_FLOOR).sqrt()


def cross_volumes(anchor: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """vol[i, j] = volume of (anchor[i], others[j, 0], ..., others[j, k-2]); anchor [B, d], others [B, k-1, d]."""
    b = anchor.shape[0]
    rows = torch.cat([anchor[:, None, None, :].expand(b, b, 1, -1),
                      others[None, :, :, :].expand(b, b, *others.shape[1:])], dim=2)   # [B, B, k, d]
    return gram_volume(rows)


def gram_loss(z: torch.Tensor, mask: torch.Tensor | None, log_inv_tau: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with -volume / tau as logits over the complete instances of z [B, M, d] (normalised here)."""
    z = F.normalize(z.float(), dim=-1)
    if mask is not None:
        z = z[mask.bool().all(1)]
    if len(z) < 2:
        return z.sum() * 0.0
    logits = -cross_volumes(z[:, 0], z[:, 1:]) * log_inv_tau.exp().clamp(max=100.0)
    target = torch.arange(len(z), device=z.device)
    return 0.5 * (F.cross_entropy(logits, target, label_smoothing=LABEL_SMOOTHING)
                  + F.cross_entropy(logits.t(), target, label_smoothing=LABEL_SMOOTHING))


def initial_log_inv_tau() -> float:
    return math.log(1.0 / INIT_TAU)
