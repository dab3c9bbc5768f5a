"""Shared construction helpers for the embedded benchmarks built from scikit-learn's 8x8 digits.

Every digits benchmark starts from the same 1797 images (values 0-16, 10 classes) and the same fixed stratified
70/30 split of them (:func:`digit_split`). The split does not depend on a benchmark's ``seed``: the construction
seed changes variants, pairings and styles, never which real digit instances are test instances, so results at
different construction seeds are evaluated on the same held-out handwriting.

**Variants.** 1,797 digits (1,258 for training) are too few distinct instances for the generative methods to learn
cross-modal structure in a few epochs. :func:`variant_pool` therefore expands every digit into ``variants``
label-preserving deformations (variant 0 is the digit itself; the others a small random affine map, see
:data:`DEFORM`, plus a smooth elastic displacement), rendered by one bilinear ``grid_sample`` straight from the
8x8 source to the target resolution, so a deformed digit is interpolated once, as an undeformed one. A *pool id*
``source * variants + variant`` names one rendered instance; a split's pool holds every variant of that split's
source digits (:func:`pool_ids`), so a test variant never derives from a training digit. Variant v of a source
digit depends only on (seed, v, source), never on ``variants``: a larger pool extends a smaller one.

All randomness comes from :func:`rng`, a numpy Generator keyed by (seed, purpose...), so that the streams of two
purposes (say, rotations and text offsets) never interfere and adding one does not shift the other.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Deformation:
    """Ranges of the label-preserving deformations (every parameter uniform in its range, elastic Gaussian).

    Small enough that a 6 stays a 6 and a 9 a 9 (rotations far from 90 degrees, shifts under one pixel at 16x16):
    a linear probe fitted on the undeformed training digits still reads 86-87 % of the deformed test variants
    (96 % of the undeformed ones; docs/datasets.md).
    """

    max_rotation: float = 12.0  # degrees
    max_log_scale: float = 0.1  # per-axis scale exp(U(-a, a)), about 0.90-1.11
    max_shear: float = 0.15  # x-shear coefficient
    max_shift: float = 0.1  # translation in normalised coordinates ([-1, 1] spans the frame): 0.8 px at 16x16
    elastic_std: float = 0.03  # std of the coarse displacement field, normalised coordinates
    elastic_grid: int = 4  # the field is drawn on a 4x4 grid and upsampled bicubically, so it stays smooth


DEFORM = Deformation()


def check_variants(variants: int) -> None:
    if not isinstance(variants, (int, np.integer)) or isinstance(variants, bool) or variants < 1:
        raise BenchError(f"variants (deformed copies of each digit, the undeformed one included) must be an "
                         f"integer >= 1, got {variants!r}")


def deformation_grids(n: int, size: int, gen: np.random.Generator, d: Deformation = DEFORM) -> torch.Tensor:
    """n random sampling grids [n, size, size, 2] (for ``grid_sample``, align_corners=False): affine + elastic."""
    rot = np.deg2rad(gen.uniform(-d.max_rotation, d.max_rotation, n))
    sx, sy = np.exp(gen.uniform(-d.max_log_scale, d.max_log_scale, (2, n)))
    shear = gen.uniform(-d.max_shear, d.max_shear, n)
    shift = gen.uniform(-d.max_shift, d.max_shift, (n, 2))
    coarse = gen.standard_normal((n, 2, d.elastic_grid, d.elastic_grid)) * d.elastic_std
    cos, sin = np.cos(rot), np.sin(rot)
    # output -> input coordinates: rotation . shear . inverse scale (a grid samples where each pixel comes from)
    rs = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
    sh = np.zeros((n, 2, 2))
    sh[:, 0, 0] = sh[:, 1, 1] = 1.0
    sh[:, 0, 1] = shear
    inv_scale = np.zeros((n, 2, 2))
    inv_scale[:, 0, 0], inv_scale[:, 1, 1] = 1.0 / sx, 1.0 / sy
    theta = np.concatenate([rs @ sh @ inv_scale, shift[:, :, None]], axis=2).astype(np.float32)
    grid = F.affine_grid(torch.from_numpy(theta), [n, 1, size, size], align_corners=False)
    field = F.interpolate(torch.from_numpy(coarse.astype(np.float32)), size=(size, size), mode="bicubic",
                          align_corners=True)
    return grid + field.permute(0, 2, 3, 1)


def identity_grids(n: int, size: int) -> torch.Tensor:
    theta = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(n, 2, 3)
    return F.affine_grid(theta, [n, 1, size, size], align_corners=False)


def render(images8: np.ndarray, grids: torch.Tensor) -> torch.Tensor:
    """[N, 8, 8] raw digits (0-16) sampled bilinearly through ``grids`` -> float32 [N, 1, size, size] in [0, 1].

    Outside the 8x8 frame the paper is blank (zero ink), so a shifted digit never smears its edge pixels.
    """
    x = torch.from_numpy(np.asarray(images8, dtype=np.float32) / 16.0).unsqueeze(1)
    out = F.grid_sample(x, grids, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.clamp_(0.0, 1.0).contiguous()


@lru_cache(maxsize=8)
def variant_pool(size: int, variants: int, seed: int) -> torch.Tensor:
    """Every sklearn digit in ``variants`` versions: [1797 * variants, 1, size, size], row = pool id.

    Row ``source * variants + variant``; variant 0 is the undeformed digit. Read-only by convention (memoised).
    """
    check_variants(variants)
    raw = digits_raw()[0]
    n = len(raw)
    out = torch.empty(n, variants, 1, size, size)
    out[:, 0] = render(raw, identity_grids(n, size))
    for v in range(1, variants):  # one stream per variant: variant v does not depend on how many there are
        out[:, v] = render(raw, deformation_grids(n, size, rng(seed, "variant", v)))
    return out.reshape(n * variants, 1, size, size)


def pool_ids(sources: np.ndarray, variants: int) -> np.ndarray:
    """The pool ids of every variant of the given global digit indices, source-major."""
    check_variants(variants)
    return (np.asarray(sources, dtype=np.int64)[:, None] * variants + np.arange(variants)).reshape(-1)


def identity_index(x: torch.Tensor) -> torch.Tensor:
    """int64 [N]: equal for two rows exactly when their tensors are equal (ids follow the sorted distinct rows)."""
    return torch.unique(x.reshape(len(x), -1), dim=0, return_inverse=True)[1].to(torch.int64)


def class_variance_fraction(x: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
    """Share of the per-pixel variance that the class explains: sum over pixels of the between-class variance
    over the sum over pixels of the total variance (the R^2 of predicting every pixel by its class mean).

    0 when every class has the same mean image, 1 when each image equals its class mean.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    labels = np.asarray(labels)
    if labels.shape != (len(x),) or len(x) < 2:
        raise BenchError(f"need >= 2 samples and one label per sample, got {len(x)} samples, labels {labels.shape}")
    centred = x - x.mean(axis=0)
    total = float((centred**2).sum())
    if total == 0.0:
        raise BenchError("the class variance fraction is undefined: every sample is the same")
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    sums = np.zeros((len(classes), x.shape[1]))
    np.add.at(sums, inverse, centred)
    between = float(((sums**2).sum(axis=1) / counts).sum())  # sum_c n_c |mean_c - mean|^2
    return between / total


