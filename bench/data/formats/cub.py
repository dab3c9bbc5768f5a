"""The three CUB benchmarks (docs/datasets.md §1.4 and the CUB-200-2011 release).

``cub-icc``, mmvae's CUB Image-Captions, under ``<root>/cub-icc/`` (or ``cub-icc/cub/``)::

    text_trainvalclasses.txt, text_testclasses.txt      one lower-case caption per line, 10 per image
    train/<NNN.Class_Name>/*.jpg, test/<NNN.Class_Name>/*.jpg   class-disjoint ImageFolder trees

Images are taken in torchvision ImageFolder order (class folders sorted, files sorted) and resized to 64x64; caption
k describes image k // 10, so a split has 10 x n_images rows and its image tensor holds each image 10 times
(``extras["image_index"]`` keeps k // 10). A caption file must hold exactly 10 x n_images lines. Tokenisation is
offline (no NLTK data): split on lines, words by :func:`bench.data.text.words`; the vocabulary comes from the train
captions only, keeping words seen more than ``min_occ`` times, with ``<exc>=0, <pad>=1, <eos>=2`` and
``max_len`` 32 (31 words, ``<eos>``, padding). NLTK's tokeniser splits a few words differently, so the vocabulary
size can differ a little from mmvae's 1590. Labels are the class's index among all class folders of both splits (its
NNN - 1 on the real data); the test classes never occur in training, so the default metrics are the ones that need
no train-to-test label transfer.

``cubicc``, CMVAE's CUBICC, under ``<root>/cubicc/`` (or ``cubicc/CUBICC/``): ``images.pt`` [N,3,64,64],
``captions.pt`` [N,L] token ids or [N,L,V] one-hot, ``labels.pt`` [N], ``{train,validation,test}_split.npy`` index
arrays and, optionally, ``cub.vocab`` (JSON ``{w2i, i2w}``). Every size (samples, caption length, vocabulary, number
of classes) is taken from the files, since none is documented.

``cub-200``, CUB-200-2011 for classification, under ``<root>/cub-200/`` (or ``cub-200/CUB_200_2011/``):
``images.txt``, ``image_class_labels.txt``, ``train_test_split.txt``, ``classes.txt``, ``images/`` and
``attributes/image_attribute_labels.txt``. Modalities: the image, its 312 binary attributes, and the class name
as text (CM-GLasso's class-description modality). The split is the official one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from bench.data.contracts import PREDICTION_METRICS, BenchmarkSpec, Modality, MultimodalDataset
from bench.data.embedded.digits_ms import PAIRED_TASKS, paired_metrics
from bench.data.formats.base import (REPRESENTATION_METRICS, DiskBenchmark, Layout, as_long, decode_images,
                                     find_base, float_to_u8, image_files, missing_error, pt_array, read_image,
                                     read_lines, root_field)
from bench.data.lazy import LazyImages, narrow_ints
from bench.data.text import Vocabulary
from bench.errors import DataError
from bench.registry import register_benchmark

CAPTIONS_PER_IMAGE = 10
CAPTION_FILES = {"train": "text_trainvalclasses.txt", "test": "text_testclasses.txt"}
CUB_SOURCE = "CUB-200-2011: data.caltech.edu/records/65de6-vjr04 (non-commercial research and educational use)"


def class_folders(split_dir: Path) -> list[str]:
    return sorted(d for d in os.listdir(split_dir) if (split_dir / d).is_dir())


def imagefolder(split_dir: Path) -> tuple[list[Path], list[str]]:
    """(files, class name per file) in torchvision ImageFolder's order: class folders sorted, then files sorted."""
    files, classes = [], []
    for cname in class_folders(split_dir):
        found = image_files(split_dir / cname)
        files += found
        classes += [cname] * len(found)
    return files, classes


# --- cub-icc -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CubIccConfig:
    root: str | None = root_field()  # data root (default: $MMRL_DATA or ~/.mmrl-bench/data); not part of the run identity
    size: int = 64  # image side (mmvae: 64)
    max_len: int = 32  # caption tokens, <eos> included (mmvae: 32)
    min_occ: int = 3  # a word is kept if it occurs more than min_occ times in the train captions (mmvae: 3)


