"""``digits-seg``: a small dense-segmentation benchmark (the role of CM-GLasso's segmentation experiments).

Each sample is a 1x32x32 canvas (values in [0, 1], Bernoulli likelihood) holding 2 or 3 sklearn digits, each
rendered from 8x8 to ``digit_size`` x ``digit_size`` (12 by default) in one of ``variants`` label-preserving
deformations (:func:`bench.data.embedded.digits.variant_pool`; variant 0 is the digit itself) and pasted at a
random position; the digit boxes never overlap, so every pixel belongs to at most one digit. Modalities:

* ``image``: the canvas;
* ``mask``: per-pixel classes [32, 32] int64, 0 = background and 1 + d where digit d's upsampled ink exceeds 0.5
  (``n_classes=11``);
* ``caption``: the digits read left to right, e.g. "digits three and seven" or "digits one , four and nine",
  word-tokenised with a vocabulary built from the train captions, ``max_len=8``.

Left to right means by the box's left edge, ties broken top first. The **label** of a canvas is the class of its
leftmost digit: a sample needs one class for the probes and clustering metrics, and the leftmost digit is the one
the caption names first, so the label is recoverable from every modality (image, mask and caption alike).

Train canvases draw their digits only from the variants of the fixed digit train split and test canvases only from
those of the test split, so no test handwriting is ever seen in training. ``extras``: ``digits`` [N, 3] classes left
to right (-1 = none), ``source_index`` [N, 3] global sklearn indices (-1 = none), ``glyph_index`` [N, 3] pool ids
``source * variants + variant`` (-1 = none), ``boxes`` [N, 3, 2] top-left (row, col) (-1 = none), and per modality
``image_index``, ``mask_index``, ``caption_index`` (int64 [N]), equal for two rows exactly when that modality's
inputs are identical (many canvases share a caption). Version 2 added the variants (version 1: 1,258 undeformed
training digits for 2,000 canvases of 2-3 digits each, so a digit recurred about four times on average).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from bench.data.contracts import Benchmark, BenchmarkSpec, Modality, MultimodalDataset
from bench.data.embedded import digits as D
from bench.data.contracts import SEGMENTATION_METRICS
from bench.data.embedded.digits_ms import paired_metrics
from bench.data.text import Vocabulary
from bench.errors import BenchError
from bench.registry import register_benchmark

CANVAS = 32
MAX_DIGITS = 3
CAPTION_LEN = 8
MAX_DIGIT_SIZE = 14  # larger boxes leave so little room for three that random placement rarely succeeds
IMAGE = Modality("image", "image", (1, CANVAS, CANVAS), likelihood="bernoulli")
MASK = Modality("mask", "mask", (CANVAS, CANVAS), n_classes=1 + D.N_CLASSES)
TASKS = ("representation", "generation", "retrieval", "segmentation")
METRICS = paired_metrics("instance") + SEGMENTATION_METRICS


@dataclass(frozen=True)
class DigitsSegConfig:
    n_train: int = 2000  # canvases in the train split
    n_test: int = 600  # canvases in the test split
    variants: int = 4  # deformed versions of each sklearn digit to draw from, the undeformed one included
    seed: int = 0  # construction seed (variants, digit choice, count and placement)
    digit_size: int = 12  # side of each pasted digit; three 12x12 boxes fit on the canvas without overlap
    min_digits: int = 2
    max_digits: int = 3


def _check(cfg: DigitsSegConfig) -> None:
    if not 1 <= cfg.min_digits <= cfg.max_digits <= MAX_DIGITS:
        raise BenchError(f"need 1 <= min_digits <= max_digits <= {MAX_DIGITS}, got {cfg.min_digits}, {cfg.max_digits}")
    if not 4 <= cfg.digit_size <= MAX_DIGIT_SIZE:
        raise BenchError(f"digit_size must be in [4, {MAX_DIGIT_SIZE}] so that {MAX_DIGITS} digits fit, "
                         f"got {cfg.digit_size}")
    if cfg.n_train < 1 or cfg.n_test < 1:
        raise BenchError(f"n_train and n_test must be >= 1, got {cfg.n_train}, {cfg.n_test}")
    D.check_variants(cfg.variants)


def place_boxes(k: int, size: int, gen: np.random.Generator) -> np.ndarray:
    """k non-overlapping size x size boxes on the canvas: top-left corners [k, 2], sorted left to right."""
    hi = CANVAS - size + 1
    for _ in range(1000):  # restarts are rare for the sizes _check allows
        boxes: list[tuple[int, int]] = []
        for _ in range(200):
            r, c = (int(v) for v in gen.integers(0, hi, size=2))
            if all(abs(r - r0) >= size or abs(c - c0) >= size for r0, c0 in boxes):
                boxes.append((r, c))
                if len(boxes) == k:
                    return np.array(sorted(boxes, key=lambda b: (b[1], b[0])), dtype=np.int64)
    raise BenchError(f"could not place {k} non-overlapping {size}x{size} digits on a {CANVAS}x{CANVAS} canvas")


def caption_for(digit_classes: list[int]) -> str:
    words = [D.WORDS[d] for d in digit_classes]
    if len(words) == 1:
        return f"digit {words[0]}"
    return "digits " + " , ".join(words[:-1]) + " and " + words[-1]


def build_canvases(cfg: DigitsSegConfig, pool: np.ndarray, n: int, gen: np.random.Generator) -> dict[str, np.ndarray]:
    """Canvases, masks and bookkeeping for n samples whose digits are drawn from the pool ids ``pool``."""
    glyphs = D.variant_pool(cfg.digit_size, cfg.variants, cfg.seed)[:, 0].numpy()
    labels_all = D.digits_raw()[1][np.arange(len(glyphs)) // cfg.variants]
    size = cfg.digit_size
    image = np.zeros((n, CANVAS, CANVAS), dtype=np.float32)
    mask = np.zeros((n, CANVAS, CANVAS), dtype=np.int64)
    glyph_ids = np.full((n, MAX_DIGITS), -1, dtype=np.int64)
    boxes = np.full((n, MAX_DIGITS, 2), -1, dtype=np.int64)
    counts = gen.integers(cfg.min_digits, cfg.max_digits + 1, size=n)
    for i, k in enumerate(counts):
        chosen = gen.choice(pool, size=k, replace=False)
        corners = place_boxes(int(k), size, gen)
        for j, ((r, c), g) in enumerate(zip(corners, chosen)):
            glyph = glyphs[g]
            image[i, r : r + size, c : c + size] = glyph
            mask[i, r : r + size, c : c + size] = np.where(glyph > 0.5, 1 + labels_all[g], 0)
        glyph_ids[i, :k], boxes[i, :k] = chosen, corners
    present = glyph_ids >= 0
    digits = np.where(present, labels_all[np.maximum(glyph_ids, 0)], -1)
    sources = np.where(present, glyph_ids // cfg.variants, -1)
    return {"image": image, "mask": mask, "glyph": glyph_ids, "source": sources, "boxes": boxes, "digits": digits}


@lru_cache(maxsize=4)
def _build(cfg: DigitsSegConfig) -> tuple[MultimodalDataset, MultimodalDataset]:
    _check(cfg)
    parts = {}
    for split, sources, n in zip(("train", "test"), D.digit_split(), (cfg.n_train, cfg.n_test)):
        pool = D.pool_ids(sources, cfg.variants)
        parts[split] = build_canvases(cfg, pool, n, D.rng(cfg.seed, "digits-seg", split, "canvas"))
        parts[split]["captions"] = [caption_for([d for d in row if d >= 0]) for row in parts[split]["digits"].tolist()]
    vocab = Vocabulary.build(parts["train"]["captions"], min_count=1)
    caption = Modality("caption", "text", (CAPTION_LEN,), vocab_size=len(vocab), vocab=vocab.itos)
    out = []
    for p in parts.values():
        data = {
            "image": torch.from_numpy(p["image"]).unsqueeze(1),
            "mask": torch.from_numpy(p["mask"]),
            "caption": vocab.encode(p["captions"], CAPTION_LEN),
        }
        extras = {"digits": torch.from_numpy(p["digits"]), "source_index": torch.from_numpy(p["source"]),
                  "glyph_index": torch.from_numpy(p["glyph"]), "boxes": torch.from_numpy(p["boxes"]),
                  **{f"{name}_index": D.identity_index(x) for name, x in data.items()}}
        out.append(MultimodalDataset.complete((IMAGE, MASK, caption), data, p["digits"][:, 0], extras))
    return out[0], out[1]


@register_benchmark("digits-seg")
class DigitsSeg(Benchmark):
    version = 2
    Config = DigitsSegConfig

    def spec(self) -> BenchmarkSpec:
        # the caption vocabulary comes from the train captions, so the spec needs the (memoised) build
        return BenchmarkSpec(self.name, _build(self.cfg)[0].modalities, D.N_CLASSES, TASKS, METRICS)

    def build(self) -> tuple[MultimodalDataset, MultimodalDataset]:
        train, test = _build(self.cfg)
        return D.fresh_view(train), D.fresh_view(test)
