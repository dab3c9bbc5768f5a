"""``mnist-svhn`` and ``mnist-svhn-text``: MNIST and SVHN paired by class (docs/datasets.md §1.1, §1.2).

Files, under ``<root>/mnist-svhn/`` (both benchmarks read the same folder)::

    MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]     torchvision raw files, or
    MNIST/processed/{training,test}.pt                              the old torchvision tuple (uint8 [N,28,28], targets)
    SVHN/{train,test}_32x32.mat    (or directly in the folder)      X (32,32,3,N), y (N,1) with 10 for the digit 0
    {train,test}-ms-{mnist,svhn}-idx.pt                             optional: mmvae's pair index files

With the index files (``use_index_files``, the default of ``mnist-svhn``), entry i of the MNIST file and entry i of
the SVHN file form pair i and the length comes from the files; every pair is checked to share its class. Without
them, the pairing is recomputed as mmvae's ``rand_match_on_idx`` does (per class, n = min(#MNIST, #SVHN, 10000)
indices from each side, then ``dm`` independent random permutations of each), seeded by ``seed`` and cached with the
decoded images. SVHN labels are taken ``% 10`` (its 10 is the digit 0).

``mnist-svhn-text`` adds MoPoE's text modality: the digit's word at a random offset in 8 spaces, as character ids.
MoPoE redraws the offset at every access with an unseeded RNG; here it is drawn once per pair from ``seed``, so the
dataset is a fixed tensor (as ``digits-mst``). MoPoE recomputes the pairing (default ``dm`` 20) and never reads the
index files, hence that benchmark's defaults.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.data.contracts import BenchmarkSpec, Modality, MultimodalDataset
from bench.data.embedded import digits as D
from bench.data.embedded.digits_ms import PAIRED_TASKS, TEXT, digit_text, paired_metrics
from bench.data.formats.base import DiskBenchmark, Layout, as_long, load_pt, missing_error, root_field, with_gz
from bench.data.lazy import LazyImages, LazyRows, narrow_ints
from bench.data.splits import split_seed
from bench.data.text import encode_chars
from bench.errors import DataError
from bench.registry import register_benchmark

SPLITS = ("train", "test")
MNIST_RAW = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
MNIST_PROCESSED = {"train": "training.pt", "test": "test.pt"}
SVHN_MAT = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
MAX_PER_CLASS = 10000  # mmvae's max_d
MNIST = Modality("mnist", "image", (1, 28, 28), likelihood="bernoulli")
SVHN = Modality("svhn", "image", (3, 32, 32), likelihood="gaussian")
SOURCE = ("MNIST: yann.lecun.com/exdb/mnist or torchvision.datasets.MNIST (CC BY-SA 3.0); SVHN: "
          "ufldl.stanford.edu/housenumbers {train,test}_32x32.mat (non-commercial use); optional pair index files "
          "from iffsid/mmvae bin/make-mnist-svhn-idx.py")


def idx_file(split: str, side: str) -> str:
    return f"{split}-ms-{side}-idx.pt"


# --- file formats ------------------------------------------------------------------------------------------------
def _read_bytes(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read ({e}); the file is truncated or corrupt") from None


def idx_header(path: Path, raw: bytes) -> tuple[int, ...]:
    """The dims of an IDX file (the MNIST format: 0, 0, type 0x08 = uint8, ndim, then big-endian int32 dims)."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: IDX header truncated")
    return tuple(int(d) for d in np.frombuffer(raw[4 : 4 + 4 * ndim], dtype=">i4"))


