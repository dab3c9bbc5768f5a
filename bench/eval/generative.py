"""Generative evaluation (docs/methods.md §9.1-§9.3): cross-modal and joint coherence, FID and KID.

Generated samples are judged by the harness's own per-modality classifiers (:mod:`bench.eval.classifiers`), so
every method on a benchmark is scored by the same judges. Conditional generation goes through the method's
``generate(batch, target)`` on test batches whose mask observes only the source modalities (the others are
overwritten with NaN / -1 by :meth:`MultimodalDataset.with_mask`, so a method cannot peek); unconditional
generation through ``sample(n)``, seeded with the run's evaluation seed.

Evaluation subsets (test samples, source subsets) are drawn with a fixed seed, not the run's, so that all methods
and seeds are scored on the same items. Importing this module registers ``coherence_cross``, ``coherence_joint``,
``fid``, ``kid`` and (through :mod:`bench.eval.classifiers`) ``classifier_acc``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from bench.data.contracts import MultimodalDataset
from bench.errors import BenchError
from bench.eval import NotApplicable
from bench.eval.classifiers import get_classifier, predict
from bench.eval.context import EvalContext
from bench.eval.fid import fid_from_features
from bench.eval.representation import as_embeddings
from bench.registry import register_metric

log = logging.getLogger(__name__)

__all__ = ["FEATURE_EXTRACTORS", "DISTANCES", "eval_indices", "kid_from_features", "source_subsets"]

# Options read from the eval config (``eval.<name>``); None in the config means "use the default".
DEFAULTS = {
    "batch_size": 512,
    "coherence_max_samples": 1000,   # test samples used for coherence (and the number of unconditional samples)
    "coherence_max_subsets": 10,     # source subsets per subset size for the "size=k" averages
    "fid_max_samples": 10000,        # real test images and generated images per FID/KID (MoPoE num_samples_fid)
    "fid_features": None,            # "classifier" | "inception"; None = inception iff weights are given
    "fid_inception_weights": None,   # local path of torch-fidelity's pt_inception-2015-12-05 weights
    "kid_subsets": 100,              # torch-fidelity defaults
    "kid_subset_size": 1000,
}
SUBSET_SEED = 0  # the fixed seed of the evaluation subsets (shared by all runs)


def _opt(ctx: EvalContext, name: str):
    value = ctx.cfg.get(name)
    return DEFAULTS[name] if value is None else value


# ------------------------------------------------------------------------------------------------ pure pieces


def eval_indices(n: int, cap: int, seed: int = SUBSET_SEED) -> torch.Tensor:
    """Sorted indices of at most ``cap`` of ``n`` items, a seeded choice (all of them when n <= cap)."""
    if n <= cap:
        return torch.arange(n)
    return torch.from_numpy(np.sort(np.random.default_rng(seed).choice(n, int(cap), replace=False)))


def source_subsets(names: tuple[str, ...], k: int, cap: int, seed: int = SUBSET_SEED) -> list[tuple[str, ...]]:
    """The subsets of ``names`` of size k (in combination order), or a seeded choice of ``cap`` of them."""
    subsets = list(itertools.combinations(names, k))
    if len(subsets) <= cap:
        return subsets
    keep = np.sort(np.random.default_rng([seed, k]).choice(len(subsets), int(cap), replace=False))
    return [subsets[i] for i in keep]


def kid_from_features(real_feats, fake_feats, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> float:
    """KID: the mean over ``subsets`` random subsets of the unbiased MMD^2 with the cubic polynomial kernel
    (torch-fidelity's ``kid_features_to_metric``). The subset size is capped at the smaller set's size."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, kid_features_to_metric

    real, fake = as_embeddings(real_feats, "real_feats"), as_embeddings(fake_feats, "fake_feats")
    size = min(int(subset_size), len(real), len(fake))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set; got {len(real)} and {len(fake)}")
    if size == len(real) == len(fake):  # every "subset" is then both whole sets: one is enough (measured 100x)
        subsets = 1
    out = kid_features_to_metric(torch.from_numpy(real), torch.from_numpy(fake), kid_subsets=int(subsets),
                                 kid_subset_size=size, rng_seed=int(seed), verbose=False)
    return float(out[KEY_METRIC_KID_MEAN])


def agreement(preds: list[np.ndarray]) -> float:
    """Fraction of samples on which every modality's predicted class is the same (joint coherence)."""
    stacked = np.stack(preds)
    return float((stacked == stacked[0]).all(0).mean())


# ---------------------------------------------------------------------------------------- running the method


def _require(ctx: EvalContext, *capabilities: str) -> None:
    missing = [c for c in capabilities if not callable(getattr(ctx.method, c, None))]
    if missing:
        raise NotApplicable(f"the method does not implement {', '.join(missing)}")


def _can(ctx: EvalContext, capability: str) -> bool:
    return callable(getattr(ctx.method, capability, None))


def _dtype(method) -> torch.dtype:
    params = getattr(method, "parameters", None)
    for p in (params() if callable(params) else ()):
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _to_device(batch: dict, device: torch.device, dtype: torch.dtype) -> dict:
    data = {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) for k, v in batch["data"].items()}
    return {"data": data, "mask": batch["mask"].to(device), "label": batch["label"].to(device)}


