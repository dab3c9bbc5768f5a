"""The untrained baseline: ``build_encoder`` per modality (the networks every method builds on), initialised from
the run's init seed like every method, evaluated without a single optimiser step.

* [reconstructed] This is a reference point of the harness, not a published method. Each modality is its encoder
  followed by a linear head to ``dim`` (16, the latent width every method uses by default), at random init, as a
  method's network is before its first step; ``joint`` is the concatenation of the heads' outputs. A sample with an
  unobserved modality has no value for that block, so its joint row is NaN; the probe trains on the finite rows
  and the test split is always complete.
* Why a head: the floor answers "what did training add to this network?", so it must have the network's shape.
  The raw encoder features are thousands of random dimensions (1,152 + 2,048 on digits-ms) and a linear probe on
  them reads 0.95 on the digits benchmarks, more than most trained 16-d latents (measured: MoPoE 0.81 on
  digits-ms-inst at 8 epochs) - a fact about random convolutional features and the probe's capacity, not about
  training. ``dim=0`` keeps that representation (joint = the raw features) for whoever wants that comparison.
* Per modality, ``embed`` gives that modality's head output (NaN where unobserved). With ``dim=0`` retrieval and
  the DCMEM poster's analyses still need one space, so where the encoders' widths differ (e.g. a 28x28 and a 32x32
  image) each wider one is mapped to the narrowest width by a fixed random Gaussian matrix (Johnson-Lindenstrauss:
  distances and cosines are kept up to small distortion), drawn with the encoders.
* ``loss`` is a zero connected to every parameter: the contract needs one, and the trainer never calls it
  (``trains = False``: zero epochs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from bench.method import MultimodalMethod
from bench.nn.modules import build_encoder, observed_inputs
from bench.registry import register_method


@register_method("untrained")
class Untrained(MultimodalMethod):
    kind = "baseline"
    version = 2
    trains = False
    joint_needs_every_modality = True

    @dataclass(frozen=True)
    class Config:
        hidden: int = 128   # the encoders' hidden width, as in every other method's default
        dim: int = 16       # width of each modality's random linear head (the methods' latent size); 0 = no head

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        if cfg.dim < 0:
            raise ValueError(f"untrained: dim must be >= 0 (0 = the raw encoder features), got {cfg.dim}")
        self.encoders = nn.ModuleDict({m.name: build_encoder(m, cfg.hidden) for m in spec.modalities})
        self.heads = nn.ModuleDict({m: nn.Linear(self.encoders[m].out_dim, cfg.dim, bias=False)
                                    for m in self.modality_names} if cfg.dim else {})
        widths = [cfg.dim or self.encoders[m].out_dim for m in self.modality_names]
        shared = min(widths)
        # buffers, not parameters: fixed like the rest, saved with the model, never handed to an optimiser
        for j, width in enumerate(widths):
            if width != shared:
                self.register_buffer(f"projection_{j}", torch.randn(width, shared) / math.sqrt(shared))

    def features(self, batch: dict) -> list[torch.Tensor]:
        """Each modality's head output [B, dim] (or encoder features [B, out_dim] when dim = 0), in modality order
        (unobserved rows from the zero fill)."""
        xs = observed_inputs(batch, self.modality_names)
        feats = [self.encoders[m](xs[m]) for m in self.modality_names]
        return [self.heads[m](h) for m, h in zip(self.modality_names, feats)] if self.cfg.dim else feats

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        zero = sum(p.sum() for p in self.parameters()) * 0.0
        return {"loss": zero + 0.0 * batch["mask"].float().sum()}

    @torch.no_grad()
    def embed(self, batch: dict) -> dict[str, torch.Tensor]:
        mask = batch["mask"]
        feats = self.features(batch)
        joint = torch.cat(feats, 1)
        out = {"joint": torch.where(mask.all(1, keepdim=True), joint, torch.full_like(joint, float("nan")))}
        for j, (m, h) in enumerate(zip(self.modality_names, feats)):
            projection = getattr(self, f"projection_{j}", None)
            if projection is not None:
                h = h @ projection.to(h.dtype)
            out[m] = torch.where(mask[:, j : j + 1], h, torch.full_like(h, float("nan")))
        return out
