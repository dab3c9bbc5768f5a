"""``python -m bench perf data``: samples/s and peak resident memory of every paper-dataset reader, first load
against cached load.

Each reader gets fixture files in its real format (bench.testing.fixtures) in a temporary data root, larger than
the tests' so that decoding dominates. The first load decodes the files (PNG/JPEG decode and resize, .mat/.npz/.pt
reads, CSV parsing) and writes the cache; the cached load memory-maps it. Every load runs in a fresh child process, so
that its peak resident memory (less the child's resident memory once its imports are done) is what that load costs,
not what an earlier load left behind; it is printed against the uint8 size of the decoded images (the cache's uint8
arrays), the floor of a dataset that keeps its images. Nothing is read from a real data root.

:func:`organ_memory` is the MedMNIST organ case at the real release's sample counts (``scripts/data_memory.py`` and
tests/test_data_memory.py): ``load_splits`` as a run calls it, then one pass of batches as training reads them.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from bench.errors import BenchError
from bench.perf.common import MB, PeakMeter, in_child
from bench.registry import register_perf_verb
from bench.testing import fixtures as F

REPEATS = 3
# modules the readers import on first use: imported before the baseline, so that a load's figure is the data's
PRELOAD = ("PIL.Image", "scipy.io", "torch.nn.functional", "bench.data.splits", "bench.registry")


def _child_setup(root: str) -> None:
    """In a measuring child: decode cache under the temporary data root, and the imports done before measuring."""
    os.environ.pop("MMRL_DATA_CACHE", None)
    os.environ["MMRL_DATA"] = root
    for mod in PRELOAD:
        try:
            importlib.import_module(mod)
        except ImportError:
            pass


# --- every reader on fixture files ---------------------------------------------------------------------------------
@dataclass
class Scenario:
    benchmark: str
    write: Callable[[Path], object]   # writes the fixture under the data root
    config: dict


def _mimic_studies(n_subjects: int) -> list[dict]:
    out = []
    for s in range(n_subjects):
        for k in range(2):
            out.append({"subject": 10000000 + s, "study": 50000000 + 10 * s + k, "split": "test" if s % 5 == 0 else "train",
                        "views": ["PA", "LATERAL"], "labels": {F.MIMIC_LABELS[(s + k) % 5]: 1}})
    return out


# image sizes of the order of the real files (CUB and VOC photos about 500x375, Kvasir-SEG about 600x530, MIMIC-CXR
# radiographs scaled down from about 2500x3000 to keep the fixture quick to write)
SCENARIOS = (
    Scenario("mnist-svhn", lambda r: F.write_mnist_svhn(r / "mnist-svhn", classes=range(10), n_mnist=(200, 50),
                                                          n_svhn=(200, 50)), {"dm": 1}),
    Scenario("polymnist", lambda r: F.write_polymnist_png(r / "polymnist", {"train": 40, "test": 10},
                                                          classes=range(10)), {}),
    Scenario("cub-icc", lambda r: F.write_cub_icc(r / "cub-icc", F.cub_class_names(4), F.cub_class_names(2, start=5),
                                                  n_per_class=15, size=375), {}),
    Scenario("cubicc", lambda r: F.write_cubicc(r / "cubicc", n=600, n_classes=8), {}),
    Scenario("cub-200", lambda r: F.write_cub200(r / "cub-200", n_classes=4, n_per_class=20, size=375), {}),
    Scenario("medmnist-organ", lambda r: F.write_medmnist(r / "medmnist-organ", {"train": [100] * 11, "val": [10] * 11,
                                                                                  "test": [30] * 11}), {}),
    Scenario("mimic-cxr", lambda r: F.write_mimic_raw(r / "mimic-cxr", _mimic_studies(25), size=(1200, 1000)), {}),
    Scenario("kvasir-seg", lambda r: F.write_kvasir(r / "kvasir-seg", n=80, size=(530, 620)), {}),
    Scenario("voc-2012", lambda r: F.write_voc(r / "voc-2012", train=50, val=30, size=(375, 500)), {}),
)


def _reader_loads(benchmark: str, root: str, config: dict, first: bool, repeats: int) -> dict:
    """In a child: ``repeats`` builds, each after clearing the cache when ``first``; the fastest one's seconds, the
    samples, and the peak memory of the first build (the only one that starts from a fresh process)."""
    _child_setup(root)
    from bench.build import benchmark_from
    from bench.data.formats.base import clear_memo

    bench = benchmark_from(benchmark, {"root": root, **config})
    times, peak = [], None
    for _ in range(repeats):
        if first:
            shutil.rmtree(bench.cache().dir, ignore_errors=True)
        clear_memo()
        meter = PeakMeter()
        t0 = time.perf_counter()
        train, test = bench.build()
        times.append(time.perf_counter() - t0)
        peak = meter.peak() if peak is None else peak
        n = len(train) + len(test)
        del train, test
    return {"seconds": min(times), "samples": n, "peak": peak}


def cached_u8_bytes(bench) -> int:
    """Bytes of the uint8 arrays (the decoded images) in ``bench``'s cache entry; 0 when there is none."""
    arrays = bench.cache().load(bench.cache_key(bench.layout())) or {}
    return sum(a.nbytes for a in arrays.values() if isinstance(a, np.ndarray) and a.dtype == np.uint8)