@register_benchmark("cub-icc")
class CubIcc(DiskBenchmark):
    version = 1
    Config = CubIccConfig
    source = ("CUB Image-Captions: cub.zip from the MMVAE authors' page linked in the iffsid/mmvae README "
              "(captions of Reed et al. 2016; images from " + CUB_SOURCE + ")")
    summary = "image 3x64x64, caption 32 tokens (10 captions per image, class-disjoint split)"
    expected = {"train images": None, "test images": None}
    decode_options = ("size",)

    def layout(self) -> Layout:
        folder = self.folder
        parts = [*CAPTION_FILES.values(), "train/", "test/"]
        base = find_base(folder, ("cub",), lambda p: any((p / x.rstrip("/")).exists() for x in parts))
        if base is None:
            raise missing_error(self.name, folder, parts, False, ())
        absent = [x for x in parts if not (base / x.rstrip("/")).exists()]
        if absent:
            raise missing_error(self.name, base, parts, True, absent)
        info: dict = {"splits": {}, "counts": {}}
        files: list[Path] = []
        for s, text in CAPTION_FILES.items():
            images, classes = imagefolder(base / s)
            n_captions = len(read_lines(base / text))
            if n_captions != CAPTIONS_PER_IMAGE * len(images):
                raise DataError(f"{base / text}: {n_captions} caption lines for {len(images)} images in {s}/; "
                                f"CUB-ICC has exactly {CAPTIONS_PER_IMAGE} captions per image, one per line "
                                "(caption k describes image k // 10)")
            info["splits"][s] = (images, classes)
            info["counts"][f"{s} images"] = len(images)
            files += images + [base / text]
        info["classes"] = sorted(set(info["splits"]["train"][1]) | set(info["splits"]["test"][1]))
        overlap = sorted(set(info["splits"]["train"][1]) & set(info["splits"]["test"][1]))
        if overlap:
            raise DataError(f"{base}: class {overlap[0]} is in both train/ and test/; CUB-ICC's split is by class")
        return Layout("image folders + caption files", base, tuple(files), info)

    def decode(self, layout: Layout) -> dict:
        size = self.cfg.size
        index = {c: i for i, c in enumerate(layout.info["classes"])}
        out: dict = {"classes": layout.info["classes"]}
        for s, (images, classes) in layout.info["splits"].items():
            out[f"{s}_images"] = decode_images(images, (3, size, size), partial(read_image, size=size, mode="RGB"))
            out[f"{s}_labels"] = np.array([index[c] for c in classes], dtype=np.int64)
            out[f"{s}_captions"] = read_lines(layout.base / CAPTION_FILES[s])
        return out

    def assemble(self, arrays: dict) -> tuple[MultimodalDataset, MultimodalDataset]:
        vocab = Vocabulary.build(arrays["train_captions"], min_count=self.cfg.min_occ + 1)
        image = Modality("image", "image", (3, self.cfg.size, self.cfg.size), likelihood="gaussian")
        text = Modality("caption", "text", (self.cfg.max_len,), vocab_size=len(vocab), vocab=vocab.itos)
        out = []
        for s in ("train", "test"):
            rep = torch.arange(len(arrays[f"{s}_labels"])).repeat_interleave(CAPTIONS_PER_IMAGE)
            data = {"image": LazyImages(arrays[f"{s}_images"], rep),  # each image read once per caption, not copied
                    "caption": narrow_ints(vocab.encode(arrays[f"{s}_captions"], self.cfg.max_len))}
            labels = as_long(arrays[f"{s}_labels"])[rep]
            out.append(MultimodalDataset.complete((image, text), data, labels, {"image_index": rep}))
        return out[0], out[1]

    def make_spec(self, train: MultimodalDataset, arrays: dict) -> BenchmarkSpec:
        # the test classes are unseen in training: no probe (train -> test labels), only within-test structure
        metrics = ("retrieval_class_p10", "kmeans_nmi", "kmeans_ari", "modality_class_distance")
        return BenchmarkSpec(self.name, train.modalities, len(arrays["classes"]), PAIRED_TASKS, metrics)


# --- cubicc --------------------------------------------------------------------------------------------------------
CUBICC_FILES = ("images.pt", "captions.pt", "labels.pt", "train_split.npy", "validation_split.npy", "test_split.npy")


@dataclass(frozen=True)
class CubiccConfig:
    root: str | None = root_field()  # data root (default: $MMRL_DATA or ~/.mmrl-bench/data); not part of the run identity


