"""``digits-poly5``: an offline stand-in for PolyMNIST (docs/datasets.md §1.3).

Five modalities ``m0..m4``, each 3x16x16 in [0, 1] (Gaussian likelihood). A tuple holds digits from five
*different* source digits of one class (class-level pairing, multiplier ``dm``, inside the train / test pool:
every digit of the fixed split in ``variants`` label-preserving deformations, see
:func:`bench.data.embedded.digits.variant_pool`; the default train split has 1,258 x 4 = 5,032 tuples). Each
modality's image is a random 16x16 crop of a background photograph, with the colours inverted (x -> 1 - x)
wherever the 16x16 digit's ink exceeds 0.5, as PolyMNIST's generator does at MNIST pixel > 128. A pool digit has
one fixed crop per modality, as a PolyMNIST image file is one fixed picture.

PolyMNIST uses five different photographs; scikit-learn ships two (china.jpg, flower.jpg). Modality k uses photo
k % 2, and a fixed channel permutation per modality (:data:`CHANNEL_ORDER`, distinct among the modalities sharing
a photo) so that the five backgrounds still differ in colour statistics. The photos are first downscaled
(``photo_downscale``, area averaging) so that a 16x16 crop holds texture rather than one flat patch of sky.

The class is the only shared information; background crop and handwriting are private to each modality.
``extras``: ``m0_index`` .. ``m4_index`` (int64 [N]) the pool ids ``source * variants + variant`` of each
modality's digit, equal for two rows exactly when that modality's inputs are identical; ``source_index`` [N, 5]
global sklearn digit indices, ``crop_yx`` [N, 5, 2] crop corners. Version 2 added the variants (version 1: the
1,258 undeformed training digits, a fresh crop per row).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from bench.data.contracts import Benchmark, BenchmarkSpec, Modality, MultimodalDataset
from bench.data.embedded import digits as D
from bench.data.embedded.digits_ms import PAIRED_TASKS, paired_metrics
from bench.errors import BenchError
from bench.registry import register_benchmark

SIZE = 16
N_MODALITIES = 5
# one fixed channel order per modality: part of what distinguishes the modalities, so it never depends on the seed
CHANNEL_ORDER = ((0, 1, 2), (0, 1, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
MODALITIES = tuple(Modality(f"m{k}", "image", (3, SIZE, SIZE), likelihood="gaussian") for k in range(N_MODALITIES))


@dataclass(frozen=True)
class DigitsPoly5Config:
    dm: int = 1  # pairing multiplier (PolyMNIST has one tuple per digit and modality: 1)
    variants: int = 4  # deformed versions of each sklearn digit in the pool, the undeformed one included
    seed: int = 0  # construction seed (variants, pairing and crops)
    pairing: str = "class"  # "class": five different source digits; "instance": the same pool digit everywhere
    photo_downscale: int = 4  # photos (427x640) are shrunk by this factor before cropping


@lru_cache(maxsize=4)
def background_photos(downscale: int) -> tuple[torch.Tensor, ...]:
    """scikit-learn's two sample photos as float32 [3, H/downscale, W/downscale] in [0, 1] (china, flower)."""
    from sklearn.datasets import load_sample_images  # needs Pillow

    if downscale < 1:
        raise BenchError(f"photo_downscale must be >= 1, got {downscale}")
    sample = load_sample_images()
    photos = []
    for name in ("china.jpg", "flower.jpg"):  # by name: the loader's list order is not a documented contract
        (i,) = [k for k, f in enumerate(sample.filenames) if f.endswith(name)]
        img = torch.from_numpy(np.asarray(sample.images[i], dtype=np.float32) / 255.0).permute(2, 0, 1)
        h, w = img.shape[1] // downscale, img.shape[2] // downscale
        if min(h, w) < SIZE:
            raise BenchError(f"photo_downscale={downscale} leaves photos smaller than {SIZE}x{SIZE}")
        img = F.interpolate(img[None], size=(h, w), mode="area")[0]
        photos.append(img.clamp_(0.0, 1.0).contiguous())
    return tuple(photos)


def random_crops(photo: torch.Tensor, n: int, gen: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """n random SIZExSIZE crops [n, 3, SIZE, SIZE] of a [3, H, W] photo, and their top-left corners [n, 2]."""
    _, h, w = photo.shape
    yx = np.stack([gen.integers(0, h - SIZE + 1, size=n), gen.integers(0, w - SIZE + 1, size=n)], axis=1)
    offs = torch.arange(SIZE)
    rows = torch.from_numpy(yx[:, 0])[:, None] + offs  # [n, SIZE]
    cols = torch.from_numpy(yx[:, 1])[:, None] + offs
    crops = photo[:, rows[:, :, None], cols[:, None, :]]  # [3, n, SIZE, SIZE]
    return crops.permute(1, 0, 2, 3).contiguous(), yx.astype(np.int64)


def render_modality(ink: torch.Tensor, k: int, photos: tuple[torch.Tensor, ...],
                    gen: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """Modality k of [N, 1, H, W] digits: a crop of photo k % 2 in channel order k, inverted where the ink is."""
    photo = photos[k % len(photos)][list(CHANNEL_ORDER[k])]
    background, yx = random_crops(photo, ink.shape[0], gen)
    img = torch.where(ink > 0.5, 1.0 - background, background)
    return img, yx


def build_split(cfg: DigitsPoly5Config, split: str) -> MultimodalDataset:
    """One split of digits-poly5, uncached."""
    if split not in ("train", "test"):
        raise BenchError(f"split must be 'train' or 'test', got {split!r}")
    pool = D.pool_ids(D.digit_split()[0 if split == "train" else 1], cfg.variants)
    gen = D.rng(cfg.seed, "digits-poly5", split, "pairing")
    tuples = D.class_pairing(pool, N_MODALITIES, cfg.dm, gen, cfg.pairing, cfg.variants)
    images = D.variant_pool(SIZE, cfg.variants, cfg.seed)[torch.from_numpy(pool)]
    photos = background_photos(cfg.photo_downscale)
    data, corners, extras = {}, [], {}
    for k, m in enumerate(MODALITIES):
        # one rendering per pool digit and modality, gathered into the rows that use it
        gen = D.rng(cfg.seed, "digits-poly5", split, "crop", k)
        rendered, yx = render_modality(images, k, photos, gen)
        at = np.searchsorted(pool, tuples[:, k])
        data[m.name] = rendered[torch.from_numpy(at)].contiguous()
        corners.append(yx[at])
        extras[f"{m.name}_index"] = torch.from_numpy(tuples[:, k].copy())
    sources = tuples // cfg.variants
    labels = D.digits_raw()[1][sources[:, 0]]
    extras["source_index"] = torch.from_numpy(sources)
    extras["crop_yx"] = torch.from_numpy(np.stack(corners, axis=1))
    return MultimodalDataset.complete(MODALITIES, data, labels, extras)


@lru_cache(maxsize=4)
def _build(cfg: DigitsPoly5Config) -> tuple[MultimodalDataset, MultimodalDataset]:
    return build_split(cfg, "train"), build_split(cfg, "test")


@register_benchmark("digits-poly5")
class DigitsPoly5(Benchmark):
    version = 2
    Config = DigitsPoly5Config

    def spec(self) -> BenchmarkSpec:
        return BenchmarkSpec(self.name, MODALITIES, D.N_CLASSES, PAIRED_TASKS, paired_metrics(self.cfg.pairing))

    def build(self) -> tuple[MultimodalDataset, MultimodalDataset]:
        train, test = _build(self.cfg)
        return D.fresh_view(train), D.fresh_view(test)
