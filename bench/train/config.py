"""Typed trainer and evaluation options (the ``trainer`` and ``eval`` config groups)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class TrainerConfig:
    # auto | cpu | cuda. auto is the explicit fallback: resolve_spec turns it into the device (and precision) that
    # will run, so the spec and run_id never say cuda/bf16 for a run trained on the CPU (docs/gpu.md)
    device: str = "auto"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    # the optimiser is torch's AdamW (decoupled weight decay; with weight_decay 0 it is Adam), run by DeepSpeed
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)   # torch's defaults; PMRL's code uses (0.9, 0.98)
    amsgrad: bool = False                        # MMVAE+'s code trains with Adam(amsgrad=True)
    # None: the method's default (MultimodalMethod.default_gradient_clipping: 0 = off, PMRL 2.0), filled in by
    # resolve_spec, so the RunSpec always holds a number
    gradient_clipping: float | None = None
    zero_stage: int = 0           # used on GPU and by several workers; one CPU process runs ZeRO-0 in fp32
    workers: int = 1              # data-parallel Ray Train workers; not part of the run_id (batch_size is global)
    precision: str = "fp32"       # fp32 | bf16 (GPU)
    val_fraction: float = 0.1
    progress: bool = True
    keep_checkpoints: int = 1
    # per-epoch curves as TensorBoard events under <results>/tensorboard/<run_id> (bench/train/tracking.py); not
    # part of the run_id
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"trainer.device must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"trainer.precision must be fp32 or bf16, got {self.precision!r}")
        if self.device == "cpu" and self.precision == "bf16":
            # the loop and ds_config turn bf16 on only on a GPU: a cpu+bf16 spec would name a precision never used
            raise ValueError("trainer.precision=bf16 runs on a GPU only; with trainer.device=cpu use precision=fp32, "
                             "or device=auto to take bf16 where a GPU is visible and fp32 elsewhere")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("trainer.epochs and trainer.batch_size must be at least 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"trainer.val_fraction must be in [0, 1), got {self.val_fraction}")
        if len(self.betas) != 2 or not all(0.0 <= float(b) < 1.0 for b in self.betas):
            raise ValueError(f"trainer.betas must be two numbers in [0, 1), got {list(self.betas)}")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))  # [0.9, 1] and [0.9, 1.0]: one spec
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


def resolve_auto_device(trainer: Mapping, cuda_available: bool) -> dict:
    """A trainer section with ``device: auto`` made concrete: cuda where a GPU is visible, else cpu with fp32 (bf16
    runs on a GPU only). Other devices are returned unchanged. Resolved where the spec is resolved (a sweep's
    driver), so that the spec and its run_id record what trains."""
    trainer = dict(trainer)
    if trainer.get("device", "auto") != "auto":
        return trainer
    trainer["device"] = "cuda" if cuda_available else "cpu"
    if not cuda_available:
        trainer["precision"] = "fp32"
    return trainer


def device_problem(trainer: Mapping, gpus: int, bf16_supported: bool = True, where: str = "") -> str | None:
    """Why a run's trainer cannot run on what is visible here (``gpus`` CUDA devices), in one line; None when it
    can. ``where`` names whose GPUs were counted (e.g. "in the Ray cluster")."""
    if trainer.get("device") != "cuda":
        return None
    workers = int(trainer.get("workers", 1))
    what = (f"trainer asks for device=cuda (precision={trainer.get('precision')}, zero_stage="
            f"{trainer.get('zero_stage')}{f', workers={workers}' if workers > 1 else ''})")
    fix = "use trainer=cpu, or trainer.device=auto to fall back to the CPU explicitly (the spec then records cpu/fp32)"
    if gpus == 0:
        seen = where or "(torch.cuda.is_available() is False)"
        return f"{what} but no GPU is visible {seen}; {fix}"
    if gpus < workers:
        return f"{what} but only {gpus} GPU{'s' if gpus != 1 else ''} visible {where or 'here'}; one per worker: " \
               f"use trainer.workers={gpus} or fewer, or {fix}"
    if trainer.get("precision") == "bf16" and not bf16_supported:
        return f"{what} but this GPU has no bf16 support (torch.cuda.is_bf16_supported() is False); use " \
               "trainer.precision=fp32"
    return None


# Evaluation protocols (``eval.protocol``): the knob values each named protocol fixes, so that the label a report
# prints is true of the numbers under it. A knob a protocol does not list is free (probe_max_train is a budget under
# default and mvp: suites lower it for speed). ``custom`` fixes nothing: the label for any other mix.
EVAL_PROTOCOLS: dict[str, dict] = {
    "default": {"probe_scaler": True, "probe_replace": False, "kmeans_fit": "test", "kmeans_score": "test",
                "kmeans_n_init": 10},
    # thomassutter/MoPoE eval_metrics/representation.py (train_clf_lr_all_subsets, train_clf_lr) and
    # utils/BaseFlags.py (num_training_samples_lr=500): 500 training indices drawn with np.random.randint (with
    # replacement), LogisticRegression(solver="lbfgs", max_iter=1000) on the latent means, no scaler
    "mopoe": {"probe_max_train": 500, "probe_scaler": False, "probe_replace": True, "kmeans_fit": "test",
              "kmeans_score": "test", "kmeans_n_init": 10},
    # gaoxin492/MVP training/trainer.py (ICMVtrainer.Clustering; dataprovider/MvDataset.py has no test split):
    # KMeans(n_clusters=classes, random_state=seed, n_init="auto") fitted on the training samples' aggregated means
    # and scored on those same samples; sklearn's "auto" is one initialisation for k-means++
    "mvp": {"probe_scaler": True, "probe_replace": False, "kmeans_fit": "train", "kmeans_score": "train",
            "kmeans_n_init": 1},
    "custom": {},
}
KMEANS_SPLITS = ("test", "train")


@dataclass(frozen=True)
class EvalConfig:
    metrics: tuple[str, ...] | None = None   # None = the benchmark's default metrics
    protocol: str = "default"                # a name in EVAL_PROTOCOLS; it fixes the knobs below that it lists
    probe_max_train: int | None = 5000       # probes train on at most this many training samples (seeded draw)
    probe_scaler: bool = True                # StandardScaler before the probe's classifier
    probe_replace: bool = False              # draw the probe_max_train samples with replacement (MoPoE)
    kmeans_fit: str = "test"                 # the split whose joint representations k-means is fitted on
    kmeans_score: str = "test"               # the split whose cluster assignments are scored (train needs fit=train)
    kmeans_n_init: int = 10
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

    def __post_init__(self) -> None:
        if self.protocol not in EVAL_PROTOCOLS:
            raise ValueError(f"eval.protocol must be one of {', '.join(EVAL_PROTOCOLS)}, got {self.protocol!r}")
        for knob in ("kmeans_fit", "kmeans_score"):
            if getattr(self, knob) not in KMEANS_SPLITS:
                raise ValueError(f"eval.{knob} must be test or train, got {getattr(self, knob)!r}")
        if self.kmeans_score == "train" and self.kmeans_fit != "train":
            raise ValueError("eval.kmeans_score=train needs eval.kmeans_fit=train (clusters fitted on the test set "
                             "cannot be scored on the training set)")
        if self.kmeans_n_init < 1:
            raise ValueError(f"eval.kmeans_n_init must be at least 1, got {self.kmeans_n_init}")
        if self.probe_max_train is not None and self.probe_max_train < 1:
            raise ValueError(f"eval.probe_max_train must be at least 1 or null (all), got {self.probe_max_train}")
        if self.probe_replace and self.probe_max_train is None:
            raise ValueError("eval.probe_replace=true needs eval.probe_max_train (how many samples to draw)")
        wrong = {k: v for k, v in EVAL_PROTOCOLS[self.protocol].items() if getattr(self, k) != v}
        if wrong:
            got = ", ".join(f"{k}={getattr(self, k)!r}" for k in wrong)
            fixed = ", ".join(f"{k}={v!r}" for k, v in wrong.items())
            raise ValueError(f"eval.protocol={self.protocol} fixes {fixed}, got {got}; select the protocol's file "
                             f"(eval={self.protocol}) without overriding them, or label the mix eval.protocol=custom")