def read_idx(path: Path, ndim: int) -> np.ndarray:
    raw = _read_bytes(path)
    dims = idx_header(path, raw)
    if len(dims) != ndim:
        raise DataError(f"{path}: IDX file of {len(dims)} dims, expected {ndim}")
    body = raw[4 + 4 * ndim :]
    need = int(np.prod(dims))
    if len(body) != need:
        raise DataError(f"{path}: {len(body)} data bytes for dims {dims}, expected {need}; the file is truncated")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def idx_count(path: Path) -> int:
    """Samples in an IDX file from its header only."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            head = f.read(8)
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if len(head) < 8 or head[:3] != bytes([0, 0, 8]):
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number or truncated header)")
    return int.from_bytes(head[4:8], "big")


def read_mnist_processed(path: Path) -> tuple[np.ndarray, np.ndarray]:
    obj = load_pt(path)
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2 and all(isinstance(t, torch.Tensor) for t in obj)):
        raise DataError(f"{path}: expected the torchvision tuple (images uint8 [N,28,28], targets [N])")
    x, y = obj[0].numpy(), obj[1].numpy()
    if x.ndim != 3 or x.shape[1:] != (28, 28) or len(y) != len(x):
        raise DataError(f"{path}: images {x.shape} and targets {y.shape}; expected [N,28,28] and [N]")
    return x.astype(np.uint8), y.astype(np.int64)


def read_svhn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [N,3,32,32], labels in 0..9) from an SVHN ``*_32x32.mat``."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError... for damaged files
        raise DataError(f"{path}: cannot read the .mat file ({type(e).__name__}: {e})") from None
    for key, what in (("X", "images (32,32,3,N)"), ("y", "labels (N,1), 10 for the digit 0")):
        if key not in mat:
            raise DataError(f"{path}: no {key!r} ({what}) in the .mat file; it holds "
                            f"{', '.join(k for k in mat if not k.startswith('__')) or 'nothing'}")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise DataError(f"{path}: X of shape {x.shape} with {len(y)} labels; expected X (32,32,3,N) and y (N,1)")
    if len(y) and (y.min() < 0 or y.max() > 10):
        raise DataError(f"{path}: labels in [{y.min()}, {y.max()}]; SVHN labels are 1-10 (10 = the digit 0)")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8), (y.astype(np.int64) % 10)


def svhn_count(path: Path) -> int:
    import scipy.io

    try:
        info = {name: shape for name, shape, _ in scipy.io.whosmat(path)}
    except Exception as e:
        raise DataError(f"{path}: cannot read the .mat file ({type(e).__name__}: {e})") from None
    if "X" not in info or len(info["X"]) != 4:
        raise DataError(f"{path}: no 'X' (32,32,3,N) in the .mat file")
    return int(info["X"][3])


def class_pairing(labels_a: np.ndarray, labels_b: np.ndarray, dm: int, gen: np.random.Generator,
                  max_per_class: int = MAX_PER_CLASS) -> tuple[np.ndarray, np.ndarray]:
    """mmvae's rand_match_on_idx: per class the first n = min(#a, #b, max) indices of each side (in label-sorted
    order), then ``dm`` independent permutations of each side, concatenated."""
    idx_a, idx_b = np.argsort(labels_a, kind="stable"), np.argsort(labels_b, kind="stable")
    out_a, out_b = [], []
    for c in np.unique(labels_a):
        a, b = idx_a[labels_a[idx_a] == c], idx_b[labels_b[idx_b] == c]
        n = min(len(a), len(b), max_per_class)
        a, b = a[:n], b[:n]
        for _ in range(dm):
            out_a.append(a[gen.permutation(n)])
            out_b.append(b[gen.permutation(n)])
    if not out_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_a).astype(np.int64), np.concatenate(out_b).astype(np.int64)


def read_index_pair(path_m: Path, path_s: Path, y_m: np.ndarray, y_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mmvae's index files, checked: equal length, in range, and every pair within one class."""
    im = torch.as_tensor(load_pt(path_m)).numpy().reshape(-1).astype(np.int64)
    is_ = torch.as_tensor(load_pt(path_s)).numpy().reshape(-1).astype(np.int64)
    if len(im) != len(is_):
        raise DataError(f"{path_m}: {len(im)} entries but {path_s.name} has {len(is_)}; entry i of each forms pair i")
    for path, idx, n in ((path_m, im, len(y_m)), (path_s, is_, len(y_s))):
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise DataError(f"{path}: indices in [{idx.min()}, {idx.max()}] but the dataset has {n} images")
    bad = np.flatnonzero(y_m[im] != y_s[is_])
    if bad.size:
        k = int(bad[0])
        raise DataError(f"{path_m}: pair {k} joins MNIST {im[k]} (class {y_m[im[k]]}) with SVHN {is_[k]} (class "
                        f"{y_s[is_[k]]}); {bad.size} pairs differ in class, so these are not index files for these "
                        "MNIST/SVHN files")
    return im, is_


