"""``medmnist-organ``: the axial, coronal and sagittal views of MedMNIST's organ sets, paired by class
(docs/datasets.md §1.5).

Files, under ``<root>/medmnist-organ/``: ``organamnist{s}.npz``, ``organcmnist{s}.npz`` and ``organsmnist{s}.npz``
with ``{s}`` empty for 28 px and ``_64``, ``_128`` or ``_224`` otherwise (the ``medmnist`` package's names; its
default folder is ``~/.medmnist``). Each holds ``{train,val,test}_images`` (uint8 [N,H,W]) and
``{train,val,test}_labels`` ([N,1], 11 organ classes).

The three views show the same 11 classes but not the same scans, so a tuple is paired by class as PolyMNIST is: per
split and class, n = the smallest of the three views' counts, and each view contributes ``dm`` independent random
draws of n of its images of that class (seeded by ``seed``). The official train and test splits are used; the official
validation split is not (the engine carves its validation hold-out from train, the same way at every observation
ratio), and the check counts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data.contracts import BenchmarkSpec, Modality, MultimodalDataset
from bench.data.embedded.digits_ms import PAIRED_TASKS, paired_metrics
from bench.data.formats.base import DiskBenchmark, Layout, as_long, missing_error, npz_shapes, root_field
from bench.data.lazy import LazyImages
from bench.data.splits import split_seed
from bench.errors import DataError
from bench.registry import register_benchmark

VIEWS = {"axial": "organamnist", "coronal": "organcmnist", "sagittal": "organsmnist"}
KEYS = ("train_images", "train_labels", "val_images", "val_labels", "test_images", "test_labels")
SIZES = (28, 64, 128, 224)
N_CLASSES = 11


def file_name(flag: str, size: int) -> str:
    return f"{flag}{'' if size == 28 else f'_{size}'}.npz"


def load_npz(path: Path, size: int) -> dict[str, np.ndarray]:
    """The six arrays of a MedMNIST npz, checked: every key, [N,H,W] uint8 images of the right size, [N,1] labels."""
    shapes = npz_shapes(path)
    absent = [k for k in KEYS if k not in shapes]
    if absent:
        raise DataError(f"{path}: no key {absent[0]!r}; a MedMNIST npz holds {', '.join(KEYS)}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in KEYS}
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: cannot read the npz ({e})") from None
    for split in ("train", "val", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"].reshape(len(arrays[f"{split}_labels"]), -1)
        if x.ndim != 3 or x.shape[1:] != (size, size) or len(y) != len(x) or y.shape[1] != 1:
            raise DataError(f"{path}: {split}_images {x.shape} and {split}_labels {arrays[f'{split}_labels'].shape}; "
                            f"expected [N,{size},{size}] and [N,1] (2D, single-label, {size} px)")
        if len(y) and (y.min() < 0 or y.max() >= N_CLASSES):
            raise DataError(f"{path}: {split}_labels in [{y.min()}, {y.max()}]; the organ sets have {N_CLASSES} classes")
        arrays[f"{split}_labels"] = y[:, 0].astype(np.int64)
    return arrays


def class_tuples(labels: list[np.ndarray], dm: int, gen: np.random.Generator) -> np.ndarray:
    """[n, len(labels)] indices: per class, dm rounds of n_c = min count draws from each view, each a random
    subset in random order, so every tuple is within one class."""
    blocks = []
    for c in np.unique(np.concatenate(labels)):
        members = [np.flatnonzero(y == c) for y in labels]
        n = min(len(m) for m in members)
        if n == 0:
            continue
        for _ in range(dm):
            blocks.append(np.stack([gen.permutation(m)[:n] for m in members], axis=1))
    return np.concatenate(blocks) if blocks else np.zeros((0, len(labels)), dtype=np.int64)


@dataclass(frozen=True)
class MedMnistOrganConfig:
    root: str | None = root_field()  # data root (default: $MMRL_DATA or ~/.mmrl-bench/data); not part of the run identity
    size: int = 28  # 28, 64, 128 or 224: which npz files are read
    dm: int = 1  # pairing multiplier
    seed: int = 0  # seed of the class pairing


@register_benchmark("medmnist-organ")
class MedMnistOrgan(DiskBenchmark):
    version = 1
    Config = MedMnistOrganConfig
    source = ("MedMNIST v2/v3: zenodo.org/records/10519652 (the `medmnist` package downloads the same files); "
              "OrganA/C/SMNIST derived from LiTS, CC BY 4.0")
    summary = "axial, coronal, sagittal image 1x28x28 (class-paired)"
    expected = {f"{view} {split}": n for view, sizes in
                (("axial", (34561, 6491, 17778)), ("coronal", (12975, 2392, 8216)), ("sagittal", (13932, 2452, 8827)))
                for split, n in zip(("train", "val", "test"), sizes)}
    decode_options = ("size", "dm", "seed")

    def modalities(self) -> tuple[Modality, ...]:
        s = self.cfg.size
        return tuple(Modality(v, "image", (1, s, s), likelihood="bernoulli") for v in VIEWS)

    def spec(self) -> BenchmarkSpec:
        return BenchmarkSpec(self.name, self.modalities(), N_CLASSES, PAIRED_TASKS, paired_metrics("class"))

    def layout(self) -> Layout:
        if self.cfg.size not in SIZES:
            raise DataError(f"{self.name}: size must be one of {', '.join(map(str, SIZES))}, got {self.cfg.size}")
        if self.cfg.dm < 1:
            raise DataError(f"{self.name}: dm (pairing multiplier) must be >= 1, got {self.cfg.dm}")
        folder = self.folder
        names = [file_name(flag, self.cfg.size) for flag in VIEWS.values()]
        absent = [n for n in names if not (folder / n).is_file()]
        if absent:
            raise missing_error(self.name, folder, names, len(absent) < len(names), absent)
        return Layout(f"MedMNIST npz, {self.cfg.size} px", folder, tuple(folder / n for n in names))

    def counts(self, layout: Layout) -> dict[str, int]:
        out = {}
        for view, path in zip(VIEWS, layout.files):
            shapes = npz_shapes(path)
            for split in ("train", "val", "test"):
                key = f"{split}_labels"
                if key not in shapes:
                    raise DataError(f"{path}: no key {key!r}; a MedMNIST npz holds {', '.join(KEYS)}")
                out[f"{view} {split}"] = int(shapes[key][0])
        return out

    def decode(self, layout: Layout) -> dict:
        out = {}
        views = [load_npz(p, self.cfg.size) for p in layout.files]
        for split in ("train", "test"):
            gen = np.random.default_rng(split_seed("medmnist-organ pairing", self.cfg.seed, split))
            tuples = class_tuples([v[f"{split}_labels"] for v in views], self.cfg.dm, gen)
            out[f"{split}_tuples"] = tuples
            for name, v in zip(VIEWS, views):
                out[f"{split}_{name}"] = v[f"{split}_images"][:, None]
                out[f"{split}_{name}_labels"] = v[f"{split}_labels"]
        return out

    def assemble(self, arrays: dict) -> tuple[MultimodalDataset, MultimodalDataset]:
        mods = self.modalities()
        out = []
        for split in ("train", "test"):
            tuples = np.asarray(arrays[f"{split}_tuples"])
            data, extras = {}, {}
            for j, name in enumerate(VIEWS):
                # the view's uint8 images, memory-mapped, read through the tuples: no per-pairing copy
                extras[f"{name}_index"] = as_long(tuples[:, j])
                data[name] = LazyImages(arrays[f"{split}_{name}"], extras[f"{name}_index"])
            labels = np.asarray(arrays[f"{split}_axial_labels"])[tuples[:, 0]] if len(tuples) else np.zeros(0)
            out.append(MultimodalDataset.complete(mods, data, labels, extras))
        return out[0], out[1]
