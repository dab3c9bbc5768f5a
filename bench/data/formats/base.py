"""What every reader of a paper dataset shares: the benchmark base class, the decode cache, image and table helpers.

A reader is a :class:`DiskBenchmark` with three steps:

* :meth:`~DiskBenchmark.layout` finds the files (which on-disk variant, which split holds what) and checks that they
  are all there. It lists and stats files but decodes nothing, so ``bench data check`` and the sweep's refusal can
  afford it. Absent data raises :class:`~bench.errors.DataMissing`; files that exist but cannot form a dataset
  (mismatched PolyMNIST name sets, a missing caption line) raise :class:`~bench.errors.DataError`.
* :meth:`~DiskBenchmark.decode` reads the files into numpy arrays (uint8 images, labels, index arrays, strings); its
  output is cached per (benchmark, resolution) by :class:`bench.data.cache.ArrayCache`, keyed by the files' names
  and sizes.
* :meth:`~DiskBenchmark.assemble` turns the (memory-mapped) arrays into the complete train and test
  :class:`~bench.data.MultimodalDataset` (tokenised text, class-level pairings). Images stay the cache's uint8
  arrays, read through an index (:class:`bench.data.lazy.LazyImages`: the pairings index them, nothing is copied)
  and converted to float in [0, 1] one batch at a time.

Registration touches no file: a benchmark reads its folder only when asked to build, probe or describe its data.
"""

from __future__ import annotations

import abc
import csv
import dataclasses
import gzip
import io
import zipfile
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Sequence

import numpy as np
import torch

from bench.data.cache import ArrayCache, Arrays, decode_workers, source_key
from bench.data.contracts import REPRESENTATION_METRICS, Benchmark, BenchmarkSpec, MultimodalDataset  # noqa: F401
from bench.data.root import benchmark_dir, cache_root
from bench.errors import DataError, DataMissing

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class Layout:
    """The files of one benchmark as found on disk."""

    variant: str                     # which on-disk format, e.g. "png tree" or "tensors"
    base: Path                       # the folder the files were found in
    files: tuple                     # every file decode() reads (paths or strings): names and sizes key the cache
    info: dict = field(default_factory=dict)  # what the reader found (per-split file lists, counts)


@dataclass
class Probe:
    """What ``bench data check`` says about one benchmark."""

    benchmark: str
    folder: Path
    state: str = "missing"           # present | missing | incomplete
    variant: str = ""
    found: dict[str, int] = field(default_factory=dict)
    expected: dict[str, int | None] = field(default_factory=dict)
    missing_files: tuple[str, ...] = ()
    message: str = ""
    cache: str = "none"              # fresh | stale | none

    @property
    def short_counts(self) -> list[str]:
        """The parts whose sample count falls short of the full release."""
        return [k for k, want in self.expected.items() if want is not None and k in self.found
                and self.found[k] < want]


@dataclass
class Built:
    train: MultimodalDataset
    test: MultimodalDataset
    spec: BenchmarkSpec | None


_MEMO: "OrderedDict[tuple, Built]" = OrderedDict()
_MEMO_SIZE = 2  # real datasets are large: keep only the last couple of builds in memory


def root_field():
    """The ``root`` option of every reader's Config. It is not part of a run's identity (bench.spec.NON_SEMANTIC),
    from which the splits are seeded; it stays out of the repr too, which seeded the splits of spec_version 1 runs
    (``load_splits(legacy_seeds=True)``), so that those still reproduce from another place."""
    return field(default=None, repr=False)


def clear_memo() -> None:
    """Forget the in-process builds (the next build reads the disk cache again)."""
    _MEMO.clear()


def fresh_view(ds: MultimodalDataset) -> MultimodalDataset:
    return MultimodalDataset(ds.modalities, dict(ds.data), ds.labels, ds.mask.clone(), dict(ds.extras))


