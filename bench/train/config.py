"""Typed trainer and evaluation options (the ``trainer`` and ``eval`` config groups)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainerConfig:
    device: str = "auto"          # auto | cpu | cuda
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    # None: the method's default (MultimodalMethod.default_gradient_clipping: 0 = off, PMRL 2.0), filled in by
    # resolve_spec, so the RunSpec always holds a number
    gradient_clipping: float | None = None
    zero_stage: int = 0           # used on GPU and by several workers; one CPU process runs ZeRO-0 in fp32
    workers: int = 1              # data-parallel Ray Train workers; not part of the run_id (batch_size is global)
    precision: str = "fp32"       # fp32 | bf16 (GPU)
    val_fraction: float = 0.1
    progress: bool = True
    keep_checkpoints: int = 1

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"trainer.device must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"trainer.precision must be fp32 or bf16, got {self.precision!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("trainer.epochs and trainer.batch_size must be at least 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"trainer.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.gradient_clipping is not None and not self.gradient_clipping >= 0:
            raise ValueError(f"trainer.gradient_clipping must be >= 0 (0 = off) or null (the method's default), "
                             f"got {self.gradient_clipping}")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"trainer.zero_stage must be 0, 1, 2 or 3, got {self.zero_stage}")
        if self.workers < 1:
            raise ValueError(f"trainer.workers must be at least 1, got {self.workers}")
        if self.batch_size % self.workers:
            raise ValueError(f"trainer.batch_size={self.batch_size} does not divide among trainer.workers="
                             f"{self.workers}: the batch is the global one, split evenly over the workers; choose a "
                             f"multiple of {self.workers}")
        if self.workers > 1 and self.zero_stage == 3:
            # evaluation runs on rank 0 alone after training, and ZeRO-3 leaves it only a shard of the parameters
            raise ValueError("trainer.zero_stage=3 cannot run with trainer.workers > 1; use stage 0, 1 or 2")


@dataclass(frozen=True)
class EvalConfig:
    metrics: tuple[str, ...] | None = None   # None = the benchmark's default metrics
    probe_max_train: int | None = 5000
    batch_size: int = 512
    # generative evaluation (bench.eval.generative): coherence, FID/KID, and the classifiers that judge them
    coherence_max_samples: int = 1000
    coherence_max_subsets: int = 10
    fid_max_samples: int = 10000
    fid_features: str | None = None          # classifier (default: an FID-proxy) | inception
    fid_inception_weights: str | None = None  # a local Inception weights file; never downloaded
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    classifier_epochs: int = 15
    classifier_lr: float = 0.002
    classifier_batch_size: int = 64
    classifier_hidden: int = 128
