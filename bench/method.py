"""The method contract (docs/design.md "Method").

A method is an ``nn.Module`` registered by name and built from ``(BenchmarkSpec, Config)``. It implements
``loss(batch) -> dict`` (key ``loss`` is minimised; other scalar entries are logged) and
``embed(batch) -> {"joint": Tensor[B, d], <modality>: Tensor[B, d], ...}``. Optional capabilities are the
methods it defines: ``generate(batch, target)``, ``sample(n)``, ``predict(batch)``, ``segment(batch)``,
``fit_after(train)``, ``structure()`` (learned graphs, see :mod:`bench.eval.structure`). A method with
``trains = False`` is evaluated at its initialisation (see :class:`MultimodalMethod`). A batch is
``{"data": {name: Tensor}, "mask": Bool[B, M], "label": Long[B]}``; labels
must never be used by unsupervised training.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from bench.data.contracts import BenchmarkSpec

OPTIONAL = ("generate", "sample", "predict", "segment", "fit_after", "structure")


class MultimodalMethod(nn.Module, abc.ABC):
    name: ClassVar[str] = ""
    kind: ClassVar[str] = "method"   # "method" | "baseline"
    version: ClassVar[int] = 1
    # the gradient-norm clip the trainer uses when trainer.gradient_clipping is null (0 = off)
    default_gradient_clipping: ClassVar[float] = 0.0
    # False: the trainer runs no epoch (no optimiser step, no checkpoint); evaluation and the record are as usual.
    # For reference points such as the untrained floor; ``loss`` must still exist (the contract checks it).
    trains: ClassVar[bool] = True
    # True: ``embed``'s joint is NaN for a sample with an unobserved modality (e.g. a concatenation, which has no
    # value for the missing block); the probe trains on the finite rows, and the test split is always complete.
    joint_needs_every_modality: ClassVar[bool] = False

    @dataclass(frozen=True)
    class Config:
        pass

    def __init__(self, spec: BenchmarkSpec, cfg: Any):
        super().__init__()
        self.spec = spec
        self.cfg = cfg
        self.modality_names = spec.modality_names
        self.epoch, self.n_epochs = 0, 1

    @abc.abstractmethod
    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """Training objective on one batch; must read ``batch["mask"]``."""

    @abc.abstractmethod
    def embed(self, batch: dict) -> dict[str, torch.Tensor]:
        """Representations: ``joint`` from the observed modalities, and one per modality where defined."""

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.loss(batch)

    def on_epoch_start(self, epoch: int, n_epochs: int) -> None:
        """Called by the trainer before each epoch (annealing schedules)."""
        self.epoch, self.n_epochs = epoch, n_epochs

    @classmethod
    def capabilities(cls) -> tuple[str, ...]:
        return tuple(c for c in OPTIONAL if callable(getattr(cls, c, None)))
