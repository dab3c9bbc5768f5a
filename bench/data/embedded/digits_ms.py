"""``digits-ms`` and ``digits-mst``: offline stand-ins for MNIST-SVHN and MNIST-SVHN-Text (DATASETS.md §1.1, §1.2).

``digits-ms`` pairs two views of the same *class*:

* ``m1`` (the "MNIST" side): a scikit-learn digit upsampled to 1x16x16, values in [0, 1] (Bernoulli likelihood);
* ``m2`` (the "SVHN" side): a *different* instance of the same class, rotated uniformly in ±max_angle degrees,
  painted with a random ink and a random paper colour whose luminances differ by at least ``min_luminance_gap``,
  plus Gaussian noise, clipped to [0, 1], 3x16x16 (Gaussian likelihood).

Tuples are built by class-level pairing with multiplier ``dm`` separately inside the fixed train and test digit
splits (see :func:`bench.data.embedded.digits.class_pairing`), so the only information the two views share is
the class; rotation, colours and the handwriting of each side are private. ``pairing="instance"`` is the control
in which m2 is a restyled copy of m1 itself.

``digits-mst`` adds ``text``, the MoPoE text modality: the digit's English word at a uniformly random offset in a
string of 8 spaces, as character ids over :data:`bench.data.text.ALPHABET`. Unlike MoPoE (which redraws the
offset at every ``__getitem__`` with an unseeded RNG), the offset is drawn once per item from the construction
seed, so the dataset is a fixed tensor.

``extras`` hold the global sklearn indices of each side (``m1_index``, ``m2_index``) and the style factors of m2
(``m2_angle``, ``m2_fg``, ``m2_bg``; ``text_offset`` for digits-mst), for leakage checks and private-information
probes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from bench.data.contracts import (PREDICTION_METRICS, REPRESENTATION_METRICS, Benchmark, BenchmarkSpec, Modality,
                                  MultimodalDataset)
from bench.data.embedded import digits as D
from bench.data.text import ALPHABET, encode_chars
from bench.errors import BenchError
from bench.registry import register_benchmark

SIZE = 16
TEXT_LEN = 8
PAIRED_TASKS = ("representation", "generation", "retrieval")
# for the benchmarks whose task list has "generation"; methods that cannot generate get them as n/a
GENERATIVE_METRICS = ("coherence_cross", "coherence_joint", "fid", "classifier_acc")


def paired_metrics(pairing: str) -> tuple[str, ...]:
    """Under class-level pairing a tuple's partner is a random instance of the class, so retrieving *the* partner
    is at chance by construction: only class-level retrieval is meaningful there."""
    retrieval = ("retrieval_class_p10",) if pairing == "class" else ("retrieval_r1", "retrieval_r5", "retrieval_class_p10")
    # the two representation analyses of the DCMEM poster (shared space: cross-modal class structure, pairs vs strangers)
    analyses = ("modality_class_distance", "paired_unpaired_w2", "class_distance_profile", "w2_profile")
    return REPRESENTATION_METRICS + PREDICTION_METRICS + retrieval + analyses + GENERATIVE_METRICS

M1 = Modality("m1", "image", (1, SIZE, SIZE), likelihood="bernoulli")
M2 = Modality("m2", "image", (3, SIZE, SIZE), likelihood="gaussian")
TEXT = Modality("text", "text", (TEXT_LEN,), vocab_size=len(ALPHABET), vocab=tuple(ALPHABET))


@dataclass(frozen=True)
class DigitsMSConfig:
    dm: int = 5  # pairing multiplier: each digit appears dm times on each side
    seed: int = 0  # construction seed (pairing, rotations, colours, noise, text offsets)
    pairing: str = "class"  # "class" (different instance of the same class) or "instance" (same digit twice)
    max_angle: float = 20.0  # m2 rotation, uniform in [-max_angle, max_angle] degrees
    min_luminance_gap: float = 0.3  # minimum |luma(ink) - luma(paper)| of m2
    noise_std: float = 0.05  # std of the additive Gaussian noise on m2, before clipping


def render_m2(ink: torch.Tensor, gen: np.random.Generator, cfg: DigitsMSConfig) -> tuple[torch.Tensor, dict]:
    """The SVHN-like view of [N, 1, H, W] digits and its style factors."""
    n = ink.shape[0]
    angles = gen.uniform(-cfg.max_angle, cfg.max_angle, size=n).astype(np.float32)
    fg, bg = D.colours_with_gap(n, cfg.min_luminance_gap, gen)
    img = D.colourise(D.rotate(ink, angles), fg, bg)
    img = (img + D.gaussian_noise(tuple(img.shape), cfg.noise_std, gen)).clamp_(0.0, 1.0)
    style = {"m2_angle": torch.from_numpy(angles), "m2_fg": torch.from_numpy(fg), "m2_bg": torch.from_numpy(bg)}
    return img.contiguous(), style


def _check(cfg: DigitsMSConfig) -> None:
    if cfg.max_angle < 0 or cfg.noise_std < 0:
        raise BenchError(f"max_angle and noise_std must be >= 0, got {cfg.max_angle}, {cfg.noise_std}")


def build_split(cfg: DigitsMSConfig, split: str) -> MultimodalDataset:
    """One split of digits-ms, uncached (tests call this to check determinism without the memo)."""
    _check(cfg)
    pool = D.digit_split()[0 if split == "train" else 1]
    pairs = D.class_pairing(pool, 2, cfg.dm, D.rng(cfg.seed, "digits-ms", split, "pairing"), cfg.pairing)
    images = D.digits_upsampled(SIZE)
    m1 = images[torch.from_numpy(pairs[:, 0])].contiguous()
    m2, style = render_m2(images[torch.from_numpy(pairs[:, 1])], D.rng(cfg.seed, "digits-ms", split, "style"), cfg)
    labels = D.digits_raw()[1][pairs[:, 0]]
    extras = {"m1_index": torch.from_numpy(pairs[:, 0]), "m2_index": torch.from_numpy(pairs[:, 1]), **style}
    return MultimodalDataset.complete((M1, M2), {"m1": m1, "m2": m2}, labels, extras)


def digit_text(labels: np.ndarray, gen: np.random.Generator, length: int = TEXT_LEN) -> tuple[list[str], np.ndarray]:
    """The MoPoE text: each label's word at a uniform random offset in ``length`` spaces (and the offsets)."""
    words = [D.WORDS[int(y)] for y in labels]
    room = np.array([length - len(w) + 1 for w in words], dtype=np.int64)
    offsets = gen.integers(0, room).astype(np.int64)
    texts = [(" " * o + w).ljust(length) for o, w in zip(offsets, words)]
    return texts, offsets