def read_split(path: Path, n: int) -> np.ndarray:
    try:
        idx = np.load(path, allow_pickle=False).reshape(-1)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the index array ({e})") from None
    if not np.issubdtype(idx.dtype, np.integer):
        raise DataError(f"{path}: index array of dtype {idx.dtype}; expected integers")
    if len(idx) and (idx.min() < 0 or idx.max() >= n):
        raise DataError(f"{path}: indices in [{idx.min()}, {idx.max()}] but labels.pt has {n} samples")
    return idx.astype(np.int64)


@register_benchmark("cubicc")
class Cubicc(DiskBenchmark):
    version = 1
    Config = CubiccConfig
    source = ("CUBICC: the files of srl-ethz/mmvaeplus src/dataset_CUBICC.py (CMVAE, Palumbo et al.); built from "
              + CUB_SOURCE)
    summary = "image 3x64x64, caption (length and vocabulary from the files)"
    expected = {"train": None, "validation": None, "test": None}

    def layout(self) -> Layout:
        folder = self.folder
        base = find_base(folder, ("CUBICC",), lambda p: any((p / f).is_file() for f in CUBICC_FILES))
        if base is None:
            raise missing_error(self.name, folder, CUBICC_FILES, False, ())
        absent = [f for f in CUBICC_FILES if not (base / f).is_file()]
        if absent:
            raise missing_error(self.name, base, CUBICC_FILES, True, absent)
        files = [base / f for f in CUBICC_FILES] + ([base / "cub.vocab"] if (base / "cub.vocab").is_file() else [])
        return Layout("CUBICC tensors", base, tuple(files))

    def counts(self, layout: Layout) -> dict[str, int]:
        out = {}
        for s in ("train", "validation", "test"):
            try:
                out[s] = int(np.load(layout.base / f"{s}_split.npy", mmap_mode="r").size)
            except (OSError, ValueError) as e:
                raise DataError(f"{layout.base / f'{s}_split.npy'}: cannot read the index array ({e})") from None
        return out

    def decode(self, layout: Layout) -> dict:
        base = layout.base
        labels = pt_array(base / "labels.pt", "labels [N]").reshape(-1)
        n = len(labels)
        images = pt_array(base / "images.pt", "images [N,3,64,64]")
        if images.ndim != 4 or images.shape[1] != 3 or len(images) != n:
            raise DataError(f"{base / 'images.pt'}: shape {images.shape}; expected [{n}, 3, H, W] (labels.pt has {n})")
        caps = pt_array(base / "captions.pt", "captions [N,L] or one-hot [N,L,V]")
        if caps.ndim == 3:  # one-hot captions ([128,32,1590] batches in the CMVAE code)
            vocab_size = caps.shape[2]
            caps = caps.argmax(axis=2)
        elif caps.ndim == 2:
            vocab_size = 0
        else:
            raise DataError(f"{base / 'captions.pt'}: shape {caps.shape}; expected [N, L] ids or [N, L, V] one-hot")
        if len(caps) != n:
            raise DataError(f"{base / 'captions.pt'}: {len(caps)} captions but labels.pt has {n} samples")
        caps = caps.astype(np.int64)
        itos = self._vocab(base / "cub.vocab")
        vocab_size = max(vocab_size, len(itos), int(caps.max()) + 1 if caps.size else 0)
        if caps.size and caps.min() < 0:
            raise DataError(f"{base / 'captions.pt'}: negative token id {caps.min()}")
        splits = {s: read_split(base / f"{s}_split.npy", n) for s in ("train", "validation", "test")}
        both = np.intersect1d(splits["train"], splits["test"])
        if both.size:
            raise DataError(f"{base / 'test_split.npy'}: {both.size} samples also in train_split.npy (e.g. {both[0]})")
        return {"images": float_to_u8(images, base / "images.pt"), "captions": caps, "labels": labels.astype(np.int64),
                "train_idx": splits["train"], "test_idx": splits["test"], "vocab_size": np.array([vocab_size]),
                "itos": itos}

    @staticmethod
    def _vocab(path: Path) -> list[str]:
        """The words of ``cub.vocab`` by index (``{"w2i": ..., "i2w": {"0": word}}``), or [] without the file."""
        if not path.is_file():
            return []
        try:
            i2w = json.loads(path.read_text())["i2w"]
            return [i2w[str(i)] for i in range(len(i2w))]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path}: not a vocabulary file ({type(e).__name__}: {e}); expected JSON with w2i and "
                            "i2w") from None

    def assemble(self, arrays: dict) -> tuple[MultimodalDataset, MultimodalDataset]:
        classes, labels = np.unique(np.asarray(arrays["labels"]), return_inverse=True)
        images = np.asarray(arrays["images"])
        size = images.shape[-1]
        image = Modality("image", "image", (3, images.shape[-2], size), likelihood="gaussian")
        itos = tuple(arrays["itos"]) or None
        caption = Modality("caption", "text", (arrays["captions"].shape[1],), vocab_size=int(arrays["vocab_size"][0]),
                           vocab=itos)
        out = []
        for s in ("train", "test"):
            idx = np.asarray(arrays[f"{s}_idx"])
            data = {"image": LazyImages(arrays["images"], as_long(idx)),
                    "caption": narrow_ints(np.asarray(arrays["captions"])[idx])}
            out.append(MultimodalDataset.complete((image, caption), data, as_long(labels[idx]),
                                                  {"source_index": as_long(idx),
                                                   "original_label": as_long(np.asarray(arrays["labels"])[idx])}))
        return out[0], out[1]

    def make_spec(self, train: MultimodalDataset, arrays: dict) -> BenchmarkSpec:
        n_classes = len(np.unique(np.asarray(arrays["labels"])))
        return BenchmarkSpec(self.name, train.modalities, n_classes, PAIRED_TASKS, paired_metrics("instance"))


