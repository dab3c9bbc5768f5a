"""``digits-caption``: an offline stand-in for CUB image-captions (docs/datasets.md §1.4).

Each digit image (1x16x16 in [0, 1], as digits-ms ``m1``) gets 10 templated captions, and the dataset's items are
the *captions*: row k pairs caption k with image k // 10 (mmvae's ``ResampleDataset(..., lambda d, i: i // 10)``),
so a split has 10 x n_images rows and the image tensor holds each image 10 times. ``extras["image_index"]`` keeps
that k // 10 index (it survives ``subset``, unlike the row position); ``extras["caption_index"]`` names the
distinct caption strings (two rows share it exactly when their token rows are identical), so that retrieval can
tell a duplicate of the correct key from a wrong one. Version 2 added ``caption_index``; the data did not change.
The digits are the undeformed sklearn digits: the thickness and slant attributes below are computed from the 8x8
source, and a deformed variant (sheared or rotated) would no longer match them.

The 10 caption slots mirror what makes CUB text interesting:

* six name the class through a synonym ("three", "digit three", "number three", "3"), never as the bare word;
* four never name it: two are deliberately uninformative ("a small handwritten picture") and two describe only
  image-derived attributes;
* attributes are stroke thickness (tertile of ink mass) and slant (tertile of the ink's shear moment), both
  computed *within the digit's class* over all 1797 sklearn digits. Within-class tertiles make them style, not a
  proxy for the class (a plain ink-mass tertile would largely separate ones from eights). They are a fixed
  annotation rule, independent of the split, so the class-disjoint option can use them too.

Tokenisation is CUB-style (:class:`bench.data.text.Vocabulary`): vocabulary from the *train* captions only
(min_count=1), ``max_len=16`` including ``<eos>``. With ``class_disjoint_test=True`` (train = classes 0-6, test =
classes 7-9, every instance of those classes, as CUB's class split) the words only test captions use, such as
"seven", are out of vocabulary and encode as ``<exc>``, exactly what a CUB model meets on unseen classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from bench.data.contracts import Benchmark, BenchmarkSpec, Modality, MultimodalDataset
from bench.data.embedded import digits as D
from bench.data.embedded.digits_ms import PAIRED_TASKS, paired_metrics
from bench.data.text import Vocabulary
from bench.errors import BenchError
from bench.registry import register_benchmark

SIZE = 16
CAPTIONS_PER_IMAGE = 10
IMAGE = Modality("image", "image", (1, SIZE, SIZE), likelihood="bernoulli")

CLASS_NAMES = ("{w}", "digit {w}", "number {w}", "{n}")
THICKNESS = (("thin", "fine", "light"), ("medium", "regular", "ordinary"), ("thick", "bold", "heavy"))
SLANT = (("leaning left", "tilted left", "slanting left"), ("upright", "straight", "vertical"),
         ("leaning right", "tilted right", "slanting right"))
# one tuple of alternative templates per caption slot; {d} = a class name, {thick}/{slant} = attribute words
SLOTS = (
    ("a handwritten {d}", "{d} written by hand", "a scanned handwritten {d}"),
    ("{d} drawn with {thick} strokes", "a {thick} {d}"),
    ("{d} drawn {slant}", "a {d} that is {slant}"),
    ("a small handwritten picture", "a tiny grey scan", "a low resolution drawing"),
    ("{d} with {thick} strokes , {slant}", "a {thick} {d} , {slant}"),
    ("a picture of {d}", "an image showing {d}", "this is {d}"),
    ("a character with {thick} strokes", "{thick} pen strokes on paper"),
    ("a character {slant}", "a symbol that is {slant}"),
    ("a blurry scan of a character", "some marks on paper", "an old handwritten sample"),
    ("someone wrote {d} {slant} with {thick} strokes", "{d} , {thick} and {slant}"),
)
assert len(SLOTS) == CAPTIONS_PER_IMAGE


@dataclass(frozen=True)
class DigitsCaptionConfig:
    seed: int = 0  # construction seed (template and synonym choices)
    class_disjoint_test: bool = False  # True: train = classes 0-6, test = classes 7-9 (zero-shot, as CUB)
    max_len: int = 16  # caption length in tokens, <eos> included


def ink_mass(images8: np.ndarray) -> np.ndarray:
    return images8.reshape(len(images8), -1).sum(axis=1)


def slant(images8: np.ndarray) -> np.ndarray:
    """Shear of the ink: how far the column centre moves right per row going up (> 0 = leaning right)."""
    w = images8 / np.maximum(images8.sum(axis=(1, 2), keepdims=True), 1e-8)
    rows, cols = np.meshgrid(np.arange(8.0), np.arange(8.0), indexing="ij")
    r = rows - (w * rows).sum(axis=(1, 2), keepdims=True)
    c = cols - (w * cols).sum(axis=(1, 2), keepdims=True)
    cov_rc = (w * r * c).sum(axis=(1, 2))
    var_r = (w * r * r).sum(axis=(1, 2))
    return -cov_rc / np.maximum(var_r, 1e-8)  # rows grow downwards, hence the sign


def within_class_tertile(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """0/1/2 = lower/middle/upper third of ``values`` among samples of the same label."""
    out = np.zeros(len(values), dtype=np.int64)
    for c in np.unique(labels):
        idx = labels == c
        lo, hi = np.quantile(values[idx], [1 / 3, 2 / 3])
        out[idx] = (values[idx] > lo).astype(np.int64) + (values[idx] > hi)
    return out


@lru_cache(maxsize=1)
def attributes() -> tuple[np.ndarray, np.ndarray]:
    """(thickness, slant) tertile codes for all 1797 digits."""
    images8, labels = D.digits_raw()
    return within_class_tertile(ink_mass(images8), labels), within_class_tertile(slant(images8), labels)


def make_captions(labels: np.ndarray, thick: np.ndarray, slants: np.ndarray, gen: np.random.Generator) -> list[str]:
    """CAPTIONS_PER_IMAGE captions per image, image-major (caption k describes image k // 10)."""
    picks = gen.integers(0, 1 << 30, size=(len(labels), CAPTIONS_PER_IMAGE, 4))
    out = []
    for i, y in enumerate(labels):
        for s, templates in enumerate(SLOTS):
            p = picks[i, s]
            name = CLASS_NAMES[p[1] % len(CLASS_NAMES)].format(w=D.WORDS[y], n=int(y))
            out.append(templates[p[0] % len(templates)].format(
                d=name, thick=THICKNESS[thick[i]][p[2] % 3], slant=SLANT[slants[i]][p[3] % 3]))
    return out


def source_images(cfg: DigitsCaptionConfig) -> tuple[np.ndarray, np.ndarray]:
    """Global sklearn indices of the (train, test) images."""
    if not cfg.class_disjoint_test:
        return D.digit_split()
    labels = D.digits_raw()[1]
    return np.flatnonzero(labels <= 6), np.flatnonzero(labels >= 7)


def _split(cfg: DigitsCaptionConfig, split: str, src: np.ndarray) -> tuple[list[str], dict]:
    labels = D.digits_raw()[1][src]
    thick, slants = (a[src] for a in attributes())
    captions = make_captions(labels, thick, slants, D.rng(cfg.seed, "digits-caption", split, "captions"))
    rep = np.repeat(np.arange(len(src)), CAPTIONS_PER_IMAGE)
    extras = {
        "image_index": torch.from_numpy(rep),
        "source_index": torch.from_numpy(src[rep]),
        "caption_slot": torch.from_numpy(np.tile(np.arange(CAPTIONS_PER_IMAGE), len(src))),
        "thickness": torch.from_numpy(thick[rep]),
        "slant": torch.from_numpy(slants[rep]),
    }
    return captions, extras


@lru_cache(maxsize=4)
def _build(cfg: DigitsCaptionConfig) -> tuple[MultimodalDataset, MultimodalDataset]:
    if cfg.max_len < 2:
        raise BenchError(f"max_len must be >= 2 (one word and <eos>), got {cfg.max_len}")
    images = D.digits_upsampled(SIZE)
    splits = {name: _split(cfg, name, src) for name, src in zip(("train", "test"), source_images(cfg))}
    vocab = Vocabulary.build(splits["train"][0], min_count=1)
    caption = Modality("caption", "text", (cfg.max_len,), vocab_size=len(vocab), vocab=vocab.itos)
    out = []
    for captions, extras in splits.values():
        src = extras["source_index"]
        data = {"image": images[src].contiguous(), "caption": vocab.encode(captions, cfg.max_len)}
        extras = {**extras, "caption_index": D.identity_index(data["caption"])}
        out.append(MultimodalDataset.complete((IMAGE, caption), data, D.digits_raw()[1][src.numpy()], extras))
    return out[0], out[1]


@register_benchmark("digits-caption")
class DigitsCaption(Benchmark):
    version = 2
    Config = DigitsCaptionConfig

    def spec(self) -> BenchmarkSpec:
        # the caption vocabulary comes from the train captions, so the spec needs the (memoised) build
        return BenchmarkSpec(self.name, _build(self.cfg)[0].modalities, D.N_CLASSES, PAIRED_TASKS,
                             # ten captions share one image row, so exact-partner retrieval would score ties
                             paired_metrics("class"))

    def build(self) -> tuple[MultimodalDataset, MultimodalDataset]:
        train, test = _build(self.cfg)
        return D.fresh_view(train), D.fresh_view(test)
