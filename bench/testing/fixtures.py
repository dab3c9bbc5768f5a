"""Tiny datasets written in the exact on-disk formats of the paper datasets (docs/datasets.md "Fixture tests").

The readers' tests and ``python -m bench perf data`` write these into a temporary folder; nothing here is ever read
from or written to a real data root. Every writer uses the format's own library (PIL, scipy.io, numpy, torch, csv)
and returns what it wrote, so a test can compare a reader's output with the truth. Images carry a class-dependent
brightness plus noise, so that a model trained on them has something to learn.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def class_images(labels: Sequence[int], shape: tuple[int, ...], seed: int, n_classes: int = 10) -> np.ndarray:
    """uint8 [N, *shape]: noise around a brightness that grows with the class."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    base = (40 + 180 * labels / max(n_classes - 1, 1)).reshape(-1, *([1] * len(shape)))
    return np.clip(base + rng.normal(0, 20, (len(labels), *shape)), 0, 255).astype(np.uint8)


def save_image(path: Path, chw_or_hw: np.ndarray, fmt: str | None = None) -> None:
    from PIL import Image

    a = np.asarray(chw_or_hw, dtype=np.uint8)
    img = Image.fromarray(a if a.ndim == 2 else (a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)


def seed_of(*parts: object) -> int:
    """A seed that is the same in every process (``hash`` of a string is not)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def per_class(classes: Sequence[int], n: int) -> np.ndarray:
    return np.repeat(np.asarray(classes, dtype=np.int64), n)


# --- MNIST, SVHN and mmvae's index files -------------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    """The IDX format of the MNIST files: 0, 0, 0x08 (uint8), ndim, big-endian int32 dims, then the bytes."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    raw = bytes([0, 0, 8, a.ndim]) + np.array(a.shape, dtype=">i4").tobytes() + a.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def write_mnist(folder: Path, labels: dict[str, np.ndarray], kind: str = "raw", gz: bool = False) -> dict:
    """``MNIST/raw/*-ubyte`` (kind raw) or ``MNIST/processed/{training,test}.pt`` (kind processed)."""
    out = {}
    for split, y in labels.items():
        x = class_images(y, (28, 28), seed=len(y) + (split == "test"))
        if kind == "raw":
            prefix = "train" if split == "train" else "t10k"
            write_idx(folder / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte", x, gz)
            write_idx(folder / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte", np.asarray(y, np.uint8), gz)
        else:
            path = folder / "MNIST" / "processed" / ("training.pt" if split == "train" else "test.pt")
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save((torch.from_numpy(x), torch.from_numpy(np.asarray(y, np.int64))), path)
        out[split] = (x, np.asarray(y))
    return out


def write_svhn(folder: Path, labels: dict[str, np.ndarray], drop: str | None = None) -> dict:
    """``SVHN/{split}_32x32.mat`` with X (32,32,3,N) and y (N,1) using 10 for the digit 0 (``drop`` omits a key)."""
    import scipy.io

    out = {}
    for split, y in labels.items():
        y = np.asarray(y)
        x = class_images(y, (3, 32, 32), seed=7 + len(y))
        mat = {"X": x.transpose(2, 3, 1, 0), "y": np.where(y == 0, 10, y).reshape(-1, 1).astype(np.uint8)}
        if drop:
            mat.pop(drop)
        path = folder / "SVHN" / f"{split}_32x32.mat"
        path.parent.mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(path, mat)
        out[split] = (x, y)
    return out


def write_mmvae_index(folder: Path, split: str, mnist_idx: np.ndarray, svhn_idx: np.ndarray) -> None:
    torch.save(torch.as_tensor(mnist_idx, dtype=torch.long), folder / f"{split}-ms-mnist-idx.pt")
    torch.save(torch.as_tensor(svhn_idx, dtype=torch.long), folder / f"{split}-ms-svhn-idx.pt")


def write_mnist_svhn(folder: Path, classes=(0, 1, 2), n_mnist=(4, 2), n_svhn=(3, 2), kind: str = "raw") -> dict:
    """MNIST and SVHN with ``n`` images per class in (train, test)."""
    mnist = write_mnist(folder, {"train": per_class(classes, n_mnist[0]), "test": per_class(classes, n_mnist[1])},
                        kind)
    svhn = write_svhn(folder, {"train": per_class(classes, n_svhn[0]), "test": per_class(classes, n_svhn[1])})
    return {"mnist": mnist, "svhn": svhn}


# --- PolyMNIST --------------------------------------------------------------------------------------------------------
def write_polymnist_png(folder: Path, counts: dict[str, int], classes=(0, 1, 2), n_modalities: int = 5) -> dict:
    """``{split}/m{k}/{i}.{digit}.png`` with i restarting at 0 for every digit, as the generator writes them.

    Returns {split: {(i, digit): [uint8 [3,28,28] per modality]}}."""
    out: dict = {}
    for split, n in counts.items():
        out[split] = {}
        for digit in classes:
            for i in range(n):
                imgs = []
                for k in range(n_modalities):
                    img = class_images([digit], (3, 28, 28), seed=seed_of(split, digit, i, k))[0]
                    save_image(folder / split / f"m{k}" / f"{i}.{digit}.png", img)
                    imgs.append(img)
                out[split][i, digit] = imgs
    return out


def write_polymnist_tensors(folder: Path, counts: dict[str, int], classes=(0, 1, 2), n_modalities: int = 5) -> dict:
    """multivae's ``{split}/m{k}.pt`` (float [N,3,28,28] in [0,1]) and ``labels.pt``."""
    out = {}
    for split, n in counts.items():
        y = per_class(classes, n)
        d = folder / split
        d.mkdir(parents=True, exist_ok=True)
        mods = []
        for k in range(n_modalities):
            x = class_images(y, (3, 28, 28), seed=31 * k + len(y))
            torch.save(torch.from_numpy(x.astype(np.float32) / 255.0), d / f"m{k}.pt")
            mods.append(x)
        torch.save(torch.from_numpy(y), d / "labels.pt")
        out[split] = (mods, y)
    return out


# --- CUB ----------------------------------------------------------------------------------------------------------------
def cub_class_names(n: int, start: int = 1) -> list[str]:
    birds = ("Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross", "Groove_billed_Ani", "Crested_Auklet",
             "Least_Auklet", "Parakeet_Auklet", "Rhinoceros_Auklet")
    return [f"{start + i:03d}.{birds[(start + i - 1) % len(birds)]}" for i in range(n)]


def caption(class_name: str, image: int, k: int) -> str:
    bird = class_name.split(".", 1)[1].replace("_", " ").lower()
    colours = ("red", "blue", "brown", "white", "black")
    return f"this {bird} has a {colours[(image + k) % 5]} crown and {colours[k % 5]} wings number {image} {k}"


def write_cub_icc(folder: Path, train_classes: Sequence[str], test_classes: Sequence[str], n_per_class: int = 2,
                  size: int = 20) -> dict:
    """mmvae's ``cub/`` tree: ImageFolder class folders and 10 captions per image, one per line, in image order."""
    out = {}
    for split, classes, text in (("train", train_classes, "text_trainvalclasses.txt"),
                                 ("test", test_classes, "text_testclasses.txt")):
        lines, images = [], []
        for c_i, cname in enumerate(sorted(classes)):
            for j in range(n_per_class):
                img = class_images([c_i], (3, size, size * 4 // 3), seed=seed_of(split, cname, j), n_classes=4)[0]
                save_image(folder / split / cname / f"{cname.split('.')[1]}_{j:04d}.jpg", img)
                images.append((cname, j))
                lines += [caption(cname, len(images) - 1, k) for k in range(10)]
        (folder / text).write_text("\n".join(lines) + "\n")
        out[split] = {"images": images, "captions": lines}
    return out


def write_cubicc(folder: Path, n: int = 12, n_classes: int = 3, max_len: int = 32, vocab: int = 20,
                 one_hot: bool = False) -> dict:
    """CMVAE's ``CUBICC/`` files by their exact names: images.pt, captions.pt, labels.pt, the three split arrays and
    cub.vocab (plus the two label files the original loads but never uses)."""
    folder.mkdir(parents=True, exist_ok=True)
    y = np.arange(n) % n_classes
    x = class_images(y, (3, 64, 64), seed=n, n_classes=n_classes)
    rng = np.random.default_rng(0)
    caps = rng.integers(3, vocab, (n, max_len))
    torch.save(torch.from_numpy(x.astype(np.float32) / 255.0), folder / "images.pt")
    cap_t = torch.from_numpy(caps)
    torch.save(torch.nn.functional.one_hot(cap_t, vocab).float() if one_hot else cap_t, folder / "captions.pt")
    torch.save(torch.from_numpy(y), folder / "labels.pt")
    torch.save(torch.from_numpy(y), folder / "original_labels.pt")
    torch.save(torch.zeros(n, dtype=torch.long), folder / "train_test_labelling.pt")
    order = np.arange(n)
    n_test = max(n_classes, n // 4)
    split = {"train": order[: n - 2 * n_test], "validation": order[n - 2 * n_test : n - n_test],
             "test": order[n - n_test :]}
    for name, idx in split.items():
        np.save(folder / f"{name}_split.npy", idx)
    i2w = {str(i): w for i, w in enumerate(["<exc>", "<pad>", "<eos>"] + [f"w{i}" for i in range(3, vocab)])}
    (folder / "cub.vocab").write_text(json.dumps({"w2i": {w: int(i) for i, w in i2w.items()}, "i2w": i2w}))
    return {"images": x, "captions": caps, "labels": y, "split": split}


def write_cub200(folder: Path, n_classes: int = 2, n_per_class: int = 3, n_attributes: int = 312,
                 size: int = 20) -> dict:
    """The CUB-200-2011 release layout: images.txt, image_class_labels.txt, train_test_split.txt, classes.txt,
    images/<class>/<file>.jpg and attributes/image_attribute_labels.txt (one line per image and attribute)."""
    classes = cub_class_names(n_classes)
    rng = np.random.default_rng(1)
    images, labels, is_train = [], [], []
    for c, cname in enumerate(classes):
        for j in range(n_per_class):
            rel = f"{cname}/{cname.split('.')[1]}_{j:04d}_{100 + j}.jpg"
            save_image(folder / "images" / rel, class_images([c], (3, size, size * 4 // 3), seed=c * 100 + j, n_classes=4)[0])
            images.append(rel)
            labels.append(c + 1)
            is_train.append(int(j % 2 == 0))
    attrs = rng.integers(0, 2, (len(images), n_attributes))
    (folder / "classes.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    (folder / "images.txt").write_text("".join(f"{i + 1} {p}\n" for i, p in enumerate(images)))
    (folder / "image_class_labels.txt").write_text("".join(f"{i + 1} {y}\n" for i, y in enumerate(labels)))
    (folder / "train_test_split.txt").write_text("".join(f"{i + 1} {t}\n" for i, t in enumerate(is_train)))
    (folder / "attributes").mkdir(exist_ok=True)
    with open(folder / "attributes" / "image_attribute_labels.txt", "w") as f:
        for i in range(len(images)):
            for a in range(n_attributes):
                f.write(f"{i + 1} {a + 1} {attrs[i, a]} {1 + (a % 4)} {1.5 + a % 3:.3f}\n")
    return {"classes": classes, "images": images, "labels": np.array(labels) - 1, "is_train": np.array(is_train),
            "attributes": attrs}


# --- MedMNIST ------------------------------------------------------------------------------------------------------------
ORGAN_FLAGS = ("organamnist", "organcmnist", "organsmnist")


def write_medmnist(folder: Path, counts: dict[str, Sequence[int]], size: int = 28, drop: tuple[str, str] | None = None,
                   flags: Sequence[str] = ORGAN_FLAGS) -> dict:
    """``{flag}{size_flag}.npz`` with train/val/test images uint8 [N,H,W] and labels [N,1]; ``counts`` maps a split
    to the number of images per class (its length is the number of classes). ``drop=(flag, key)`` omits a key."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "" if size == 28 else f"_{size}"
    out = {}
    for v, flag in enumerate(flags):
        arrays = {}
        for split, per in counts.items():
            y = np.concatenate([np.full(n + v, c) for c, n in enumerate(per)]).astype(np.uint8)  # views differ in n
            arrays[f"{split}_images"] = class_images(y, (size, size), seed=v * 10 + len(y), n_classes=len(per))
            arrays[f"{split}_labels"] = y.reshape(-1, 1)
        if drop and drop[0] == flag:
            arrays.pop(drop[1])
        np.savez_compressed(folder / f"{flag}{suffix}.npz", **arrays)
        out[flag] = arrays
    return out


# --- MIMIC-CXR ------------------------------------------------------------------------------------------------------------
MIMIC_LABELS = ("Atelectasis", "Cardiomegaly", "Lung Opacity", "Pleural Effusion", "Support Devices", "No Finding")
CHEXPERT = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
            "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
            "Pneumothorax", "Support Devices")


def _write_csv_gz(path: Path, header: Sequence[str], rows: list[Sequence]) -> None:
    with gzip.open(path, "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_mimic_raw(folder: Path, studies: Sequence[dict] | None = None, size: tuple[int, int] = (40, 48)) -> list[dict]:
    """MIMIC-CXR-JPG ``files/p{xx}/p{subject}/s{study}/{dicom}.jpg`` with the metadata, chexpert and split CSVs
    (gzipped), and the reports as ``mimic-cxr-reports/files/p{xx}/p{subject}/s{study}.txt``.

    ``studies``: dicts with subject, study, split, labels (chexpert values by name: 1, 0, -1 or "" for blank) and
    views (list of ViewPosition); the default is two subjects with two studies each."""
    if studies is None:
        studies = [
            {"subject": 10000032, "study": 50414267, "split": "train", "views": ["PA", "LATERAL"],
             "labels": {"Cardiomegaly": 1, "Support Devices": 0}},
            {"subject": 10000032, "study": 53189527, "split": "train", "views": ["AP", "LATERAL", "LATERAL"],
             "labels": {"No Finding": 1}},
            {"subject": 10000764, "study": 57375967, "split": "test", "views": ["PA", "LL"],
             "labels": {"Pleural Effusion": 1, "Atelectasis": -1}},
            {"subject": 10000764, "study": 51234567, "split": "test", "views": ["PA"],  # no lateral: not a sample
             "labels": {"Edema": 1}},
        ]
    meta, split_rows, chex = [], [], []
    for s in studies:
        sub, stu = str(s["subject"]), str(s["study"])
        for j, view in enumerate(s["views"]):
            dicom = f"{stu[-4:]}{j:02d}ab-{sub[-4:]}cd-{view.lower()}"
            h, w = size if view in ("PA", "AP") else size[::-1]
            img = class_images([j], (h, w), seed=int(stu) % 1000 + j, n_classes=3)[0]
            save_image(folder / "files" / f"p{sub[:2]}" / f"p{sub}" / f"s{stu}" / f"{dicom}.jpg", img)
            meta.append([dicom, sub, stu, "CHEST", view, h, w])
            split_rows.append([dicom, stu, sub, s["split"]])
        chex.append([sub, stu] + [s["labels"].get(c, "") for c in CHEXPERT])
        report = folder / "mimic-cxr-reports" / "files" / f"p{sub[:2]}" / f"p{sub}" / f"s{stu}.txt"
        report.parent.mkdir(parents=True, exist_ok=True)
        found = ", ".join(k.lower() for k, v in s["labels"].items() if v == 1) or "nothing"
        report.write_text(f"FINAL REPORT\n EXAMINATION: CHEST (PA AND LAT)\n FINDINGS: there is {found}.\n"
                          f" IMPRESSION: study {stu}.\n")
    _write_csv_gz(folder / "mimic-cxr-2.0.0-metadata.csv.gz",
                  ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
                   "Columns"], meta)
    _write_csv_gz(folder / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id", "study_id", "subject_id", "split"], split_rows)
    _write_csv_gz(folder / "mimic-cxr-2.0.0-chexpert.csv.gz", ["subject_id", "study_id", *CHEXPERT], chex)
    return list(studies)


def write_mimic_tensors(folder: Path, counts: dict[str, int] | None = None, size: int = 32,
                        naming: str = "writer") -> dict:
    """MoPoE-MIMIC's tensorised splits: float [N,S,S] frontal and lateral tensors, findings, impressions and
    labels CSVs. ``naming="writer"``: ``{split}_pa{S}.pt`` beside the CSVs (create_tensor_dataset.py);
    ``naming="reader"``: ``files_small_{S}/{split}_pa.pt`` (MimicDataset.py)."""
    counts = counts or {"train": 6, "eval": 2, "test": 4}
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in counts.items():
        y = np.zeros((n, len(MIMIC_LABELS)), dtype=np.float32)
        y[np.arange(n), np.arange(n) % len(MIMIC_LABELS)] = 1.0
        cls = np.arange(n) % len(MIMIC_LABELS)
        pa = class_images(cls, (size, size), seed=n, n_classes=6).astype(np.float32) / 255.0
        lat = class_images(cls, (size, size), seed=n + 1, n_classes=6).astype(np.float32) / 255.0
        if naming == "writer":
            tdir, names = folder, (f"{split}_pa{size}.pt", f"{split}_lat{size}.pt")
        else:
            tdir, names = folder / f"files_small_{size}", (f"{split}_pa.pt", f"{split}_lat.pt")
        tdir.mkdir(parents=True, exist_ok=True)
        torch.save(torch.from_numpy(pa), tdir / names[0])
        torch.save(torch.from_numpy(lat), tdir / names[1])
        findings = [f"the heart shows {MIMIC_LABELS[c].lower()} case {i}" for i, c in enumerate(cls)]
        with open(folder / f"{split}_findings.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["", "findings"])
            w.writerows([[i, t] for i, t in enumerate(findings)])
        with open(folder / f"{split}_impressions.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["", "impression"])
            w.writerows([[i, f"impression {i}"] for i in range(n)])
        with open(folder / f"{split}_labels.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["", *MIMIC_LABELS])
            w.writerows([[i, *row] for i, row in enumerate(y.tolist())])
        out[split] = {"pa": pa, "lat": lat, "labels": y, "findings": findings}
    return out


# --- segmentation -----------------------------------------------------------------------------------------------------
def write_kvasir(folder: Path, n: int = 10, size: tuple[int, int] = (40, 48)) -> list[str]:
    """Kvasir-SEG's ``images/*.jpg`` and ``masks/*.jpg`` (white polyp on black) of the same names."""
    rng = np.random.default_rng(3)
    names = []
    for i in range(n):
        name = f"cju{i:04d}abc{rng.integers(1000, 9999)}"
        h, w = size
        img = class_images([i % 3], (3, h, w), seed=i, n_classes=3)
        mask = np.zeros((h, w), np.uint8)
        r = 3 + (i % 3) * 6  # polyp radius grows with i % 3
        yy, xx = np.ogrid[:h, :w]
        mask[(yy - h // 2) ** 2 + (xx - w // 2) ** 2 <= r * r] = 255
        save_image(folder / "images" / f"{name}.jpg", img[0])
        save_image(folder / "masks" / f"{name}.jpg", mask)
        names.append(name)
    return names


VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128, 128, 0, 128, 0, 128, 128, 128, 128, 128]


def write_voc(folder: Path, train: int = 4, val: int = 3, size: tuple[int, int] = (30, 40)) -> dict:
    """``VOCdevkit/VOC2012/`` with JPEGImages/, SegmentationClass/ (palette PNGs: class indices, 255 = void) and
    ImageSets/Segmentation/{train,val}.txt."""
    from PIL import Image

    base = folder / "VOCdevkit" / "VOC2012"
    (base / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    out = {}
    k = 0
    for split, n in (("train", train), ("val", val)):
        ids = []
        for i in range(n):
            img_id = f"2007_{k:06d}"
            k += 1
            h, w = size
            cls = 1 + k % 3
            mask = np.zeros((h, w), np.uint8)
            mask[5:20, 5:25] = cls
            mask[4, 4:26] = 255  # a void border, as VOC draws around objects
            img = class_images([cls], (3, h, w), seed=k, n_classes=4)[0]
            save_image(base / "JPEGImages" / f"{img_id}.jpg", img)
            m = Image.frombytes("P", (w, h), mask.tobytes())
            m.putpalette(VOC_PALETTE)
            (base / "SegmentationClass").mkdir(parents=True, exist_ok=True)
            m.save(base / "SegmentationClass" / f"{img_id}.png")
            ids.append((img_id, cls))
        (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{i}\n" for i, _ in ids))
        out[split] = ids
    return out