# --- cub-200 -------------------------------------------------------------------------------------------------------
CUB200_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt",
                "attributes/image_attribute_labels.txt", "images/")
N_ATTRIBUTES = 312


@dataclass(frozen=True)
class Cub200Config:
    root: str | None = root_field()  # data root (default: $MMRL_DATA or ~/.mmrl-bench/data); not part of the run identity
    size: int = 64  # image side
    text_len: int = 8  # class-name tokens, <eos> included


def read_id_table(path: Path, columns: int) -> dict[int, list[str]]:
    """``<id> <value>...`` lines -> {id: values}; a malformed line is an error naming the file and line."""
    out = {}
    for n, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=columns)
        if len(parts) < columns + 1 or not parts[0].isdigit():
            raise DataError(f"{path}:{n}: expected '<id>' and {columns} value(s), got {line!r}")
        out[int(parts[0])] = parts[1 : columns + 1]
    return out


def class_text(class_folder: str) -> str:
    """``001.Black_footed_Albatross`` -> ``black footed albatross``."""
    return class_folder.split(".", 1)[-1].replace("_", " ").lower()


@register_benchmark("cub-200")
class Cub200(DiskBenchmark):
    version = 1
    Config = Cub200Config
    source = CUB_SOURCE
    summary = "image 3x64x64, attributes vector 312, class name as text"
    expected = {"train": 5994, "test": 5794}
    decode_options = ("size",)

    def layout(self) -> Layout:
        folder = self.folder
        base = find_base(folder, ("CUB_200_2011",), lambda p: (p / "images.txt").is_file() or (p / "images").is_dir())
        if base is None:
            raise missing_error(self.name, folder, CUB200_FILES, False, ())
        absent = [f for f in CUB200_FILES if not (base / f.rstrip("/")).exists()]
        if absent:
            raise missing_error(self.name, base, CUB200_FILES, True, absent)
        images = read_id_table(base / "images.txt", 1)
        labels = read_id_table(base / "image_class_labels.txt", 1)
        split = read_id_table(base / "train_test_split.txt", 1)
        classes = read_id_table(base / "classes.txt", 1)
        ids = sorted(images)
        for path, table in ((base / "image_class_labels.txt", labels), (base / "train_test_split.txt", split)):
            lacking = [i for i in ids if i not in table]
            if lacking:
                raise DataError(f"{path}: no line for {len(lacking)} image id(s) of images.txt (e.g. {lacking[0]})")
        paths = [base / "images" / images[i][0] for i in ids]
        absent = [p for p in paths if not p.is_file()]
        if absent:
            raise missing_error(self.name, base, CUB200_FILES, True,
                                [f"{len(absent)} image(s) listed in images.txt, e.g. {absent[0].relative_to(base)}"])
        is_train = np.array([int(split[i][0]) for i in ids])
        info = {"ids": ids, "paths": paths, "labels": [int(labels[i][0]) for i in ids], "is_train": is_train,
                "classes": {int(k): v[0] for k, v in classes.items()},
                "counts": {"train": int(is_train.sum()), "test": int((is_train == 0).sum())}}
        txt = [base / f for f in CUB200_FILES if not f.endswith("/")]
        return Layout("CUB-200-2011 release", base, tuple(txt + paths), info)

    def decode(self, layout: Layout) -> dict:
        info, size = layout.info, self.cfg.size
        bad = [y for y in info["labels"] if y not in info["classes"]]
        if bad:
            raise DataError(f"{layout.base / 'image_class_labels.txt'}: class id {bad[0]} is not in classes.txt")
        return {"images": decode_images(info["paths"], (3, size, size), partial(read_image, size=size, mode="RGB")),
                "labels": np.array(info["labels"], dtype=np.int64) - 1,
                "is_train": info["is_train"].astype(np.int64),
                "attributes": read_attributes(layout.base / "attributes" / "image_attribute_labels.txt", info["ids"]),
                "class_names": [info["classes"][c] for c in sorted(info["classes"])]}

    def assemble(self, arrays: dict) -> tuple[MultimodalDataset, MultimodalDataset]:
        names = list(arrays["class_names"])
        texts = [class_text(c) for c in names]
        labels = np.asarray(arrays["labels"])
        train_rows = np.flatnonzero(np.asarray(arrays["is_train"]) == 1)
        vocab = Vocabulary.build([texts[y] for y in labels[train_rows]])
        image = Modality("image", "image", (3, self.cfg.size, self.cfg.size), likelihood="gaussian")
        attrs = Modality("attributes", "vector", (N_ATTRIBUTES,), likelihood="bernoulli")
        text = Modality("class_text", "text", (self.cfg.text_len,), vocab_size=len(vocab), vocab=vocab.itos)
        encoded = vocab.encode(texts, self.cfg.text_len)
        out = []
        for flag in (1, 0):
            rows = np.flatnonzero(np.asarray(arrays["is_train"]) == flag)
            data = {"image": LazyImages(arrays["images"], as_long(rows)),
                    "attributes": torch.from_numpy(np.asarray(arrays["attributes"])[rows].astype(np.float32)),
                    "class_text": encoded[as_long(labels[rows])]}
            out.append(MultimodalDataset.complete((image, attrs, text), data, as_long(labels[rows]),
                                                  {"source_index": as_long(rows)}))
        return out[0], out[1]

    def make_spec(self, train: MultimodalDataset, arrays: dict) -> BenchmarkSpec:
        return BenchmarkSpec(self.name, train.modalities, len(arrays["class_names"]),
                             ("representation", "classification", "retrieval"),
                             REPRESENTATION_METRICS + PREDICTION_METRICS + ("retrieval_class_p10",))