def build_split_text(cfg: DigitsMSConfig, split: str) -> MultimodalDataset:
    """One split of digits-mst: the digits-ms split of the same config plus the text modality."""
    base = _build_ms(cfg)[0 if split == "train" else 1]
    texts, offsets = digit_text(base.labels.numpy(), D.rng(cfg.seed, "digits-mst", split, "text"))
    data = {**base.data, "text": encode_chars(texts, TEXT_LEN)}
    extras = {**base.extras, "text_offset": torch.from_numpy(offsets)}
    return MultimodalDataset.complete((M1, M2, TEXT), data, base.labels, extras)


@lru_cache(maxsize=4)
def _build_ms(cfg: DigitsMSConfig) -> tuple[MultimodalDataset, MultimodalDataset]:
    return build_split(cfg, "train"), build_split(cfg, "test")


@lru_cache(maxsize=4)
def _build_mst(cfg: DigitsMSConfig) -> tuple[MultimodalDataset, MultimodalDataset]:
    return build_split_text(cfg, "train"), build_split_text(cfg, "test")


@register_benchmark("digits-ms")
class DigitsMS(Benchmark):
    version = 1
    Config = DigitsMSConfig

    def spec(self) -> BenchmarkSpec:
        return BenchmarkSpec(self.name, (M1, M2), D.N_CLASSES, PAIRED_TASKS, paired_metrics(self.cfg.pairing))

    def build(self) -> tuple[MultimodalDataset, MultimodalDataset]:
        train, test = _build_ms(self.cfg)
        return D.fresh_view(train), D.fresh_view(test)


@register_benchmark("digits-mst")
class DigitsMST(Benchmark):
    version = 1
    Config = DigitsMSConfig

    def spec(self) -> BenchmarkSpec:
        return BenchmarkSpec(self.name, (M1, M2, TEXT), D.N_CLASSES, PAIRED_TASKS, paired_metrics(self.cfg.pairing))

    def build(self) -> tuple[MultimodalDataset, MultimodalDataset]:
        train, test = _build_mst(self.cfg)
        return D.fresh_view(train), D.fresh_view(test)
