"""Shared construction helpers for the embedded benchmarks built from scikit-learn's 8x8 digits.

Every digits benchmark starts from the same 1797 images (values 0-16, 10 classes) and the same fixed stratified
70/30 split of them (:func:`digit_split`). The split does not depend on a benchmark's ``seed``: the construction
seed changes pairings and styles, never which real digit instances are test instances, so results at different
construction seeds are evaluated on the same held-out handwriting.

All randomness comes from :func:`rng`, a numpy Generator keyed by (seed, purpose...), so that the streams of two
purposes (say, rotations and text offsets) never interfere and adding one does not shift the other.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from bench.data.contracts import MultimodalDataset
from bench.data.splits import split_seed, stratified_split
from bench.errors import BenchError

SPLIT_SEED = 0
TEST_FRACTION = 0.3
N_CLASSES = 10
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# ITU-R BT.601 luma weights: the "brightness" a viewer (and a grey-scale probe) sees
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def rng(seed: int, *purpose: object) -> np.random.Generator:
    """An independent numpy Generator for one purpose of one construction seed."""
    return np.random.default_rng(split_seed("mmrl-digits", int(seed), *purpose))


@lru_cache(maxsize=1)
def digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """All sklearn digits as (images float32 [1797, 8, 8] in [0, 16], labels int64 [1797]), read-only."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.ascontiguousarray(d.images, dtype=np.float32)
    labels = np.asarray(d.target, dtype=np.int64)
    images.setflags(write=False)  # cached and shared: a caller must not edit them in place
    labels.setflags(write=False)
    return images, labels