def _permutation_avoiding(n: int, taken: list[np.ndarray], gen: np.random.Generator,
                          key: np.ndarray | None = None) -> np.ndarray:
    """A random permutation of range(n) whose ``key`` differs at every position from each array in ``taken``.

    ``key`` (default: the identity) maps a position to what must not coincide, e.g. the source digit of a variant.
    Drawn as a plain permutation and repaired by random swaps; the repair only touches the few clashing
    positions (about len(taken) * variants / n of them), so the result stays close to uniform over valid ones.
    """
    perm = gen.permutation(n)
    if not taken:
        return perm
    key = np.arange(n) if key is None else np.asarray(key)
    if len(np.unique(key)) <= len(taken):
        raise BenchError(f"cannot pair {len(taken) + 1} distinct instances from a class with "
                         f"{len(np.unique(key))} source digits")
    stacked = key[np.stack(taken)]
    for _ in range(10_000):
        clash = np.flatnonzero((stacked == key[perm]).any(axis=0))
        if clash.size == 0:
            return perm
        for i, j in zip(clash, gen.integers(0, n, size=clash.size)):
            perm[i], perm[j] = perm[j], perm[i]
    raise RuntimeError("could not draw a clash-free permutation")  # not met with hundreds of keys per class


def class_pairing(pool: np.ndarray, n_sides: int, dm: int, gen: np.random.Generator,
                  pairing: str = "class", variants: int = 1) -> np.ndarray:
    """Tuples of pool ids [len(pool) * dm, n_sides], every tuple within one class.

    ``pool`` holds pool ids ``source * variants + variant`` (with ``variants=1``: global digit indices).
    ``pairing="class"`` follows mmvae's make-mnist-svhn-idx (docs/datasets.md §1.1): per class, each side concatenates
    ``dm`` independent random permutations of that class's samples. Unlike the MNIST/SVHN original, both sides
    draw from the *same* pool here, so the sides of one tuple are additionally forced to come from different
    *source digits* (otherwise some tuples would pair a digit with itself, or with its own deformed copy, and
    share its handwriting).
    ``pairing="instance"`` repeats one permutation on every side (shared information then includes style).
    Rows are shuffled so that a dataset is not sorted by class.
    """
    if pairing not in ("class", "instance"):
        raise BenchError(f"pairing must be 'class' or 'instance', got {pairing!r}")
    if dm < 1:
        raise BenchError(f"dm (pairing multiplier) must be >= 1, got {dm}")
    check_variants(variants)
    pool = np.asarray(pool, dtype=np.int64)
    labels = digits_raw()[1][pool // variants]
    blocks = []
    for c in np.unique(labels):
        members = pool[labels == c]
        for _ in range(dm):
            sides: list[np.ndarray] = []
            for _ in range(n_sides):
                if pairing == "instance" and sides:
                    sides.append(sides[0])
                else:
                    sides.append(_permutation_avoiding(len(members), sides, gen, members // variants))
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


def dark_on_light(n: int, ink_max: float, paper_min: float,
                  gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(ink, paper) RGB colours [n, 3]: every ink channel uniform in [0, ink_max], every paper channel uniform in
    [paper_min, 1].

    One contrast polarity for every item, so the class-mean images keep the digit's shape (with ink and paper
    drawn from one range and swappable, every class mean is flat grey and the class explains almost none of the
    pixel variance); independent channels still give tinted inks and papers. The luminance gap is at least
    ``paper_min - ink_max``.
    """
    if not 0.0 <= ink_max < paper_min <= 1.0:
        raise BenchError(f"need 0 <= ink_max < paper_min <= 1 (dark ink on lighter paper), got ink_max={ink_max}, "
                         f"paper_min={paper_min}")
    ink = gen.uniform(0.0, ink_max, (n, 3)).astype(np.float32)
    paper = gen.uniform(paper_min, 1.0, (n, 3)).astype(np.float32)
    return ink, paper


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