@contextlib.contextmanager
def _seeded(ctx: EvalContext):
    """Seed torch with the run's evaluation seed without disturbing the caller's RNG streams."""
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(ctx.seed)
        if hasattr(ctx.method, "eval"):
            ctx.method.eval()
        yield


def _n_eval(ctx: EvalContext, option: str) -> int:
    # The evaluation set depends only on min(cap, test size): memo keys use that, so coherence and FID share
    # generations whenever their caps select the same test samples.
    return min(int(_opt(ctx, option)), len(ctx.test))


def _eval_set(ctx: EvalContext, n: int) -> MultimodalDataset:
    return ctx.memo(("gen_eval_set", n), lambda: ctx.test.subset(eval_indices(len(ctx.test), n)))


def _real_stream(ctx: EvalContext, ds: MultimodalDataset, target: str) -> Iterator[torch.Tensor]:
    bs = int(_opt(ctx, "batch_size"))
    for s in range(0, len(ds), bs):
        yield ds.data[target][s : s + bs]


def _cross_stream(ctx: EvalContext, ds: MultimodalDataset, sources: tuple[str, ...],
                  target: str) -> Iterator[torch.Tensor]:
    """``target`` generated from ``sources`` only, batch by batch over ``ds``."""
    names = ctx.spec.modality_names
    mask = torch.zeros(len(ds), len(names), dtype=torch.bool)
    mask[:, [names.index(s) for s in sources]] = True
    observed = ds.with_mask(mask)
    dtype = _dtype(ctx.method)
    with _seeded(ctx):
        for batch in observed.batches(int(_opt(ctx, "batch_size"))):
            yield ctx.method.generate(_to_device(batch, ctx.device, dtype), target).cpu()


def _uncond_stream(ctx: EvalContext, n: int) -> Iterator[dict[str, torch.Tensor]]:
    """``n`` unconditional samples of every modality, in seeded batches (a rerun yields the same samples)."""
    bs = int(_opt(ctx, "batch_size"))
    with _seeded(ctx):
        for s in range(0, n, bs):
            yield {k: v.cpu() for k, v in ctx.method.sample(min(bs, n - s)).items()}


# ------------------------------------------------------------------------------- classifying what was generated


