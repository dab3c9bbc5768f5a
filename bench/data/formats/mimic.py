"""``mimic-cxr``: a frontal and a lateral chest X-ray of one study and its report (docs/datasets.md §1.6).

MIMIC-CXR is credentialed (PhysioNet): no copy can exist in CI, so the reader is tested on fixtures only. Two
on-disk variants, under ``<root>/mimic-cxr/``:

* **MIMIC-CXR-JPG** as released: ``files/p{xx}/p{subject}/s{study}/{dicom}.jpg`` with
  ``mimic-cxr-2.0.0-{metadata,chexpert,split}.csv[.gz]``, plus the reports of MIMIC-CXR (a separate release) as
  ``mimic-cxr-reports/files/p{xx}/p{subject}/s{study}.txt`` (or ``files/p{xx}/p{subject}/s{study}.txt``). A sample is
  a study with a frontal image (ViewPosition PA, else AP) and a lateral one (LATERAL, else LL), the first by
  dicom_id when there are several, a CheXpert label row and a report. As in MoPoE-MIMIC, studies with an uncertain
  (-1) Lung Opacity, Pleural Effusion or Support Devices are left out; other uncertain or blank labels count as
  negative. Images are centre-cropped to a square and resized; the split is the official patient-disjoint one
  (``validate`` is not used). An image or report that the CSVs select but the folder lacks is an error, never a
  smaller dataset.
* **MoPoE-MIMIC tensors**, under either naming scheme of that repository: ``{split}_pa{S}.pt`` /
  ``{split}_lat{S}.pt`` (create_tensor_dataset.py) or ``files_small_{S}/{split}_pa.pt`` / ``{split}_lat.pt``
  (MimicDataset.py), float [N,S,S], with ``{split}_findings.csv`` (column ``findings``) and ``{split}_labels.csv``,
  for ``train``, ``eval`` and ``test`` (``eval`` is not used). The text is the findings.

Labels: the six MoPoE-MIMIC columns as a multi-hot ``extras["multi_label"]`` [N, 6]. The probes and clustering need
one class per sample, so ``labels`` is the first positive finding in column order (Atelectasis, Cardiomegaly, Lung
Opacity, Pleural Effusion, Support Devices), or 5 (No Finding) when none is. Text is word-tokenised CUB-style with
a vocabulary from the train reports.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from bench.data.contracts import PREDICTION_METRICS, BenchmarkSpec, Modality, MultimodalDataset
from bench.data.formats.base import (REPRESENTATION_METRICS, DiskBenchmark, Layout, as_long, decode_images,
                                     find_base, float_to_u8, missing_error, pt_array, read_csv, read_image,
                                     resize_u8, root_field, with_gz)
from bench.data.lazy import LazyImages, narrow_ints
from bench.data.text import Vocabulary
from bench.errors import DataError
from bench.registry import register_benchmark

LABELS = ("Atelectasis", "Cardiomegaly", "Lung Opacity", "Pleural Effusion", "Support Devices", "No Finding")
NO_FINDING = 5
DROP_UNCERTAIN = ("Lung Opacity", "Pleural Effusion", "Support Devices")  # MoPoE-MIMIC drops -1 in these
CSVS = {k: f"mimic-cxr-2.0.0-{k}.csv" for k in ("metadata", "chexpert", "split")}
FRONTAL, LATERAL = ("PA", "AP"), ("LATERAL", "LL")
TENSOR_SPLITS = {"train": "train", "test": "test"}  # engine split -> MoPoE-MIMIC file prefix (eval unused)


def single_label(multi: np.ndarray) -> np.ndarray:
    """The first positive finding in column order, else NO_FINDING."""
    findings = multi[:, :NO_FINDING] > 0
    return np.where(findings.any(1), findings.argmax(1), NO_FINDING).astype(np.int64)


def label_value(raw: str, path: Path, column: str) -> float:
    raw = (raw or "").strip()
    if raw == "":
        return 0.0
    try:
        return float(raw)
    except ValueError:
        raise DataError(f"{path}: {column} value {raw!r}; expected 1, 0, -1 or blank") from None


def clean_report(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# --- the raw MIMIC-CXR-JPG tree --------------------------------------------------------------------------------------
def pick(views: list[tuple[str, str]], wanted: tuple[str, ...]) -> str | None:
    """The dicom of the first wanted view position present (lowest dicom_id among equals)."""
    for view in wanted:
        found = sorted(d for d, v in views if v == view)
        if found:
            return found[0]
    return None


def raw_studies(base: Path, csvs: dict[str, Path]) -> dict:
    """The usable studies of the raw release per split: paths, multi-hot labels, ids (see the module docstring)."""
    meta = read_csv(csvs["metadata"], ("dicom_id", "subject_id", "study_id", "ViewPosition"))
    split_rows = read_csv(csvs["split"], ("dicom_id", "study_id", "subject_id", "split"))
    chex = read_csv(csvs["chexpert"], ("subject_id", "study_id", *LABELS))
    split_of = {r["dicom_id"]: r["split"] for r in split_rows}
    labels = {r["study_id"]: r for r in chex}
    views: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for r in meta:
        views[r["subject_id"], r["study_id"]].append((r["dicom_id"], (r["ViewPosition"] or "").upper()))
    reports_base = base / "mimic-cxr-reports" if (base / "mimic-cxr-reports").is_dir() else base
    out: dict = {"train": [], "test": []}
    for (subject, study), vs in sorted(views.items()):
        frontal, lateral = pick(vs, FRONTAL), pick(vs, LATERAL)
        row = labels.get(study)
        if frontal is None or lateral is None or row is None:
            continue
        values = [label_value(row[c], csvs["chexpert"], c) for c in LABELS]
        if any(values[LABELS.index(c)] == -1 for c in DROP_UNCERTAIN):
            continue
        splits = {split_of.get(frontal), split_of.get(lateral)}
        if None in splits:
            raise DataError(f"{csvs['split']}: no split for dicom {frontal if split_of.get(frontal) is None else lateral}"
                            f" of study {study}")
        if len(splits) > 1:
            raise DataError(f"{csvs['split']}: the images of study {study} are in different splits {sorted(splits)}")
        split = splits.pop()
        if split not in out:
            continue  # validate
        folder = base / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
        report = reports_base / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
        out[split].append({"frontal": folder / f"{frontal}.jpg", "lateral": folder / f"{lateral}.jpg",
                           "report": report, "labels": [1.0 if v == 1 else 0.0 for v in values],
                           "study": int(study), "subject": int(subject)})
    return out


# --- MoPoE-MIMIC tensors --------------------------------------------------------------------------------------------
def tensor_files(base: Path, size: int) -> tuple[int, dict[str, dict[str, Path]]] | None:
    """(S, {split: {pa, lat, findings, labels}}) for the first size with a train frontal tensor, preferring ``size``,
    under either naming scheme; None when there is none."""
    sizes = {size}
    sizes |= {int(m.group(1)) for p in base.glob("train_pa*.pt") if (m := re.fullmatch(r"train_pa(\d+)\.pt", p.name))}
    sizes |= {int(m.group(1)) for p in base.glob("files_small_*") if (m := re.fullmatch(r"files_small_(\d+)", p.name))}
    for s in sorted(sizes, key=lambda s: (s != size, -s)):
        for tdir, pa, lat in ((base, "{}_pa%d.pt" % s, "{}_lat%d.pt" % s),
                              (base / f"files_small_{s}", "{}_pa.pt", "{}_lat.pt")):
            if not (tdir / pa.format("train")).is_file():
                continue
            out = {}
            for split, prefix in TENSOR_SPLITS.items():
                csv_dir = tdir if (tdir / f"{prefix}_labels.csv").is_file() else base
                out[split] = {"pa": tdir / pa.format(prefix), "lat": tdir / lat.format(prefix),
                              "findings": csv_dir / f"{prefix}_findings.csv", "labels": csv_dir / f"{prefix}_labels.csv"}
            return s, out
    return None


def read_tensor_split(files: dict[str, Path], size: int) -> dict:
    pa, lat = (pt_array(files[k], "images [N,S,S]") for k in ("pa", "lat"))
    n = len(pa)
    for key, x in (("pa", pa), ("lat", lat)):
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 3 or len(x) != n:
            raise DataError(f"{files[key]}: shape {x.shape}; expected [{n}, S, S] like {files['pa'].name}")
    findings = read_csv(files["findings"], ("findings",))
    labels = read_csv(files["labels"], LABELS)
    for key, rows in (("findings", findings), ("labels", labels)):
        if len(rows) != n:
            raise DataError(f"{files[key]}: {len(rows)} rows for {n} images in {files['pa'].name}")
    multi = np.array([[1.0 if label_value(r[c], files["labels"], c) == 1 else 0.0 for c in LABELS] for r in labels],
                     dtype=np.float32)
    as_images = lambda x, path: resize_u8(float_to_u8(x.reshape(len(x), 1, *x.shape[-2:]), path), size)  # noqa: E731
    return {"frontal": as_images(pa, files["pa"]), "lateral": as_images(lat, files["lat"]), "labels": multi,
            "text": [clean_report(r["findings"] or "") for r in findings], "study": np.arange(n, dtype=np.int64)}


@dataclass(frozen=True)
class MimicCxrConfig:
    root: str | None = root_field()  # data root (default: $MMRL_DATA or ~/.mmrl-bench/data); not part of the run identity
    size: int = 64  # image side
    text_len: int = 128  # report tokens, <eos> included
    min_count: int = 3  # a word is in the vocabulary if it occurs at least this often in the train reports


@register_benchmark("mimic-cxr")
class MimicCxr(DiskBenchmark):
    version = 1
    Config = MimicCxrConfig
    source = ("MIMIC-CXR-JPG 2.1.0 (physionet.org/content/mimic-cxr-jpg) and the reports of MIMIC-CXR "
              "(physionet.org/content/mimic-cxr): CREDENTIALED access (PhysioNet credentialing, CITI training, the "
              "PhysioNet Credentialed Health Data License 1.5.0)")
    summary = "frontal image 1x64x64, lateral image 1x64x64, report 128 tokens; 6 labels (multi-label)"
    expected = {"train": None, "test": None}
    decode_options = ("size",)

    def layout(self) -> Layout:
        folder = self.folder
        wanted = ["files/ with mimic-cxr-2.0.0-{metadata,chexpert,split}.csv.gz and mimic-cxr-reports/",
                  "or MoPoE-MIMIC {train,test}_pa{S}.pt / files_small_{S}/ with the CSVs"]
        base = find_base(folder, ("mimic-cxr-jpg", "2.1.0"),
                         lambda p: (p / "files").is_dir() or any(with_gz(p, c) for c in CSVS.values())
                         or tensor_files(p, self.cfg.size) is not None)
        if base is None:
            raise missing_error(self.name, folder, wanted, False, ())
        found = tensor_files(base, self.cfg.size)
        if found is not None and not (base / "files").is_dir():
            s, files = found
            absent = [str(p.relative_to(base)) for f in files.values() for p in f.values() if not p.is_file()]
            if absent:
                raise missing_error(self.name, base, wanted, True, absent)
            return Layout(f"MoPoE-MIMIC tensors, {s} px", base, tuple(p for f in files.values() for p in f.values()),
                          {"tensors": files})
        csvs = {k: with_gz(base, name) for k, name in CSVS.items()}
        absent = [f"{CSVS[k]}.gz" for k, p in csvs.items() if p is None]
        absent += [] if (base / "files").is_dir() else ["files/"]
        if absent:
            raise missing_error(self.name, base, wanted, True, absent)
        studies = raw_studies(base, csvs)
        files = list(csvs.values())
        lacking = []
        for rows in studies.values():
            for r in rows:
                for key in ("frontal", "lateral", "report"):
                    (files if r[key].is_file() else lacking).append(r[key])
        if lacking:
            raise missing_error(self.name, base, wanted, True, [
                f"{len(lacking)} image(s)/report(s) the CSVs select, e.g. {lacking[0].relative_to(base)}"])
        info = {"studies": studies, "counts": {s: len(rows) for s, rows in studies.items()}}
        return Layout("MIMIC-CXR-JPG tree + reports", base, tuple(files), info)

    def counts(self, layout: Layout) -> dict[str, int]:
        if "tensors" not in layout.info:
            return dict(layout.info["counts"])
        return {s: len(read_csv(f["labels"], LABELS)) for s, f in layout.info["tensors"].items()}

    def decode(self, layout: Layout) -> dict:
        size = self.cfg.size
        out: dict = {}
        if "tensors" in layout.info:
            for split, files in layout.info["tensors"].items():
                for k, v in read_tensor_split(files, size).items():
                    out[f"{split}_{k}"] = v
            return out
        read = partial(read_image, size=size, mode="L", crop_square=True)
        for split, rows in layout.info["studies"].items():
            for view in ("frontal", "lateral"):
                out[f"{split}_{view}"] = decode_images([r[view] for r in rows], (1, size, size), read)
            out[f"{split}_labels"] = np.array([r["labels"] for r in rows], dtype=np.float32).reshape(-1, len(LABELS))
            out[f"{split}_text"] = [clean_report(_read_report(r["report"])) for r in rows]
            out[f"{split}_study"] = np.array([r["study"] for r in rows], dtype=np.int64)
        return out

    def assemble(self, arrays: dict) -> tuple[MultimodalDataset, MultimodalDataset]:
        vocab = Vocabulary.build(arrays["train_text"], min_count=self.cfg.min_count)
        s = self.cfg.size
        mods = (Modality("frontal", "image", (1, s, s), likelihood="gaussian"),
                Modality("lateral", "image", (1, s, s), likelihood="gaussian"),
                Modality("report", "text", (self.cfg.text_len,), vocab_size=len(vocab), vocab=vocab.itos))
        out = []
        for split in ("train", "test"):
            multi = np.asarray(arrays[f"{split}_labels"])
            data = {"frontal": LazyImages(arrays[f"{split}_frontal"]),
                    "lateral": LazyImages(arrays[f"{split}_lateral"]),
                    "report": narrow_ints(vocab.encode(arrays[f"{split}_text"], self.cfg.text_len))}
            extras = {"multi_label": torch.from_numpy(multi.copy()), "study_id": as_long(arrays[f"{split}_study"])}
            out.append(MultimodalDataset.complete(mods, data, single_label(multi), extras))
        return out[0], out[1]

    def make_spec(self, train: MultimodalDataset, arrays: dict) -> BenchmarkSpec:
        return BenchmarkSpec(self.name, train.modalities, len(LABELS), ("representation", "retrieval"),
                             REPRESENTATION_METRICS + PREDICTION_METRICS + ("retrieval_r1", "retrieval_r5", "retrieval_class_p10"))


def _read_report(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DataError(f"{path}: cannot read the report ({e})") from None