# --- the benchmarks -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MnistSvhnConfig:
    root: str | None = root_field()  # data root (default: $MMRL_DATA or ~/.mmrl-bench/data); not part of the run identity
    dm: int = 30  # pairing multiplier when the pairing is recomputed (mmvae's script: 30; its README says 20)
    seed: int = 0  # seed of the recomputed pairing
    use_index_files: bool = True  # read mmvae's {split}-ms-{mnist,svhn}-idx.pt when present


@dataclass(frozen=True)
class MnistSvhnTextConfig:
    root: str | None = root_field()  # data root (default: $MMRL_DATA or ~/.mmrl-bench/data); not part of the run identity
    dm: int = 20  # MoPoE's --data_multiplications
    seed: int = 0  # seed of the pairing and of the text offsets
    use_index_files: bool = False  # MoPoE recomputes the pairing


@register_benchmark("mnist-svhn")
class MnistSvhn(DiskBenchmark):
    version = 1
    Config = MnistSvhnConfig
    source = SOURCE
    summary = "mnist image 1x28x28, svhn image 3x32x32 (class-paired)"
    expected = {"MNIST train": 60000, "MNIST test": 10000, "SVHN train": 73257, "SVHN test": 26032}
    decode_options = ("dm", "seed", "use_index_files")

    def spec(self) -> BenchmarkSpec:
        return BenchmarkSpec(self.name, (MNIST, SVHN), 10, PAIRED_TASKS, paired_metrics("class"))

    def layout(self) -> Layout:
        if self.cfg.dm < 1:
            raise DataError(f"{self.name}: dm (pairing multiplier) must be >= 1, got {self.cfg.dm}")
        folder = self.folder
        files: dict[str, Path] = {}
        absent: list[str] = []
        raw = {f"{s}_{kind}": with_gz(folder / "MNIST" / "raw", name)
               for s in SPLITS for kind, name in zip(("images", "labels"), MNIST_RAW[s])}
        processed = {s: folder / "MNIST" / "processed" / MNIST_PROCESSED[s] for s in SPLITS}
        if all(raw.values()):
            mnist = "MNIST raw"
            files.update({f"mnist_{k}": p for k, p in raw.items()})
        elif all(p.is_file() for p in processed.values()):
            mnist = "MNIST processed"
            files.update({f"mnist_{s}": p for s, p in processed.items()})
        else:
            mnist = ""
            absent.append("MNIST/raw/{train,t10k}-*-ubyte[.gz] or MNIST/processed/{training,test}.pt")
        for s in SPLITS:
            mat = next((p for p in (folder / "SVHN" / SVHN_MAT[s], folder / SVHN_MAT[s]) if p.is_file()), None)
            if mat is None:
                absent.append(f"SVHN/{SVHN_MAT[s]}")
            else:
                files[f"svhn_{s}"] = mat
        index = {f"idx_{s}_{side}": folder / idx_file(s, side) for s in SPLITS for side in ("mnist", "svhn")}
        found_idx = [p for p in index.values() if p.is_file()]
        use_idx = self.cfg.use_index_files and bool(found_idx)
        if use_idx and len(found_idx) < len(index):
            absent += [p.name for p in index.values() if not p.is_file()]
        if absent:
            raise missing_error(self.name, folder, ["MNIST/raw/ or MNIST/processed/", "SVHN/*_32x32.mat"],
                                bool(files), absent)
        if use_idx:
            files.update(index)
        variant = f"{mnist} + SVHN .mat + " + ("mmvae index files" if use_idx else "recomputed pairing")
        return Layout(variant, folder, tuple(files.values()), {"files": files, "index": use_idx})

    def counts(self, layout: Layout) -> dict[str, int]:
        files = layout.info["files"]
        out = {}
        for s in SPLITS:
            if f"mnist_{s}_images" in files:
                out[f"MNIST {s}"] = idx_count(files[f"mnist_{s}_images"])
            else:
                out[f"MNIST {s}"] = len(read_mnist_processed(files[f"mnist_{s}"])[1])
            out[f"SVHN {s}"] = svhn_count(files[f"svhn_{s}"])
        return out

    def decode(self, layout: Layout) -> dict:
        files = layout.info["files"]
        out = {}
        for s in SPLITS:
            if f"mnist_{s}_images" in files:
                x = read_idx(files[f"mnist_{s}_images"], 3)
                y = read_idx(files[f"mnist_{s}_labels"], 1).astype(np.int64)
                if len(x) != len(y):
                    raise DataError(f"{files[f'mnist_{s}_labels']}: {len(y)} labels for {len(x)} images")
            else:
                x, y = read_mnist_processed(files[f"mnist_{s}"])
            if x.shape[1:] != (28, 28):
                raise DataError(f"{files.get(f'mnist_{s}_images', files.get(f'mnist_{s}'))}: images {x.shape[1:]}, "
                                "expected 28x28")
            sx, sy = read_svhn(files[f"svhn_{s}"])
            if layout.info["index"]:
                pm, ps = read_index_pair(files[f"idx_{s}_mnist"], files[f"idx_{s}_svhn"], y, sy)
            else:
                gen = np.random.default_rng(split_seed("mnist-svhn pairing", self.cfg.seed, s))
                pm, ps = class_pairing(y, sy, self.cfg.dm, gen)
            out.update({f"{s}_mnist": x[:, None], f"{s}_mnist_y": y, f"{s}_svhn": sx, f"{s}_svhn_y": sy,
                        f"{s}_pair_mnist": pm, f"{s}_pair_svhn": ps})
        return out

    def pairs(self, arrays: dict, split: str) -> tuple[dict[str, torch.Tensor | LazyRows], np.ndarray, dict]:
        pm, ps = np.asarray(arrays[f"{split}_pair_mnist"]), np.asarray(arrays[f"{split}_pair_svhn"])
        # the base sets stay uint8 (memory-mapped) and the pairs index them: the pairs repeat every image ~dm times
        extras = {"mnist_index": as_long(pm), "svhn_index": as_long(ps)}
        data = {"mnist": LazyImages(arrays[f"{split}_mnist"], extras["mnist_index"]),
                "svhn": LazyImages(arrays[f"{split}_svhn"], extras["svhn_index"])}
        labels = np.asarray(arrays[f"{split}_mnist_y"])[pm]
        return data, labels, extras

    def assemble(self, arrays: dict) -> tuple[MultimodalDataset, MultimodalDataset]:
        out = []
        for s in SPLITS:
            data, labels, extras = self.pairs(arrays, s)
            out.append(MultimodalDataset.complete((MNIST, SVHN), data, labels, extras))
        return out[0], out[1]


@register_benchmark("mnist-svhn-text")
class MnistSvhnText(MnistSvhn):
    version = 1
    Config = MnistSvhnTextConfig
    summary = "mnist image 1x28x28, svhn image 3x32x32, text 8 characters (the digit's word)"

    def spec(self) -> BenchmarkSpec:
        return BenchmarkSpec(self.name, (MNIST, SVHN, TEXT), 10, PAIRED_TASKS, paired_metrics("class"))

    def assemble(self, arrays: dict) -> tuple[MultimodalDataset, MultimodalDataset]:
        out = []
        for s in SPLITS:
            data, labels, extras = self.pairs(arrays, s)
            texts, offsets = digit_text(labels, D.rng(self.cfg.seed, "mnist-svhn-text", s, "text"))
            data["text"] = narrow_ints(encode_chars(texts, TEXT.shape[0]))
            extras["text_offset"] = torch.from_numpy(offsets)
            out.append(MultimodalDataset.complete((MNIST, SVHN, TEXT), data, labels, extras))
        return out[0], out[1]
