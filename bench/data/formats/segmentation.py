"""The ``segmentation`` suite's datasets: ``kvasir-seg`` and ``voc-2012`` (image + per-pixel class mask).

``kvasir-seg``, under ``<root>/kvasir-seg/`` (or ``kvasir-seg/Kvasir-SEG/`` as the archive unpacks): ``images/*.jpg``
and ``masks/*.jpg`` of the same names (white polyp on black; read as > 127). The release has no official split:
the test split is a fixed fraction of the file names, drawn with ``split_seed`` from the sorted names, so it does not
depend on the listing order. The sample label (needed by the representation metrics, not by segmentation) is the
polyp's size: the fraction of the frame it covers, < 5 %, 5-15 % or more (3 classes).

``voc-2012``, under ``<root>/voc-2012/`` (or ``voc-2012/VOCdevkit/VOC2012/``): ``JPEGImages/{id}.jpg``,
``SegmentationClass/{id}.png`` (palette PNGs: class indices 0-20, 255 = the void border) and
``ImageSets/Segmentation/{train,val}.txt``; train is the official train list and test the official val list (the
test masks are not public). Void pixels become background (0), since the mask modality has no "ignore" value. The
sample label is the object class covering most pixels (1-20), or 0 when there is none.

Images and masks are resized to ``size`` x ``size`` (masks with nearest-neighbour, so no class is invented).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from bench.data.contracts import PREDICTION_METRICS, SEGMENTATION_METRICS, BenchmarkSpec, Modality, MultimodalDataset
from bench.data.formats.base import (REPRESENTATION_METRICS, DiskBenchmark, Layout, as_long, decode_images,
                                     find_base, missing_error, read_image, read_lines, root_field)
from bench.data.lazy import LazyImages, LazyInts
from bench.data.splits import split_seed
from bench.errors import DataError
from bench.registry import register_benchmark

TASKS = ("representation", "segmentation")
KVASIR_SIZE_BINS = (0.05, 0.15)  # polyp area fraction thresholds of the three size classes
VOC_CLASSES = 21
VOC_VOID = 255


def image_modality(size: int) -> Modality:
    return Modality("image", "image", (3, size, size), likelihood="gaussian")


def read_mask(path: Path, size: int, palette: bool) -> np.ndarray:
    """uint8 [1, size, size] class indices (nearest-neighbour resize, channel dim for decode_images)."""
    arr = read_image(path, size, mode="P" if palette else "L", nearest=True)
    return arr if arr.ndim == 3 else arr[None]


# --- Kvasir-SEG -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KvasirSegConfig:
    root: str | None = root_field()  # data root (default: $MMRL_DATA or ~/.mmrl-bench/data); not part of the run identity
    size: int = 64  # image and mask side
    test_fraction: float = 0.2  # the release has no split: this fraction of the names is the test split
    split_seed: int = 0  # which names are test


def stems(folder: Path) -> dict[str, str]:
    """{stem: file name} of the images in a folder."""
    return {os.path.splitext(n)[0]: n for n in os.listdir(folder)
            if n.lower().endswith((".jpg", ".jpeg", ".png"))}


@register_benchmark("kvasir-seg")
class KvasirSeg(DiskBenchmark):
    version = 1
    Config = KvasirSegConfig
    source = "Kvasir-SEG: datasets.simula.no/kvasir-seg (kvasir-seg.zip; research and educational use, cite Jha et al. 2020)"
    summary = "image 3x64x64, mask 64x64 (2 classes: background, polyp)"
    expected = {"images": 1000}
    decode_options = ("size",)

    def spec(self) -> BenchmarkSpec:
        s = self.cfg.size
        mods = (image_modality(s), Modality("mask", "mask", (s, s), n_classes=2))
        return BenchmarkSpec(self.name, mods, len(KVASIR_SIZE_BINS) + 1, TASKS, REPRESENTATION_METRICS + PREDICTION_METRICS + SEGMENTATION_METRICS)

    def layout(self) -> Layout:
        folder = self.folder
        base = find_base(folder, ("Kvasir-SEG",), lambda p: (p / "images").is_dir() or (p / "masks").is_dir())
        if base is None:
            raise missing_error(self.name, folder, ["images/*.jpg", "masks/*.jpg"], False, ())
        absent = [d + "/" for d in ("images", "masks") if not (base / d).is_dir()]
        if absent:
            raise missing_error(self.name, base, ["images/", "masks/"], True, absent)
        images, masks = stems(base / "images"), stems(base / "masks")
        if set(images) != set(masks):
            only_i, only_m = sorted(set(images) - set(masks)), sorted(set(masks) - set(images))
            what = f"image {images[only_i[0]]} has no mask" if only_i else f"mask {masks[only_m[0]]} has no image"
            raise DataError(f"{base / 'masks'}: {what} ({len(only_i)} images without a mask, {len(only_m)} masks "
                            "without an image); every image needs the mask of the same name")
        names = sorted(images)
        files = [base / "images" / images[n] for n in names] + [base / "masks" / masks[n] for n in names]
        return Layout("Kvasir-SEG release", base, tuple(files), {"names": names, "counts": {"images": len(names)}})

    def decode(self, layout: Layout) -> dict:
        s, names = self.cfg.size, layout.info["names"]
        half = len(names)
        images = decode_images(list(layout.files[:half]), (3, s, s), partial(read_image, size=s, mode="RGB"))
        masks = decode_images(list(layout.files[half:]), (1, s, s), partial(read_mask, size=s, palette=False))
        return {"images": images, "masks": (masks[:, 0] > 127).astype(np.uint8), "names": names}

    def assemble(self, arrays: dict) -> tuple[MultimodalDataset, MultimodalDataset]:
        mods = self.spec().modalities
        masks = np.asarray(arrays["masks"])
        area = masks.reshape(len(masks), -1).mean(1)
        labels = np.digitize(area, KVASIR_SIZE_BINS)
        n = len(masks)
        order = np.random.default_rng(split_seed("kvasir-seg split", self.cfg.split_seed)).permutation(n)
        n_test = int(round(self.cfg.test_fraction * n))
        if not 0 < n_test < n:
            raise DataError(f"{self.name}: test_fraction {self.cfg.test_fraction} leaves an empty split of {n} images")
        out = []
        for rows in (np.sort(order[n_test:]), np.sort(order[:n_test])):
            index = as_long(rows)
            data = {"image": LazyImages(arrays["images"], index), "mask": LazyInts(arrays["masks"], index)}
            out.append(MultimodalDataset.complete(mods, data, as_long(labels[rows]), {"source_index": as_long(rows)}))
        return out[0], out[1]


# --- PASCAL VOC 2012 --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Voc2012Config:
    root: str | None = root_field()  # data root (default: $MMRL_DATA or ~/.mmrl-bench/data); not part of the run identity
    size: int = 64  # image and mask side


VOC_PARTS = ("JPEGImages/", "SegmentationClass/", "ImageSets/Segmentation/train.txt",
             "ImageSets/Segmentation/val.txt")


@register_benchmark("voc-2012")
class Voc2012(DiskBenchmark):
    version = 1
    Config = Voc2012Config
    source = ("PASCAL VOC 2012: host.robots.ox.ac.uk/pascal/VOC/voc2012 (VOCtrainval_11-May-2012.tar; images under "
              "the Flickr terms of use)")
    summary = "image 3x64x64, mask 64x64 (21 classes)"
    expected = {"train": 1464, "test": 1449}
    decode_options = ("size",)

    def spec(self) -> BenchmarkSpec:
        s = self.cfg.size
        mods = (image_modality(s), Modality("mask", "mask", (s, s), n_classes=VOC_CLASSES))
        return BenchmarkSpec(self.name, mods, VOC_CLASSES, TASKS, REPRESENTATION_METRICS + PREDICTION_METRICS + SEGMENTATION_METRICS)

    def layout(self) -> Layout:
        folder = self.folder
        base = find_base(folder, ("VOCdevkit/VOC2012", "VOC2012"), lambda p: (p / "JPEGImages").is_dir())
        if base is None:
            raise missing_error(self.name, folder, VOC_PARTS, False, ())
        absent = [p for p in VOC_PARTS if not (base / p.rstrip("/")).exists()]
        if absent:
            raise missing_error(self.name, base, VOC_PARTS, True, absent)
        splits, files, lacking = {}, [], []
        for split, list_name in (("train", "train.txt"), ("test", "val.txt")):
            ids = [line.strip() for line in read_lines(base / "ImageSets" / "Segmentation" / list_name) if line.strip()]
            pairs = [(base / "JPEGImages" / f"{i}.jpg", base / "SegmentationClass" / f"{i}.png") for i in ids]
            for pair in pairs:
                for p in pair:
                    (files if p.is_file() else lacking).append(p)
            splits[split] = pairs
        if lacking:
            raise missing_error(self.name, base, VOC_PARTS, True, [
                f"{len(lacking)} file(s) of the segmentation lists, e.g. {lacking[0].relative_to(base)}"])
        counts = {s: len(p) for s, p in splits.items()}
        return Layout("VOC2012 segmentation", base, tuple(files), {"splits": splits, "counts": counts})

    def decode(self, layout: Layout) -> dict:
        s = self.cfg.size
        out = {}
        for split, pairs in layout.info["splits"].items():
            out[f"{split}_images"] = decode_images([p[0] for p in pairs], (3, s, s),
                                                   partial(read_image, size=s, mode="RGB"))
            masks = decode_images([p[1] for p in pairs], (1, s, s), partial(read_mask, size=s, palette=True))[:, 0]
            bad = (masks >= VOC_CLASSES) & (masks != VOC_VOID)
            if bad.any():
                i = int(np.flatnonzero(bad.any(axis=(1, 2)))[0])
                raise DataError(f"{pairs[i][1]}: class index {int(masks[i][bad[i]][0])}; VOC masks hold 0-20 and "
                                f"{VOC_VOID} (void)")
            masks[masks == VOC_VOID] = 0
            out[f"{split}_masks"] = masks
        return out

    def assemble(self, arrays: dict) -> tuple[MultimodalDataset, MultimodalDataset]:
        mods = self.spec().modalities
        out = []
        for split in ("train", "test"):
            masks = np.asarray(arrays[f"{split}_masks"])
            counts = np.stack([(masks == c).reshape(len(masks), -1).sum(1) for c in range(1, VOC_CLASSES)], axis=1)
            labels = np.where(counts.max(1) > 0, counts.argmax(1) + 1, 0) if len(masks) else np.zeros(0, np.int64)
            data = {"image": LazyImages(arrays[f"{split}_images"]), "mask": LazyInts(arrays[f"{split}_masks"])}
            out.append(MultimodalDataset.complete(mods, data, as_long(labels), {}))
        return out[0], out[1]