class DiskBenchmark(Benchmark):
    """A benchmark read from a paper dataset's files under the data root (see the module docstring)."""

    needs_data: ClassVar[bool] = True
    #: where the data comes from and under which licence (``bench data check`` prints it for missing data)
    source: ClassVar[str] = ""
    #: the modalities in words, for listings that must not read the data
    summary: ClassVar[str] = ""
    #: samples per part in the full release (None: not known), compared with what is found
    expected: ClassVar[dict[str, int | None]] = {}
    #: config fields that change what decode() produces (the others only change assemble())
    decode_options: ClassVar[tuple[str, ...]] = ()
    #: bump when decode() changes its output for the same files
    reader_version: ClassVar[int] = 1

    # --- the three steps ------------------------------------------------------------------------------------
    @abc.abstractmethod
    def layout(self) -> Layout:
        """Find and check the files; raises DataMissing / DataError."""

    @abc.abstractmethod
    def decode(self, layout: Layout) -> Arrays:
        """Read the files into arrays (cached)."""

    @abc.abstractmethod
    def assemble(self, arrays: Arrays) -> tuple[MultimodalDataset, MultimodalDataset]:
        """The complete (train, test) datasets from the decoded arrays."""

    def counts(self, layout: Layout) -> dict[str, int]:
        """Samples found per part, cheaply (from the layout or file headers)."""
        return dict(layout.info.get("counts", {}))

    def make_spec(self, train: MultimodalDataset, arrays: Arrays) -> BenchmarkSpec | None:
        """The spec of a built dataset, for readers whose spec depends on the data (a vocabulary, a class count);
        the others override :meth:`spec` and leave this None."""
        return None

    # --- shared machinery ------------------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        return benchmark_dir(self.name, getattr(self.cfg, "root", None))

    def resolution(self) -> str:
        size = getattr(self.cfg, "size", None)
        return f"{size}px" if size else "native"

    def cache(self) -> ArrayCache:
        return ArrayCache(cache_root(getattr(self.cfg, "root", None)), self.name, self.resolution())

    def cache_key(self, layout: Layout) -> str:
        params = {k: getattr(self.cfg, k) for k in self.decode_options}
        params.update(reader=self.reader_version, variant=layout.variant)
        return source_key(layout.files, layout.base, params)

    def _built(self) -> Built:
        layout = self.layout()
        key = self.cache_key(layout)
        memo_key = (self.name, self.cfg, key)
        if memo_key in _MEMO:
            _MEMO.move_to_end(memo_key)
            return _MEMO[memo_key]
        arrays, _ = self.cache().load_or_build(key, lambda: self.decode(layout))
        train, test = self.assemble(arrays)
        built = Built(train, test, self.make_spec(train, arrays))
        _MEMO[memo_key] = built
        while len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
        return built

    def build(self) -> tuple[MultimodalDataset, MultimodalDataset]:
        built = self._built()
        return fresh_view(built.train), fresh_view(built.test)

    def spec(self) -> BenchmarkSpec:
        return self._built().spec

    def probe(self) -> Probe:
        """Present / missing / incomplete, the counts found and the cache state; never raises for bad data."""
        p = Probe(self.name, self.folder, expected=dict(self.expected))
        try:
            layout = self.layout()
        except DataMissing as e:
            p.state, p.missing_files, p.message = e.state, e.missing_files, str(e)
            return p
        except DataError as e:
            p.state, p.message = "incomplete", str(e)
            return p
        p.variant = layout.variant
        try:
            p.found = self.counts(layout)
        except DataError as e:
            p.state, p.message = "incomplete", str(e)
            return p
        short = p.short_counts
        p.state = "incomplete" if short else "present"
        if short:
            p.message = "fewer samples than the full release: " + ", ".join(
                f"{k} {p.found[k]} of {p.expected[k]}" for k in short)
        p.cache = self.cache().state(self.cache_key(layout))
        return p

    def check_present(self) -> None:
        """Raise DataMissing / DataError unless the files are all there (cheap: nothing is decoded)."""
        self.layout()


# --- finding files -----------------------------------------------------------------------------------------------
def find_base(folder: Path, nested: Sequence[str], marker: Callable[[Path], bool]) -> Path | None:
    """The first of ``folder`` and ``folder/<nested>`` that ``marker`` accepts (archives unpack one level down)."""
    for sub in ("", *nested):
        cand = folder / sub if sub else folder
        if cand.is_dir() and marker(cand):
            return cand
    return None


def missing_error(benchmark: str, folder: Path, expected: Iterable[str], present_any: bool,
                  absent: Sequence[str]) -> DataMissing:
    """The DataMissing for a benchmark whose folder lacks ``absent`` (all of it when nothing is there)."""
    if not present_any:
        return DataMissing(f"no {benchmark} data in {folder}: expected {', '.join(expected)}; "
                           "`python -m bench data check` says where to get it", tuple(expected), "missing")
    return DataMissing(f"{benchmark} data in {folder} is incomplete: missing {', '.join(absent)}",
                       tuple(absent), "incomplete")