def perf_data(scenarios=SCENARIOS, repeats: int = REPEATS) -> list[dict]:
    """One row per reader: samples, first and cached load time (s), samples/s and peak resident memory (bytes), the
    uint8 bytes of its decoded images, and the speed-up. Each way runs in a fresh child process, which keeps the
    fastest of ``repeats`` loads (a shared machine is noisy) and the peak memory of its first."""
    from bench.build import benchmark_from

    rows = []
    with tempfile.TemporaryDirectory(prefix="mmrl-perf-data-") as tmp:
        root = Path(tmp)
        for sc in scenarios:
            sc.write(root)
            first, cached = (in_child(_reader_loads, sc.benchmark, str(root), sc.config, way, repeats)
                             for way in (True, False))
            n = first["samples"]
            rows.append({"benchmark": sc.benchmark, "samples": n, "first_s": first["seconds"],
                         "cached_s": cached["seconds"], "first_samples_s": n / first["seconds"],
                         "cached_samples_s": n / cached["seconds"], "speedup": first["seconds"] / cached["seconds"],
                         "first_peak": first["peak"], "cached_peak": cached["peak"],
                         "u8_bytes": cached_u8_bytes(benchmark_from(sc.benchmark, {"root": str(root), **sc.config}))})
    return rows


def _ratio(nbytes: int, u8: int) -> str:
    return f"{nbytes / u8:.1f}x" if u8 else "-"


def print_perf_data(console, rows: list[dict]) -> None:
    from rich.table import Table

    t = Table(title="paper-dataset readers on fixture files: first load (decode + cache) vs cached load (mmap)")
    for c in ("reader", "samples", "first load s", "samples/s", "cached load s", "samples/s", "speed-up"):
        t.add_column(c, justify="left" if c == "reader" else "right")
    for r in rows:
        t.add_row(r["benchmark"], str(r["samples"]), f"{r['first_s']:.3f}", f"{r['first_samples_s']:.0f}",
                  f"{r['cached_s']:.3f}", f"{r['cached_samples_s']:.0f}", f"{r['speedup']:.1f}x")
    first, cached = sum(r["first_s"] for r in rows), sum(r["cached_s"] for r in rows)
    t.add_row("all", str(sum(r["samples"] for r in rows)), f"{first:.3f}", "", f"{cached:.3f}", "",
              f"{first / cached:.1f}x")
    console.print(t)
    m = Table(title="peak resident memory a load adds to a fresh process (MB), and its ratio to the uint8 size of "
                    "the decoded images")
    for c in ("reader", "uint8 MB", "first load MB", "x uint8", "cached load MB", "x uint8"):
        m.add_column(c, justify="left" if c == "reader" else "right")
    for r in rows:
        u8 = r["u8_bytes"]
        m.add_row(r["benchmark"], f"{u8 / MB:.1f}", f"{r['first_peak'] / MB:.1f}", _ratio(r["first_peak"], u8),
                  f"{r['cached_peak'] / MB:.1f}", _ratio(r["cached_peak"], u8))
    console.print(m)


