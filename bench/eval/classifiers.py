"""The harness's per-modality evaluation classifiers (docs/methods.md §9.1-§9.3).

Coherence classifies generated samples, and the FID-proxy uses a classifier's penultimate features, so both are
only as good as these networks. One small classifier per modality is trained on the real, complete training split
of the benchmark: the shared encoder of that modality kind (:func:`bench.nn.modules.build_encoder`), a hidden
ReLU layer (the "penultimate features") and a linear head. Training is deterministic (fixed seed, fixed epochs),
independent of the run that asks for it, and cached on disk so that every run on the same benchmark data is scored
by the same classifier.

The cache key covers everything that determines the weights: the benchmark identity (name, version, config), the
modality, the :class:`ClassifierConfig`, :data:`CLASSIFIER_VERSION`, and a fingerprint of the training tensors
(so a change of the training rows can never silently reuse a stale classifier).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from bench.data.contracts import Modality, MultimodalDataset
from bench.data.lazy import chunks, is_lazy, rows
from bench.eval.context import EvalContext
from bench.nn.modules import build_encoder
from bench.registry import register_metric

log = logging.getLogger(__name__)

__all__ = ["CLASSIFIER_VERSION", "ClassifierConfig", "ModalityClassifier", "TrainedClassifier", "classifier_config",
           "classifier_key", "get_classifier", "predict", "train_classifier"]

# Bump when the architecture or the training procedure changes: old cache files then stop matching.
CLASSIFIER_VERSION = 1


@dataclass(frozen=True)
class ClassifierConfig:
    epochs: int = 15
    lr: float = 2e-3     # the peak of a one-cycle schedule (measured: +1-2 points over a constant rate)
    batch_size: int = 64
    hidden: int = 128
    # Fixed, not the run's seed: every run on a benchmark must be scored by the same classifier.
    seed: int = 0


def classifier_config(cfg: dict) -> ClassifierConfig:
    """The classifier options of an eval config: flat keys ``classifier_<field>`` (e.g. ``classifier_epochs``)."""
    defaults = dataclasses.asdict(ClassifierConfig())
    given = {k: cfg.get(f"classifier_{k}") for k in defaults}
    return ClassifierConfig(**{k: type(d)(d if given[k] is None else given[k]) for k, d in defaults.items()})


class ModalityClassifier(nn.Module):
    def __init__(self, modality: Modality, n_classes: int, hidden: int):
        super().__init__()
        self.encoder = build_encoder(modality, hidden)
        self.neck = nn.Sequential(nn.Linear(self.encoder.out_dim, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, n_classes)
        self.is_integer = modality.is_integer

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        # Generated text/masks may come back as floats; images may come back in another float dtype.
        return x.long() if self.is_integer else x.to(self.head.weight.dtype)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (the FID-proxy's feature space)."""
        return self.neck(self.encoder(self.prepare(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class TrainedClassifier:
    model: ModalityClassifier
    test_acc: float
    key: str


# ------------------------------------------------------------------------------------------------ pure pieces


def fingerprint(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        if is_lazy(t):  # hashed chunk by chunk: the same digest as the whole tensor, without holding it
            h.update(f"{t.np_dtype}{tuple(t.shape)}".encode())
            for part in chunks(t):
                h.update(np.ascontiguousarray(part.numpy()).tobytes())
            continue
        arr = np.ascontiguousarray(t.detach().cpu().numpy())
        h.update(f"{arr.dtype}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def classifier_key(benchmark_key: str, modality: Modality, n_classes: int, cfg: ClassifierConfig,
                   data_fingerprint: str) -> str:
    ident = {"benchmark": benchmark_key, "modality": repr(modality), "n_classes": int(n_classes),
             "config": dataclasses.asdict(cfg), "version": CLASSIFIER_VERSION, "data": data_fingerprint}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def observed_rows(ds: MultimodalDataset, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) of the samples where ``name`` is observed (all of them in a complete split). A lazy
    modality stays lazy: the classifier's loops gather it batch by batch."""
    keep = ds.mask[:, ds.names.index(name)]
    return rows(ds.data[name], keep), ds.labels[keep]


@torch.no_grad()
def predict(model: ModalityClassifier, x: torch.Tensor, batch_size: int = 512,
            with_features: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted labels [N] and, if asked, penultimate features [N, hidden] (float64) of inputs ``x``."""
    model.eval()
    device = model.head.weight.device
    preds, feats = [], []
    for s in range(0, len(x), batch_size):
        f = model.features(x[s : s + batch_size].to(device))
        preds.append(model.head(f).argmax(1).cpu())
        if with_features:
            feats.append(f.double().cpu())
    pred = torch.cat(preds).numpy() if preds else np.zeros(0, dtype=np.int64)
    return pred, (torch.cat(feats).numpy() if with_features and feats else None)


def accuracy(model: ModalityClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    pred, _ = predict(model, x)
    return float((pred == y.numpy()).mean()) if len(y) else float("nan")


def train_classifier(modality: Modality, n_classes: int, x: torch.Tensor, y: torch.Tensor, cfg: ClassifierConfig,
                     device: torch.device = torch.device("cpu")) -> ModalityClassifier:
    """Train one classifier with Adam and a one-cycle rate for ``cfg.epochs`` epochs; deterministic in ``cfg.seed``
    on CPU.

    The global RNG is left untouched so that asking for a classifier (or finding it cached) never changes what
    the run samples afterwards.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = ModalityClassifier(modality, n_classes, cfg.hidden).to(device)
    # One thread, as the harness's evaluation runs (on a few shared cores more threads only contend), and grad on:
    # callers may be inside an evaluation no_grad block.
    with threadpool_limits(1), torch.enable_grad():
        return _fit(model, x, y, cfg, device)


def _fit(model: ModalityClassifier, x: torch.Tensor, y: torch.Tensor, cfg: ClassifierConfig,
         device: torch.device) -> ModalityClassifier:
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps = max(1, cfg.epochs * -(-len(y) // cfg.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(y), generator=gen)
        for s in range(0, len(y), cfg.batch_size):
            idx = order[s : s + cfg.batch_size]
            loss = loss_fn(model(x[idx].to(device)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model


# ---------------------------------------------------------------------------------------------------- caching


def _save_atomic(path: Path, payload: dict) -> None:
    """Write to a temporary file in the same folder, then rename: a concurrent reader sees all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_cached(path: Path, key: str) -> dict | None:
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or foreign file is retrained over, never trusted
        log.warning("ignoring unreadable classifier cache %s: %s", path, e)
        return None
    return payload if isinstance(payload, dict) and payload.get("key") == key else None


def _classifier_data(ctx: EvalContext) -> MultimodalDataset:
    # The complete training split of the benchmark when the harness provides it; otherwise the run's (possibly
    # masked, validation-reduced) training split, whose rows the data fingerprint then keys.
    full = getattr(ctx, "full_train", None)
    return full if full is not None else ctx.train


def _benchmark_key(ctx: EvalContext) -> str:
    return getattr(ctx, "benchmark_key", "") or ctx.spec.name


def load_or_train(ctx: EvalContext, name: str) -> TrainedClassifier:
    modality = ctx.spec.modality(name)
    cfg = classifier_config(ctx.cfg)
    x, y = observed_rows(_classifier_data(ctx), name)
    key = classifier_key(_benchmark_key(ctx), modality, ctx.spec.n_classes, cfg, fingerprint(x, y))
    path = Path(ctx.cache_dir) / "classifiers" / f"{key}.pt" if ctx.cache_dir is not None else None
    model = ModalityClassifier(modality, ctx.spec.n_classes, cfg.hidden)
    payload = _load_cached(path, key) if path is not None else None
    if payload is not None:
        model.load_state_dict(payload["state_dict"])
        return TrainedClassifier(model.to(ctx.device).eval(), float(payload["test_acc"]), key)
    model = train_classifier(modality, ctx.spec.n_classes, x, y, cfg, ctx.device)
    x_test, y_test = observed_rows(ctx.test, name)
    test_acc = accuracy(model, x_test, y_test)
    log.info("trained the evaluation classifier of %s/%s: test accuracy %.4f", ctx.spec.name, name, test_acc)
    if path is not None:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        _save_atomic(path, {"state_dict": state, "test_acc": test_acc, "key": key,
                            "benchmark": _benchmark_key(ctx), "modality": name, "config": dataclasses.asdict(cfg)})
    return TrainedClassifier(model, test_acc, key)


def get_classifier(ctx: EvalContext, name: str) -> TrainedClassifier:
    """The evaluation classifier of modality ``name``: memoised in the context, cached on disk across runs."""
    return ctx.memo(("classifier", name), lambda: load_or_train(ctx, name))


@register_metric("classifier_acc", higher_is_better=True, needs=(),
                 description="accuracy of the harness's per-modality evaluation classifier on real test data; "
                             "coherence is only as good as this")
def classifier_acc(ctx: EvalContext) -> dict[str, float]:
    return {name: get_classifier(ctx, name).test_acc for name in ctx.spec.modality_names}