def with_gz(base: Path, rel: str) -> Path | None:
    """``base/rel`` or ``base/rel.gz``, whichever exists."""
    for cand in (base / rel, base / f"{rel}.gz"):
        if cand.is_file():
            return cand
    return None


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, in sorted order (torchvision ImageFolder's order)."""
    out = []
    for sub, dirs, files in sorted_walk(folder):
        out += [sub / f for f in files if f.lower().endswith(IMAGE_SUFFIXES)]
    return out


def sorted_walk(folder: Path):
    """os.walk with sorted directories and files, so that no result depends on the file system's listing order."""
    import os

    for sub, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        yield Path(sub), dirs, sorted(files)


# --- decoding ----------------------------------------------------------------------------------------------------
def read_image(path: Path, size: int | None, mode: str = "RGB", nearest: bool = False,
               crop_square: bool = False) -> np.ndarray:
    """One image as uint8 [C, H, W] (``mode`` RGB or L) or [H, W] (``mode`` P: palette indices, unconverted).

    ``size``: resized to size x size (bilinear; nearest for masks); ``crop_square`` first takes the centred
    square. Undecodable or truncated files raise a DataError naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if size and im.format == "JPEG" and not nearest:
                im.draft(mode, (size, size))  # JPEG decodes at a reduced scale directly: far less work
            im.load()
            if mode == "P":
                if im.mode not in ("P", "L"):
                    raise DataError(f"{path}: a class-index mask must be a palette or grey-level PNG, got mode "
                                    f"{im.mode}")
            else:
                im = im.convert(mode)
            if crop_square and im.width != im.height:
                s = min(im.size)
                left, top = (im.width - s) // 2, (im.height - s) // 2
                im = im.crop((left, top, left + s, top + s))
            if size and im.size != (size, size):
                im = im.resize((size, size), Image.NEAREST if nearest else Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot decode the image ({e}); the file is truncated or corrupt") from None
    if mode == "P":
        return arr
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def decode_images(paths: Sequence[Path], shape: tuple[int, ...], read: Callable[[Path], np.ndarray]) -> np.ndarray:
    """uint8 [N, *shape] from ``read`` of every path, on :func:`decode_workers` threads (PIL releases the GIL)."""
    out = np.empty((len(paths), *shape), dtype=np.uint8)
    with ThreadPoolExecutor(decode_workers()) as pool:
        for i, (path, arr) in enumerate(zip(paths, pool.map(read, paths))):
            if arr.shape != tuple(shape):
                raise DataError(f"{path}: image of shape {arr.shape}, expected {tuple(shape)} "
                                "(every image of this dataset has the same size)")
            out[i] = arr
    return out


def to_float_images(u8: np.ndarray, chunk: int = 4096) -> torch.Tensor:
    """uint8 [N, ...] (possibly memory-mapped) -> float32 in [0, 1] (x / 255), in chunks to bound peak memory.
    The readers no longer call it (their images stay lazy); it is the reference :class:`bench.data.lazy.LazyImages`
    reproduces bit for bit.

    One numpy ufunc pass: no temporary float copy, and no intra-op thread pool, which on a busy machine made the
    torch version of this loop most of a cached load."""
    out = np.empty(u8.shape, dtype=np.float32)
    for s in range(0, len(u8), chunk):
        np.divide(u8[s : s + chunk], np.float32(255), out=out[s : s + chunk], dtype=np.float32)
    return torch.from_numpy(out)


def as_long(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.int64))


def float_to_u8(x: np.ndarray, where: Path) -> np.ndarray:
    """Images stored as floats in [0, 1] (or 0-255) -> uint8; other ranges are refused."""
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x
    x = x.astype(np.float32)
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 1.0)
    if lo < -1e-3 or hi > 255.0 + 1e-3:
        raise DataError(f"{where}: image values in [{lo:.3g}, {hi:.3g}]; expected [0, 1] or [0, 255]")
    scale = 255.0 if hi <= 1.0 + 1e-6 else 1.0
    return np.clip(np.rint(x * scale), 0, 255).astype(np.uint8)


def resize_u8(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, C, H, W] -> [N, C, size, size] (bilinear), for tensor files stored at another resolution."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    import torch.nn.functional as F

    x = torch.from_numpy(np.asarray(images, dtype=np.float32))
    y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return y.round_().clamp_(0, 255).to(torch.uint8).numpy()


# --- files of other kinds --------------------------------------------------------------------------------------------
def load_pt(path: Path) -> Any:
    """``torch.load`` without arbitrary code (weights_only), with a DataError naming the file on failure."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file (pickle, zip, runtime)
        raise DataError(f"{path}: cannot read the torch file ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None


def pt_array(path: Path, what: str) -> np.ndarray:
    """A torch file holding one tensor (or array) -> numpy."""
    obj = load_pt(path)
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, np.ndarray):
        return obj
    raise DataError(f"{path}: expected one tensor ({what}), found {type(obj).__name__}")


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The arrays of an .npz and their shapes, from the headers only (nothing is decompressed in full)."""
    try:
        with zipfile.ZipFile(path) as z:
            out = {}
            for name in z.namelist():
                if not name.endswith(".npy"):
                    continue
                with z.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                              else np.lib.format.read_array_header_2_0)
                    shape, _, _ = header(f)
                out[name[:-4]] = tuple(shape)
            return out
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None


def read_csv(path: Path, required: Sequence[str] = ()) -> list[dict[str, str]]:
    """Rows of a CSV (``.csv`` or ``.csv.gz``) as dicts; a missing column is a DataError naming the file."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8")))
        rows = list(reader)
        columns = reader.fieldnames or []
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read the CSV ({e})") from None
    absent = [c for c in required if c not in columns]
    if absent:
        raise DataError(f"{path}: no column(s) {', '.join(absent)}; it has {', '.join(columns) or 'none'}")
    return rows


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the text file ({e})") from None


def config_fields(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls)}