# --- MedMNIST organ at the release's sample counts -----------------------------------------------------------------
def organ_counts() -> dict[str, tuple[int, int, int]]:
    """npz flag -> (train, val, test) samples of the full release (MedMnistOrgan.expected, docs/datasets.md §1.5)."""
    from bench.data.formats.medmnist import VIEWS, MedMnistOrgan

    return {flag: tuple(MedMnistOrgan.expected[f"{view} {s}"] for s in ("train", "val", "test"))
            for view, flag in VIEWS.items()}


def write_organ(folder: Path, size: int, seed: int = 0) -> int:
    """The three organ npz files with the release's counts, random pixels and the 11 classes spread evenly (in
    random order); returns the uint8 bytes of their images. Written with numpy directly and uncompressed: the
    fixture writer's noise model holds float64 temporaries eight times the images (24 GB at 224 px), and numpy reads
    a compressed npz member into its array in the same bounded chunks as a stored one."""
    from bench.data.formats.medmnist import N_CLASSES, file_name

    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for v, (flag, counts) in enumerate(organ_counts().items()):
        rng = np.random.default_rng([seed, v])
        arrays = {}
        for split, n in zip(("train", "val", "test"), counts):
            arrays[f"{split}_images"] = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
            arrays[f"{split}_labels"] = rng.permutation(np.arange(n) % N_CLASSES).astype(np.uint8).reshape(-1, 1)
            total += arrays[f"{split}_images"].nbytes
        np.savez(folder / file_name(flag, size), **arrays)
        del arrays
    return total


def _touch(batch: dict) -> float:
    """Read every value of a batch once, as a training step would (NaN where a modality is unobserved)."""
    return sum(float(x.sum()) for x in batch["data"].values())


def organ_load(root: str, size: int, first: bool, rho: float = 1.0, batch_size: int = 128) -> dict:
    """In a child: ``load_splits`` of medmnist-organ as a run calls it (after clearing the cache when ``first``),
    then one pass over the training batches in shuffled order, as training reads them. Returns the seconds and peak
    resident memory (bytes) of each, the second peak covering the load and the pass together, the resident memory
    added by the end, and the child's own before the load."""
    _child_setup(root)
    import torch

    from bench.data.formats.medmnist import MedMnistOrgan
    from bench.data.splits import load_splits

    bench = MedMnistOrgan(MedMnistOrgan.Config(root=root, size=size))
    if first:
        shutil.rmtree(bench.cache().dir, ignore_errors=True)
    meter = PeakMeter()
    t0 = time.perf_counter()
    train, val, test = load_splits(bench, rho, seed=0)
    load_s, load_peak = time.perf_counter() - t0, meter.peak()
    t0 = time.perf_counter()
    for batch in train.batches(batch_size, shuffle=True, generator=torch.Generator().manual_seed(0)):
        _touch(batch)
    return {"samples": (len(train), len(val), len(test)), "load_s": load_s, "load_peak": load_peak,
            "epoch_s": time.perf_counter() - t0, "epoch_peak": meter.peak(), "end_rss": meter.now(),
            "base_rss": meter.base, "u8_cache": cached_u8_bytes(bench)}


def organ_memory(size: int, rho: float = 1.0, tmp_dir: str | None = None) -> dict:
    """medmnist-organ at the release's counts and ``size`` px: the uint8 bytes of the npz images, and the first
    (decode + cache) and cached load (:func:`organ_load`), each in a fresh child process."""
    from bench.data.formats.medmnist import SIZES
    from bench.data.splits import check_obs_ratio

    if size not in SIZES:
        raise BenchError(f"size must be one of {', '.join(map(str, SIZES))}, got {size}")
    rho = check_obs_ratio(rho)  # before writing gigabytes
    with tempfile.TemporaryDirectory(prefix="mmrl-organ-memory-", dir=tmp_dir) as tmp:
        u8 = write_organ(Path(tmp) / "medmnist-organ", size)
        first = in_child(organ_load, tmp, size, True, rho)
        cached = in_child(organ_load, tmp, size, False, rho)
    return {"size": size, "rho": rho, "u8_source": u8, "first": first, "cached": cached}


def add_arguments(parser) -> None:
    parser.add_argument("--repeats", type=int, default=REPEATS, help="loads of each kind per reader (the fastest)")


@register_perf_verb("data", help="samples/s and peak memory of every paper-dataset reader, first vs cached load",
                    add_arguments=add_arguments)
def run(args, console, out_dir) -> None:
    print_perf_data(console, perf_data(repeats=args.repeats))