def upsample(images8: np.ndarray, size: int) -> torch.Tensor:
    """[N, 8, 8] raw digits (0-16) -> float32 [N, 1, size, size] in [0, 1] by bilinear interpolation."""
    x = torch.from_numpy(np.asarray(images8, dtype=np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp_(0.0, 1.0)


@lru_cache(maxsize=4)
def digits_upsampled(size: int = 16) -> torch.Tensor:
    """Every sklearn digit upsampled once to [1797, 1, size, size]; index it with global digit indices."""
    return upsample(digits_raw()[0], size)


@lru_cache(maxsize=1)
def digit_split() -> tuple[np.ndarray, np.ndarray]:
    """The fixed stratified 70/30 split of the 1797 digits: sorted global indices (train, test)."""
    train, test = stratified_split(digits_raw()[1], TEST_FRACTION, SPLIT_SEED)
    train.setflags(write=False)
    test.setflags(write=False)
    return train, test


def _permutation_avoiding(n: int, taken: list[np.ndarray], gen: np.random.Generator) -> np.ndarray:
    """A random permutation of range(n) that differs at every position from each array in ``taken``.

    Drawn as a plain permutation and repaired by random swaps; the repair only touches the few clashing
    positions (about len(taken)/n of them), so the result stays close to uniform over valid permutations.
    """
    perm = gen.permutation(n)
    if not taken:
        return perm
    if n <= len(taken):
        raise BenchError(f"cannot pair {len(taken) + 1} distinct instances from a class with {n} samples")
    stacked = np.stack(taken)
    for _ in range(10_000):
        clash = np.flatnonzero((stacked == perm).any(axis=0))
        if clash.size == 0:
            return perm
        for i, j in zip(clash, gen.integers(0, n, size=clash.size)):
            perm[i], perm[j] = perm[j], perm[i]
    raise RuntimeError("could not draw a clash-free permutation")  # unreachable for n > len(taken)


def class_pairing(pool: np.ndarray, n_sides: int, dm: int, gen: np.random.Generator,
                  pairing: str = "class") -> np.ndarray:
    """Tuples of global digit indices [len(pool) * dm, n_sides], every tuple within one class.

    ``pairing="class"`` follows mmvae's make-mnist-svhn-idx (DATASETS.md §1.1): per class, each side concatenates
    ``dm`` independent random permutations of that class's samples. Unlike the MNIST/SVHN original, both sides
    draw from the *same* pool here, so the sides of one tuple are additionally forced to be different instances
    (otherwise about 1 tuple in n_class would pair a digit with itself and share its style).
    ``pairing="instance"`` repeats one permutation on every side (shared information then includes style).
    Rows are shuffled so that a dataset is not sorted by class.
    """
    if pairing not in ("class", "instance"):
        raise BenchError(f"pairing must be 'class' or 'instance', got {pairing!r}")
    if dm < 1:
        raise BenchError(f"dm (pairing multiplier) must be >= 1, got {dm}")
    labels = digits_raw()[1]
    pool = np.asarray(pool)
    blocks = []
    for c in np.unique(labels[pool]):
        members = pool[labels[pool] == c]
        for _ in range(dm):
            sides: list[np.ndarray] = []
            for _ in range(n_sides):
                if pairing == "instance" and sides:
                    sides.append(sides[0])
                else:
                    sides.append(_permutation_avoiding(len(members), sides, gen))
            blocks.append(members[np.stack(sides, axis=1)])
    tuples = np.concatenate(blocks)
    return tuples[gen.permutation(len(tuples))]


def rotate(images: torch.Tensor, angles_deg: np.ndarray) -> torch.Tensor:
    """Rotate each [C, H, W] image about its centre; pixels coming from outside the frame are 0 (no ink)."""
    theta = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    cos, sin = np.cos(theta), np.sin(theta)
    zeros = np.zeros_like(theta)
    mats = np.stack([np.stack([cos, -sin, zeros], 1), np.stack([sin, cos, zeros], 1)], 1)
    grid = F.affine_grid(torch.from_numpy(mats.astype(np.float32)), list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.clamp_(0.0, 1.0)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float32) @ LUMA


def colours_with_gap(n: int, min_gap: float, gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(foreground, background) uniform RGB colours [n, 3] whose luminances differ by at least ``min_gap``.

    Without the gap a fraction of the coloured digits would be invisible (ink colour ~ paper colour), which
    would cap every method's accuracy for a reason unrelated to representation learning.
    """
    if not 0.0 <= min_gap <= 0.8:
        raise BenchError(f"min_luminance_gap must be in [0, 0.8], got {min_gap}")
    fg = gen.random((n, 3), dtype=np.float32)
    bg = gen.random((n, 3), dtype=np.float32)
    bad = np.abs(luminance(fg) - luminance(bg)) < min_gap
    while bad.any():  # rejection keeps each colour uniform given the constraint
        k = int(bad.sum())
        fg[bad] = gen.random((k, 3), dtype=np.float32)
        bg[bad] = gen.random((k, 3), dtype=np.float32)
        bad = np.abs(luminance(fg) - luminance(bg)) < min_gap
    return fg, bg


def colourise(ink: torch.Tensor, fg: np.ndarray, bg: np.ndarray) -> torch.Tensor:
    """[N, 1, H, W] ink in [0, 1] -> [N, 3, H, W]: a per-item blend from background colour to ink colour."""
    fg_t = torch.from_numpy(np.asarray(fg, dtype=np.float32))[:, :, None, None]
    bg_t = torch.from_numpy(np.asarray(bg, dtype=np.float32))[:, :, None, None]
    return bg_t + (fg_t - bg_t) * ink


def gaussian_noise(shape: tuple[int, ...], std: float, gen: np.random.Generator) -> torch.Tensor:
    return torch.from_numpy(gen.standard_normal(shape, dtype=np.float32) * np.float32(std))


def fresh_view(ds: MultimodalDataset) -> MultimodalDataset:
    """A new dataset object over the same (memoised) tensors, so rebinding a field never edits the cache.

    The tensors themselves are shared: callers must not modify them in place (``with_mask`` and ``subset``
    already copy).
    """
    return MultimodalDataset(ds.modalities, dict(ds.data), ds.labels, ds.mask.clone(), dict(ds.extras))
