"""``polymnist``: five class-paired MNIST modalities on different backgrounds (docs/datasets.md §1.3).

Two on-disk variants, under ``<root>/polymnist/`` (or one level down, in ``PolyMNIST/`` or ``MMNIST/`` as the
archives unpack)::

    {train,test}/m0..m4/{i}.{digit}.png      the generator's PNG tree (MoPoE, MMVAE+), RGB 28x28
    {train,test}/m0.pt .. m4.pt, labels.pt   multivae's tensors ([N,3,28,28] each, labels [N])

In the PNG tree a tuple is the five files of the same name; ``i`` restarts at 0 for every digit, so the name
``{i}.{digit}`` (not ``i``) identifies a tuple, and the label is the digit parsed from it. The original loaders
glob each folder without sorting and rely on every listing coming back in the same order; here the tuples are
ordered by the parsed (i, digit), and the five name sets must be identical (a missing or extra file is an error
naming the folder, never a silently shifted alignment).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from bench.data.contracts import BenchmarkSpec, Modality, MultimodalDataset
from bench.data.embedded.digits_ms import PAIRED_TASKS, paired_metrics
from bench.data.formats.base import (DiskBenchmark, Layout, as_long, decode_images, find_base, float_to_u8,
                                     missing_error, pt_array, read_image, resize_u8, root_field)
from bench.data.lazy import LazyImages
from bench.errors import DataError
from bench.registry import register_benchmark

SPLITS = ("train", "test")
N_MODALITIES = 5
NAME = re.compile(r"^(\d+)\.(\d+)\.png$")


def modalities(size: int) -> tuple[Modality, ...]:
    return tuple(Modality(f"m{k}", "image", (3, size, size), likelihood="gaussian") for k in range(N_MODALITIES))


def parse_name(folder: Path, name: str) -> tuple[int, int]:
    """(i, digit) of a PolyMNIST file name ``{i}.{digit}.png``."""
    m = NAME.match(name)
    if not m or not 0 <= int(m.group(2)) <= 9:
        raise DataError(f"{folder / name}: not a PolyMNIST file name; expected {{i}}.{{digit}}.png, e.g. 12.3.png")
    return int(m.group(1)), int(m.group(2))


def png_names(folder: Path) -> set[str]:
    # os.listdir, not a sorted walk: the order is whatever the file system gives, and nothing below depends on it
    return {n for n in os.listdir(folder) if n.lower().endswith(".png")}


def aligned_keys(split_dir: Path) -> list[tuple[int, int]]:
    """The tuples of one split as sorted (i, digit) keys, after checking that m0..m4 hold the same file names."""
    names0 = png_names(split_dir / "m0")
    for k in range(1, N_MODALITIES):
        names = png_names(split_dir / f"m{k}")
        if names != names0:
            only0, onlyk = sorted(names0 - names), sorted(names - names0)
            detail = "; ".join(filter(None, [
                f"{len(only0)} only in m0 (e.g. {only0[0]})" if only0 else "",
                f"{len(onlyk)} only in m{k} (e.g. {onlyk[0]})" if onlyk else ""]))
            raise DataError(f"{split_dir / f'm{k}'}: file names differ from {split_dir / 'm0'}: {detail}; a PolyMNIST "
                            "tuple is the five files of the same name in m0..m4")
    return sorted(parse_name(split_dir / "m0", n) for n in names0)


@dataclass(frozen=True)
class PolyMnistConfig:
    root: str | None = root_field()  # data root (default: $MMRL_DATA or ~/.mmrl-bench/data); not part of the run identity
    size: int = 28  # image side (28 = as generated)


@register_benchmark("polymnist")
class PolyMnist(DiskBenchmark):
    version = 1
    Config = PolyMnistConfig
    source = ("PolyMNIST: data_ICLR_2.zip linked from the srl-ethz/mmvaeplus README, or Zenodo record 4899160 "
              "PolyMNIST.zip (multivae tensors); derived from MNIST (CC BY-SA 3.0): follow the terms its authors state")
    summary = "m0..m4 image 3x28x28 (class-paired)"
    expected = {"train": 60000, "test": 10000}
    decode_options = ("size",)

    def spec(self) -> BenchmarkSpec:
        return BenchmarkSpec(self.name, modalities(self.cfg.size), 10, PAIRED_TASKS, paired_metrics("class"))

    def layout(self) -> Layout:
        folder = self.folder
        base = find_base(folder, ("PolyMNIST", "MMNIST"), lambda p: any((p / s).is_dir() for s in SPLITS))
        if base is None:
            raise missing_error(self.name, folder, [f"{s}/m0..m4/*.png or {s}/m0..m4.pt + labels.pt" for s in SPLITS],
                                False, ())
        files: list = []
        info: dict = {"splits": {}, "counts": {}}
        absent: list[str] = []
        for s in SPLITS:
            d = base / s
            if (d / "m0").is_dir():
                absent += [f"{s}/m{k}/" for k in range(N_MODALITIES) if not (d / f"m{k}").is_dir()]
                if absent:
                    continue
                keys = aligned_keys(d)
                # strings, not Paths: only the cache key reads these, and PolyMNIST has 350,000 of them
                files += [os.path.join(d, f"m{k}", f"{i}.{y}.png") for k in range(N_MODALITIES) for i, y in keys]
                info["splits"][s] = ("png", keys)
                info["counts"][s] = len(keys)
            elif (d / "m0.pt").is_file():
                parts = [d / f"m{k}.pt" for k in range(N_MODALITIES)] + [d / "labels.pt"]
                absent += [f"{s}/{p.name}" for p in parts if not p.is_file()]
                files += parts
                info["splits"][s] = ("tensors", parts)
            else:
                absent.append(f"{s}/m0..m4/ or {s}/m0..m4.pt")
        if absent:
            raise missing_error(self.name, base, [], True, absent)
        kinds = sorted({v[0] for v in info["splits"].values()})
        return Layout(" + ".join("png tree" if k == "png" else "tensors" for k in kinds), base, tuple(files), info)

    def counts(self, layout: Layout) -> dict[str, int]:
        out = dict(layout.info["counts"])
        for s, (kind, parts) in layout.info["splits"].items():
            if kind == "tensors":
                out[s] = len(pt_array(parts[-1], "labels [N]"))
        return out

    def decode(self, layout: Layout) -> dict:
        size = self.cfg.size
        out = {}
        for s, (kind, what) in layout.info["splits"].items():
            d = layout.base / s
            if kind == "png":
                read = partial(read_image, size=size, mode="RGB")
                for k in range(N_MODALITIES):
                    paths = [d / f"m{k}" / f"{i}.{y}.png" for i, y in what]
                    out[f"{s}_m{k}"] = decode_images(paths, (3, size, size), read)
                out[f"{s}_labels"] = np.array([y for _, y in what], dtype=np.int64)
                out[f"{s}_index"] = np.array([i for i, _ in what], dtype=np.int64)
                continue
            labels = pt_array(what[-1], "labels [N]").reshape(-1).astype(np.int64)
            for k, path in enumerate(what[:-1]):
                x = pt_array(path, "images [N,3,H,W]")
                if x.ndim != 4 or x.shape[1] != 3 or len(x) != len(labels):
                    raise DataError(f"{path}: tensor of shape {x.shape}; expected [{len(labels)}, 3, H, W] "
                                    f"(one image per entry of {what[-1].name})")
                out[f"{s}_m{k}"] = resize_u8(float_to_u8(x, path), size)
            out[f"{s}_labels"] = labels
            out[f"{s}_index"] = np.arange(len(labels), dtype=np.int64)
        return out

    def assemble(self, arrays: dict) -> tuple[MultimodalDataset, MultimodalDataset]:
        mods = modalities(self.cfg.size)
        out = []
        for s in SPLITS:
            data = {m.name: LazyImages(arrays[f"{s}_{m.name}"]) for m in mods}
            out.append(MultimodalDataset.complete(mods, data, as_long(arrays[f"{s}_labels"]),
                                                  {"file_index": as_long(arrays[f"{s}_index"])}))
        return out[0], out[1]
