"""Readers of the paper datasets in their standard on-disk formats (docs/datasets.md §1); importing this package
registers their benchmarks. Registration reads no file: each benchmark looks at its folder of the data root
(:mod:`bench.data.root`) only when it is built, probed by ``bench data check``, or planned by a sweep."""

from bench.data.formats import (  # noqa: F401  (imported for registration)
    cub,
    medmnist,
    mimic,
    mnist_svhn,
    polymnist,
    segmentation,
)
