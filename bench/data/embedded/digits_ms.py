"""``digits-ms`` and ``digits-mst``: offline stand-ins for MNIST-SVHN and MNIST-SVHN-Text (docs/datasets.md §1.1, §1.2).

Both views draw from the split's *pool*: every train (test) sklearn digit in ``variants`` label-preserving
deformations (:func:`bench.data.embedded.digits.variant_pool`; variant 0 is the digit itself), so the default
train split has 1,258 x 4 = 5,032 distinct digits instead of 1,258.

``digits-ms`` pairs two views of the same *class*:

* ``m1`` (the "MNIST" side): a pool digit at 1x16x16, values in [0, 1] (Bernoulli likelihood);
* ``m2`` (the "SVHN" side): a pool digit *from a different source digit* of the same class, rotated uniformly in
  ±max_angle degrees, painted dark on light (every ink channel uniform in [0, ink_max], every paper channel
  uniform in [paper_min, 1]), plus Gaussian noise, clipped to [0, 1], 3x16x16 (Gaussian likelihood). Each pool
  digit has one fixed m2 rendering, as each SVHN image is one fixed picture: with ``dm > 1`` an m2 image recurs
  with different partners, exactly as in mmvae's pairing.

Version 2 changed m2's colours: version 1 drew ink and paper from one range (either could be the lighter), so
every class-mean image was flat grey and the class explained 0.14 % of m2's per-pixel variance (46 % of m1's);
one contrast polarity keeps the digit the dominant signal (docs/datasets.md has the measured fractions). It also
added the variants and made ``dm=1`` the default (version 1: ``dm=5`` repeats of the same 1,258 digits).

Tuples are built by class-level pairing with multiplier ``dm`` separately inside the train and test pools (see
:func:`bench.data.embedded.digits.class_pairing`), so the only information the two views share is the class;
rotation, colours and the handwriting of each side are private. ``pairing="instance"`` is the control in which
m2 is the restyled copy of m1's own pool digit.

``digits-mst`` adds ``text``, the MoPoE text modality: the digit's English word at a uniformly random offset in a
string of 8 spaces, as character ids over :data:`bench.data.text.ALPHABET`. Unlike MoPoE (which redraws the
offset at every ``__getitem__`` with an unseeded RNG), the offset is drawn once per item from the construction
seed, so the dataset is a fixed tensor.

``extras``: per modality ``<m>_index`` (int64 [N]) names the distinct input of that modality, equal for two rows
exactly when their inputs are identical: ``m1_index`` and ``m2_index`` are pool ids (``source * variants +
variant``), ``text_index`` is ``label * 8 + offset``. ``m1_source``/``m2_source`` are the global sklearn indices,
``m2_angle``, ``m2_fg`` (ink), ``m2_bg`` (paper) the style of m2 and ``text_offset`` the text's offset, for leakage
checks and private-information probes.
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
    dm: int = 1  # pairing multiplier: each pool digit appears dm times on each side
    variants: int = 4  # deformed versions of each sklearn digit in the pool, the undeformed one included
    seed: int = 0  # construction seed (variants, pairing, rotations, colours, noise, text offsets)
    pairing: str = "class"  # "class" (different source digit of the same class) or "instance" (the same pool digit)
    max_angle: float = 15.0  # m2 rotation, uniform in [-max_angle, max_angle] degrees
    ink_max: float = 0.4  # m2 ink: every RGB channel uniform in [0, ink_max]
    paper_min: float = 0.6  # m2 paper: every RGB channel uniform in [paper_min, 1]
    noise_std: float = 0.05  # std of the additive Gaussian noise on m2, before clipping


def render_m2(ink: torch.Tensor, gen: np.random.Generator, cfg: DigitsMSConfig) -> tuple[torch.Tensor, dict]:
    """The SVHN-like view of [N, 1, H, W] digits and its style factors."""
    n = ink.shape[0]
    angles = gen.uniform(-cfg.max_angle, cfg.max_angle, size=n).astype(np.float32)
    fg, bg = D.dark_on_light(n, cfg.ink_max, cfg.paper_min, gen)
    img = D.colourise(D.rotate(ink, angles), fg, bg)
    img = (img + D.gaussian_noise(tuple(img.shape), cfg.noise_std, gen)).clamp_(0.0, 1.0)
    style = {"m2_angle": torch.from_numpy(angles), "m2_fg": torch.from_numpy(fg), "m2_bg": torch.from_numpy(bg)}
    return img.contiguous(), style


def _check(cfg: DigitsMSConfig) -> None:
    if cfg.max_angle < 0 or cfg.noise_std < 0:
        raise BenchError(f"max_angle and noise_std must be >= 0, got {cfg.max_angle}, {cfg.noise_std}")
    D.check_variants(cfg.variants)


def split_pool(variants: int, split: str) -> np.ndarray:
    """Sorted pool ids of a split: every variant of the split's source digits."""
    if split not in ("train", "test"):
        raise BenchError(f"split must be 'train' or 'test', got {split!r}")
    return D.pool_ids(D.digit_split()[0 if split == "train" else 1], variants)