def _classify_stream(ctx: EvalContext, target: str, stream: Iterator[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """(predicted labels [N], penultimate classifier features [N, h]) of a stream of ``target`` batches."""
    model = get_classifier(ctx, target).model  # before the stream's seeded block opens
    preds, feats = zip(*(predict(model, x, int(_opt(ctx, "batch_size")), with_features=True) for x in stream))
    return np.concatenate(preds), np.concatenate(feats)


def _classified_cross(ctx: EvalContext, sources: tuple[str, ...], target: str, cap: int):
    return ctx.memo(("gen_cross", sources, target, cap),
                    lambda: _classify_stream(ctx, target, _cross_stream(ctx, _eval_set(ctx, cap), sources, target)))


def _classified_real(ctx: EvalContext, target: str, cap: int):
    return ctx.memo(("gen_real", target, cap),
                    lambda: _classify_stream(ctx, target, _real_stream(ctx, _eval_set(ctx, cap), target)))


def _classified_uncond(ctx: EvalContext, n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every modality of one set of ``n`` samples, classified (joint coherence needs them from the same z)."""
    def compute():
        # classifiers first, so that none is ever trained inside the stream's seeded no_grad block
        models = {m: get_classifier(ctx, m).model for m in ctx.spec.modality_names}
        parts: dict[str, list] = {m: [] for m in models}
        for batch in _uncond_stream(ctx, n):
            for m, model in models.items():
                parts[m].append(predict(model, batch[m], int(_opt(ctx, "batch_size")), with_features=True))
        return {m: (np.concatenate([p for p, _ in v]), np.concatenate([f for _, f in v])) for m, v in parts.items()}

    return ctx.memo(("gen_uncond", n), compute)


def _coherence(ctx: EvalContext, sources: tuple[str, ...], target: str, cap: int) -> float:
    pred, _ = _classified_cross(ctx, sources, target, cap)
    return float((pred == _eval_set(ctx, cap).labels.numpy()).mean())


# ------------------------------------------------------------------------------------------------- coherence


@register_metric("coherence_cross", higher_is_better=True, needs=("generate",),
                 description="cross-modal coherence: the fraction of test samples whose target modality generated "
                             "from the source(s) alone (decoder mean) is classified as the true label by the "
                             "harness's classifier; targets 'm->n', '*->n' (mean over sources), 'size=k' (mean "
                             "over source subsets of size k and targets outside them) and 'mean' (over all m->n)")
def coherence_cross(ctx: EvalContext) -> dict[str, float]:
    names = ctx.spec.modality_names
    if len(names) < 2:
        raise NotApplicable("cross-modal coherence needs at least two modalities")
    _require(ctx, "generate")
    cap = _n_eval(ctx, "coherence_max_samples")
    out = {f"{m}->{n}": _coherence(ctx, (m,), n, cap) for m in names for n in names if m != n}
    for n in names:
        out[f"*->{n}"] = float(np.mean([out[f"{m}->{n}"] for m in names if m != n]))
    for k in range(1, len(names)):
        scores = [_coherence(ctx, subset, n, cap)
                  for subset in source_subsets(names, k, int(_opt(ctx, "coherence_max_subsets")))
                  for n in names if n not in subset]
        out[f"size={k}"] = float(np.mean(scores))
    out["mean"] = float(np.mean([out[f"{m}->{n}"] for m in names for n in names if m != n]))
    return out


@register_metric("coherence_joint", higher_is_better=True, needs=("sample",),
                 description="joint coherence: the fraction of unconditional samples (sample(n)) on which the "
                             "harness's classifiers predict the same class for every modality")
def coherence_joint(ctx: EvalContext) -> dict[str, float]:
    if len(ctx.spec.modality_names) < 2:
        raise NotApplicable("joint coherence needs at least two modalities")
    _require(ctx, "sample")
    classified = _classified_uncond(ctx, int(_opt(ctx, "coherence_max_samples")))
    return {"joint": agreement([pred for pred, _ in classified.values()])}


# ---------------------------------------------------------------------------------------------- FID and KID


# origin kind -> (predictions, features) of ``target`` images from that origin
_CLASSIFIED: dict[str, Callable[[EvalContext, tuple, str, int], tuple[np.ndarray, np.ndarray]]] = {
    "real": lambda ctx, origin, target, cap: _classified_real(ctx, target, cap),
    "uncond": lambda ctx, origin, target, cap: _classified_uncond(ctx, cap)[target],
    "cross": lambda ctx, origin, target, cap: _classified_cross(ctx, origin[1:], target, cap),
}


def _raw_classifier_features(ctx: EvalContext, origin: tuple, target: str, cap: int) -> np.ndarray:
    return _CLASSIFIED[origin[0]](ctx, origin, target, cap)[1]


def _classifier_features(ctx: EvalContext, origin: tuple, target: str, cap: int) -> np.ndarray:
    """The penultimate features computed with the coherence predictions (one generation pass for both), divided
    by the root-mean-square entry of the real test features.

    The scale is a constant of the benchmark (fixed classifier, fixed real images), so it changes no ranking; it
    puts the features where KID's cubic kernel (x.y / d + 1)^3 expects them (Inception-like, x.x / d ~ 1).
    Unscaled ReLU features of a small classifier make that kernel so heavy-tailed that KID's estimate drowns in
    its own variance (measured: the KID of two halves of the real test set about as large as that of noisy
    images).
    """
    real = _raw_classifier_features(ctx, ("real",), target, cap)
    scale = ctx.memo(("clf_feature_scale", target, cap), lambda: float(np.sqrt(np.mean(real ** 2))) or 1.0)
    return _raw_classifier_features(ctx, origin, target, cap) / scale


def _load_inception(path: str, device: torch.device):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    # torch-fidelity loads the file with weights_only=False; refuse anything that is not a plain state dict first.
    torch.load(path, map_location="cpu", weights_only=True)
    return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=path).to(device)


def _to_uint8_rgb(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise BenchError(f"Inception features need 1- or 3-channel images, got {x.shape[1]} channels")
    return (x.float().clamp(0, 1) * 255).round().to(torch.uint8)


def _inception_features(ctx: EvalContext, origin: tuple, target: str, cap: int) -> np.ndarray:
    path = _opt(ctx, "fid_inception_weights")
    if not path or not Path(path).is_file():
        raise BenchError("Inception FID needs eval.fid_inception_weights = the local path of torch-fidelity's "
                         f"weights-inception-2015-12-05-6726825d.pth (nothing is downloaded); got {path!r}")
    model = ctx.memo(("inception", path), lambda: _load_inception(str(path), ctx.device))

    def features(stream: Iterator[torch.Tensor]) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([model(_to_uint8_rgb(x).to(ctx.device))[0].double().cpu().numpy() for x in stream])

    ds = _eval_set(ctx, cap)
    streams = {
        "real": lambda: _real_stream(ctx, ds, target),
        "uncond": lambda: (b[target] for b in _uncond_stream(ctx, len(ds))),
        "cross": lambda: _cross_stream(ctx, ds, origin[1:], target),
    }
    return ctx.memo(("inception_feats", origin, target, cap), lambda: features(streams[origin[0]]()))


# name -> features(ctx, origin, target, cap) of real ("real",), unconditional ("uncond",) or cross-generated
# ("cross", source) images of modality ``target``
FEATURE_EXTRACTORS: dict[str, Callable[[EvalContext, tuple, str, int], np.ndarray]] = {
    "classifier": _classifier_features,
    "inception": _inception_features,
}


def _extractor(ctx: EvalContext) -> Callable[[EvalContext, tuple, str, int], np.ndarray]:
    name = _opt(ctx, "fid_features") or ("inception" if _opt(ctx, "fid_inception_weights") else "classifier")
    try:
        return FEATURE_EXTRACTORS[name]
    except KeyError:
        raise BenchError(f"unknown eval.fid_features {name!r}; valid: {', '.join(FEATURE_EXTRACTORS)}") from None


def _fid(ctx: EvalContext, real: np.ndarray, fake: np.ndarray) -> float:
    return fid_from_features(real, fake)


def _kid(ctx: EvalContext, real: np.ndarray, fake: np.ndarray) -> float:
    return kid_from_features(real, fake, int(_opt(ctx, "kid_subsets")), int(_opt(ctx, "kid_subset_size")),
                             seed=SUBSET_SEED)


DISTANCES: dict[str, Callable[[EvalContext, np.ndarray, np.ndarray], float]] = {"fid": _fid, "kid": _kid}


def _distance_or_nan(distance, ctx: EvalContext, real: np.ndarray, fake: np.ndarray, what: str) -> float:
    # A diverged decoder yields NaN images; that is a result about the method, not a reason to lose the run.
    if not np.isfinite(fake).all():
        log.warning("%s: the generated images give non-finite features; recording NaN", what)
        return float("nan")
    return distance(ctx, real, fake)


def _image_distances(ctx: EvalContext, distance_name: str) -> dict[str, float]:
    names = ctx.spec.modality_names
    images = [m.name for m in ctx.spec.modalities if m.kind == "image"]
    if not images:
        raise NotApplicable("the benchmark has no image modality")
    cross_ok = _can(ctx, "generate") and len(names) > 1
    if not (_can(ctx, "sample") or cross_ok):
        raise NotApplicable("the method implements neither sample nor generate")
    extract, distance = _extractor(ctx), DISTANCES[distance_name]
    cap = _n_eval(ctx, "fid_max_samples")
    out = {}
    for t in images:
        real = extract(ctx, ("real",), t, cap)
        if _can(ctx, "sample"):
            fake = extract(ctx, ("uncond",), t, cap)
            out[f"{t}:uncond"] = _distance_or_nan(distance, ctx, real, fake, f"{distance_name} {t}:uncond")
        if cross_ok:
            out[f"{t}:cross"] = float(np.mean([
                _distance_or_nan(distance, ctx, real, extract(ctx, ("cross", s), t, cap), f"{distance_name} {s}->{t}")
                for s in names if s != t]))
    return out


_FEATURES_NOTE = ("features: the penultimate layer of the harness's classifier by default, an FID-proxy, not "
                  "comparable to published Inception FIDs (eval.fid_inception_weights switches to Inception-V3 "
                  "pool3); targets '<image modality>:uncond' (sample()) and ':cross' (generated from each other "
                  "single modality, averaged)")


@register_metric("fid", higher_is_better=False, needs=("sample", "generate"),
                 description="Fréchet distance between real test images and generated ones; " + _FEATURES_NOTE)
def fid(ctx: EvalContext) -> dict[str, float]:
    return _image_distances(ctx, "fid")


@register_metric("kid", higher_is_better=False, needs=("sample", "generate"),
                 description="kernel distance (unbiased MMD^2, cubic polynomial kernel, mean over subsets) between "
                             "real test images and generated ones; " + _FEATURES_NOTE)
def kid(ctx: EvalContext) -> dict[str, float]:
    return _image_distances(ctx, "kid")
