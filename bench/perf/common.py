"""What several perf verbs share: a method and its training data from the config tree, and the resident memory a
piece of work adds, measured in a fresh child process."""

from __future__ import annotations

import gc
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

MB = 1 << 20


def method_and_data(method: str, benchmark: str, overrides: list[str]):
    """(resolved spec, ``build()`` -> a fresh model seeded 0, the training split) of ``method`` on ``benchmark``."""
    import torch

    from bench.build import benchmark_from, method_from
    from bench.compose import compose
    from bench.data import load_splits
    from bench.run import check_device, resolve_spec

    spec = resolve_spec(compose([f"method={method}", f"benchmark={benchmark}", *overrides]))
    check_device(spec["trainer"])  # a cuda trainer measured on the CPU would print CPU figures under its name
    bench = benchmark_from(benchmark, spec["benchmark"]["config"])
    train, _, _ = load_splits(bench, 1.0, 0, val_fraction=0.0)

    def build():
        torch.manual_seed(0)
        return method_from(method, bench.spec(), spec["method"]["config"])

    return spec, build, train


# --- resident memory of this process -------------------------------------------------------------------------------
def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    """Resident memory now (Linux); elsewhere the peak so far, the best the standard library offers."""
    kib = _status_kib("VmRSS")
    return kib * 1024 if kib is not None else _ru_maxrss()


def peak_rss_bytes() -> int:
    """Peak resident memory since the process started or since :func:`reset_peak_rss`."""
    kib = _status_kib("VmHWM")
    return kib * 1024 if kib is not None else _ru_maxrss()


def _ru_maxrss() -> int:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024  # bytes on macOS, KiB on Linux


def reset_peak_rss() -> None:
    """Restart the peak from the current resident size (Linux >= 4.0). Where that is refused the peak stays the
    process's own, which in a fresh child that has only imported modules is close to its resident size anyway."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class PeakMeter:
    """The resident memory a piece of work adds at its peak: peak RSS since creation less the RSS at creation."""

    def __init__(self) -> None:
        gc.collect()
        self.base = rss_bytes()
        reset_peak_rss()

    def peak(self) -> int:
        return max(0, peak_rss_bytes() - self.base)

    def now(self) -> int:
        return rss_bytes() - self.base


def in_child(fn: Callable, *args):
    """``fn(*args)`` in a fresh spawned process (it inherits nothing but the arguments and the environment)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()