def build_split(cfg: DigitsMSConfig, split: str) -> MultimodalDataset:
    """One split of digits-ms, uncached (tests call this to check determinism without the memo)."""
    _check(cfg)
    pool = split_pool(cfg.variants, split)
    pairs = D.class_pairing(pool, 2, cfg.dm, D.rng(cfg.seed, "digits-ms", split, "pairing"), cfg.pairing,
                            cfg.variants)
    images = D.variant_pool(SIZE, cfg.variants, cfg.seed)
    m1 = images[torch.from_numpy(pairs[:, 0])].contiguous()
    # one m2 rendering per pool digit, so that equal m2_index means equal m2 input
    m2_pool, style = render_m2(images[torch.from_numpy(pool)], D.rng(cfg.seed, "digits-ms", split, "style"), cfg)
    at = torch.from_numpy(np.searchsorted(pool, pairs[:, 1]))
    sources = pairs // cfg.variants
    labels = D.digits_raw()[1][sources[:, 0]]
    extras = {"m1_index": torch.from_numpy(pairs[:, 0]), "m2_index": torch.from_numpy(pairs[:, 1]),
              "m1_source": torch.from_numpy(sources[:, 0]), "m2_source": torch.from_numpy(sources[:, 1]),
              **{k: v[at] for k, v in style.items()}}
    return MultimodalDataset.complete((M1, M2), {"m1": m1, "m2": m2_pool[at].contiguous()}, labels, extras)


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
    # identical strings exactly when label and offset agree
    text_index = base.labels * TEXT_LEN + torch.from_numpy(offsets)
    extras = {**base.extras, "text_offset": torch.from_numpy(offsets), "text_index": text_index}
    return MultimodalDataset.complete((M1, M2, TEXT), data, base.labels, extras)


@lru_cache(maxsize=4)
def _build_ms(cfg: DigitsMSConfig) -> tuple[MultimodalDataset, MultimodalDataset]:
    return build_split(cfg, "train"), build_split(cfg, "test")


@lru_cache(maxsize=4)
def _build_mst(cfg: DigitsMSConfig) -> tuple[MultimodalDataset, MultimodalDataset]:
    return build_split_text(cfg, "train"), build_split_text(cfg, "test")


@register_benchmark("digits-ms")
class DigitsMS(Benchmark):
    version = 2
    Config = DigitsMSConfig

    def spec(self) -> BenchmarkSpec:
        return BenchmarkSpec(self.name, (M1, M2), D.N_CLASSES, PAIRED_TASKS, paired_metrics(self.cfg.pairing))

    def build(self) -> tuple[MultimodalDataset, MultimodalDataset]:
        train, test = _build_ms(self.cfg)
        return D.fresh_view(train), D.fresh_view(test)


@register_benchmark("digits-mst")
class DigitsMST(Benchmark):
    version = 2
    Config = DigitsMSConfig

    def spec(self) -> BenchmarkSpec:
        return BenchmarkSpec(self.name, (M1, M2, TEXT), D.N_CLASSES, PAIRED_TASKS, paired_metrics(self.cfg.pairing))

    def build(self) -> tuple[MultimodalDataset, MultimodalDataset]:
        train, test = _build_mst(self.cfg)
        return D.fresh_view(train), D.fresh_view(test)


@dataclass(frozen=True)
class DigitsMSInstanceConfig(DigitsMSConfig):
    pairing: str = "instance"


@register_benchmark("digits-ms-inst")
class DigitsMSInstance(DigitsMS):
    """The instance-paired control of digits-ms under its own name, so that a suite (the sanity ladder) can hold it
    beside the class-paired benchmark and a report keeps the two apart: m2 is a restyled copy of m1 itself, so
    retrieving *the* partner, generating its class and aligning the two views all have a known, reachable answer."""

    version = 2
    Config = DigitsMSInstanceConfig
