"""``python -m bench perf data``: samples/s of every paper-dataset reader, first load against cached load.

Each reader gets fixture files in its real format (bench.data.formats.fixtures) in a temporary data root, larger than
the tests' so that decoding dominates. The first load decodes the files (PNG/JPEG decode and resize, .mat/.npz/.pt
reads, CSV parsing) and writes the cache; the second, in the same process with the in-memory builds forgotten,
memory-maps the cache. Both include turning the arrays into the float tensors a run trains on, so the ratio is what a
second run of a sweep gains. Nothing is read from a real data root.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench.data.formats import fixtures as F

REPEATS = 3


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


def _load_seconds(bench) -> tuple[float, int]:
    from bench.data.formats.base import clear_memo

    clear_memo()
    t0 = time.perf_counter()
    train, test = bench.build()
    return time.perf_counter() - t0, len(train) + len(test)


def perf_data(scenarios=SCENARIOS) -> list[dict]:
    """One row per reader: samples, first and cached load time (s) and samples/s, and the speed-up."""
    from bench.registry import BENCHMARKS

    rows = []
    with tempfile.TemporaryDirectory(prefix="mmrl-perf-data-") as tmp:
        root = Path(tmp)
        for sc in scenarios:
            sc.write(root)
            cls = BENCHMARKS.get(sc.benchmark)
            bench = cls(cls.Config(root=str(root), **sc.config))
            firsts = []
            for _ in range(REPEATS):  # best of three each way: a shared machine is noisy
                shutil.rmtree(bench.cache().dir, ignore_errors=True)
                t, n = _load_seconds(bench)
                firsts.append(t)
            first = min(firsts)
            cached = min(_load_seconds(bench)[0] for _ in range(REPEATS))
            rows.append({"benchmark": sc.benchmark, "samples": n, "first_s": first, "cached_s": cached,
                         "first_samples_s": n / first, "cached_samples_s": n / cached, "speedup": first / cached})
    return rows


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