def read_attributes(path: Path, ids: list[int]) -> np.ndarray:
    """uint8 [N, 312]: ``<image_id> <attribute_id> <is_present> <certainty_id> <time>`` lines, every (image,
    attribute) exactly once. Only the first three fields are read (a few lines of the release carry extra ones)."""
    row = {i: r for r, i in enumerate(ids)}
    out = np.zeros((len(ids), N_ATTRIBUTES), dtype=np.uint8)
    seen = np.zeros((len(ids), N_ATTRIBUTES), dtype=bool)
    for n, line in enumerate(read_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            img, attr, present = int(parts[0]), int(parts[1]), int(parts[2])
        except (ValueError, IndexError):
            raise DataError(f"{path}:{n}: expected '<image_id> <attribute_id> <is_present> ...', got {line!r}") from None
        if img not in row or not 1 <= attr <= N_ATTRIBUTES or present not in (0, 1):
            raise DataError(f"{path}:{n}: image {img}, attribute {attr}, value {present}; expected an image id of "
                            f"images.txt, an attribute in 1..{N_ATTRIBUTES} and 0 or 1")
        out[row[img], attr - 1] = present
        seen[row[img], attr - 1] = True
    if not seen.all():
        r, a = np.argwhere(~seen)[0]
        raise DataError(f"{path}: no line for image {ids[r]}, attribute {a + 1} ({int((~seen).sum())} (image, "
                        f"attribute) pairs missing); every image has all {N_ATTRIBUTES} attributes")
    return out
