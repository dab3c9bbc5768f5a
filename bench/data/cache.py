"""Decoded arrays of a paper benchmark, built once and memory-mapped on later runs.

Decoding thousands of PNG/JPEG files and resizing them costs far more than training reads, so each reader's
decoded output (uint8 images, label and index arrays, lists of strings) is stored once per
(benchmark, resolution) as ``.npy`` files (strings as JSON) and opened with ``mmap_mode="r"`` afterwards.

An entry lives at ``<cache root>/<benchmark>/<resolution>/<key>/`` where ``key`` hashes the names and sizes of the
source files plus the decoding parameters, so replacing, adding or removing a source file (or changing, say, the
pairing multiplier) selects a new entry; the stale ones of that (benchmark, resolution) are deleted once the new one
is complete. Entries are written into a temporary folder and renamed into place, so a killed build never leaves a
half-written entry that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

log = logging.getLogger(__name__)

Arrays = dict[str, "np.ndarray | list[str]"]
META = "meta.json"
KEY_LEN = 16


def source_key(files: Iterable[Path], base: Path, params: Mapping | None = None) -> str:
    """``<params hash>-<sources hash>``: the decoding options, then the files' paths (relative to ``base``) and
    sizes. Two parts so that a rebuild replaces only the entries made with the same options: two configurations
    used side by side (say, two pairing multipliers) keep one entry each instead of evicting each other."""
    p = hashlib.sha256(json.dumps(dict(params or {}), sort_keys=True, default=str).encode()).hexdigest()
    h = hashlib.sha256()
    prefix = len(str(base)) + 1
    # plain strings and os.stat: a real dataset has hundreds of thousands of files, and pathlib is slow per file
    for name in sorted(str(f) for f in files):
        h.update(f"{name[prefix:]}\t{os.stat(name).st_size}\n".encode())
    return f"{p[:8]}-{h.hexdigest()[:KEY_LEN]}"


class ArrayCache:
    """The cached entries of one (benchmark, resolution) under ``root`` (see :func:`bench.data.root.cache_root`)."""

    def __init__(self, root: Path, benchmark: str, resolution: str):
        self.dir = Path(root) / benchmark / str(resolution)

    def entry(self, key: str) -> Path:
        return self.dir / key

    def keys(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(p.name for p in self.dir.iterdir() if p.is_dir() and (p / META).is_file())

    def state(self, key: str) -> str:
        """``fresh`` (an entry for ``key``), ``stale`` (entries for other sources, same options) or ``none``."""
        keys = self.keys()
        if key in keys:
            return "fresh"
        return "stale" if any(_options(k) == _options(key) for k in keys) else "none"

    def load(self, key: str) -> Arrays | None:
        entry = self.entry(key)
        try:
            meta = json.loads((entry / META).read_text())
        except (OSError, ValueError):
            return None
        out: Arrays = {}
        for name in meta["arrays"]:
            out[name] = np.load(entry / f"{name}.npy", mmap_mode="r")
        for name in meta["texts"]:
            out[name] = json.loads((entry / f"{name}.json").read_text())
        return out

    def save(self, key: str, arrays: Arrays) -> None:
        """Write an entry atomically (temporary folder, then rename) and drop the stale entries."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            meta = {"key": key, "arrays": [], "texts": []}
            for name, value in arrays.items():
                if isinstance(value, np.ndarray):
                    np.save(tmp / f"{name}.npy", np.ascontiguousarray(value), allow_pickle=False)
                    meta["arrays"].append(name)
                else:
                    (tmp / f"{name}.json").write_text(json.dumps(list(value)))
                    meta["texts"].append(name)
            (tmp / META).write_text(json.dumps(meta))  # last: an entry without meta.json is never read
            try:
                os.rename(tmp, self.entry(key))
            except OSError:  # another process finished the same entry first: theirs is as good as ours
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for old in self.dir.iterdir():
            if old.name != key and not old.name.startswith(".tmp-") and _options(old.name) == _options(key):
                shutil.rmtree(old, ignore_errors=True)

    def load_or_build(self, key: str, build: Callable[[], Arrays]) -> tuple[Arrays, bool]:
        """(arrays, hit): the cached entry memory-mapped, or ``build()``'s arrays after caching them."""
        cached = self.load(key)
        if cached is not None:
            return cached, True
        arrays = build()
        try:
            self.save(key, arrays)
        except OSError as e:  # a read-only data root: still usable, just decoded every time
            log.warning("cannot cache decoded data in %s (%s); set $MMRL_DATA_CACHE to a writable folder",
                        self.dir, e)
            return arrays, False
        return self.load(key) or arrays, False


def _options(key: str) -> str:
    return key.partition("-")[0]


def decode_workers() -> int:
    """Threads that decode images (``$MMRL_DATA_WORKERS``; default: the CPUs, at most 8)."""
    env = os.environ.get("MMRL_DATA_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(8, os.cpu_count() or 1))
