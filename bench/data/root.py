"""Where the paper datasets live: one data root holding a sub-folder per benchmark.

The root is, in order: an explicit ``--root`` (or a benchmark's ``root`` option), else ``$MMRL_DATA``, else
``~/.mmrl-bench/data``. Each benchmark reads only its own sub-folder (:data:`FOLDERS`); the two MNIST-SVHN benchmarks
share one, since they read the same files. Decoded arrays are cached under ``<root>/.cache`` unless
``$MMRL_DATA_CACHE`` names another place (a read-only shared root, for instance).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_ROOT = "MMRL_DATA"
ENV_CACHE = "MMRL_DATA_CACHE"
DEFAULT_ROOT = "~/.mmrl-bench/data"

#: benchmark name -> its sub-folder of the data root
FOLDERS = {
    "mnist-svhn": "mnist-svhn",
    "mnist-svhn-text": "mnist-svhn",
    "polymnist": "polymnist",
    "cub-icc": "cub-icc",
    "cubicc": "cubicc",
    "cub-200": "cub-200",
    "medmnist-organ": "medmnist-organ",
    "mimic-cxr": "mimic-cxr",
    "kvasir-seg": "kvasir-seg",
    "voc-2012": "voc-2012",
}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The absolute data root: ``root`` if given (and not empty), else ``$MMRL_DATA``, else the default."""
    chosen = root if root not in (None, "") else (os.environ.get(ENV_ROOT) or DEFAULT_ROOT)
    return Path(chosen).expanduser().resolve()


def benchmark_dir(benchmark: str, root: str | os.PathLike | None = None) -> Path:
    """The sub-folder of the data root that holds ``benchmark``'s files."""
    return data_root(root) / FOLDERS.get(benchmark, benchmark)


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """Where decoded arrays are cached: ``$MMRL_DATA_CACHE``, else ``<data root>/.cache``."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser().resolve() if env else data_root(root) / ".cache"
