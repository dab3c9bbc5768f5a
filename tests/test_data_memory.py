"""Resident memory of loading a paper dataset at the real release's sample counts stays proportional to its uint8
size (issue 16): medmnist-organ at 28 px, measured in fresh child processes by bench.perf.data."""

from __future__ import annotations

import sys

import numpy as np

from bench.perf.common import MB, PeakMeter, in_child
from bench.perf.data import organ_counts, organ_memory

# OrganA/C/SMNIST train + val + test images in the MedMNIST release (docs/datasets.md §1.5)
RELEASE_IMAGES = 34561 + 6491 + 17778 + 12975 + 2392 + 8216 + 13932 + 2452 + 8827
K = 1.5  # resident bytes per uint8 byte of the npz images: the bound
# What a load adds besides its data, independent of the dataset's size: the allocator's arenas and torch's first
# operations (thread pools, kernel caches: about 20 MB in a fresh process), the index tuples, labels and masks of
# ~100k samples (a few MB) and one float batch of 128 (1.2 MB at 28 px).
SLACK = 64 * MB


def _allocate_under_meters() -> tuple[int, int]:
    meter = PeakMeter()
    block = np.ones(96 * MB, dtype=np.uint8)  # ones, not zeros: every page is written, so resident
    del block
    return meter.peak(), PeakMeter().peak()


def test_meter_sees_what_a_step_allocates():
    # in a fresh process, as the meter is used (bench.perf.data): after a thousand tests this one's resident size
    # can fall by more than the block between the meter's start and the allocation (memory pools returning pages
    # from their own threads), which once read as a peak of 0
    peak, fresh = in_child(_allocate_under_meters)
    assert peak >= 90 * MB  # less what the interpreter returned meanwhile (a few hundred kB)
    if sys.platform.startswith("linux"):  # the peak restarts at each meter (clear_refs), so a fresh one is small
        assert fresh < 16 * MB


def test_the_fixture_has_the_release_counts():
    counts = organ_counts()
    assert counts["organamnist"] == (34561, 6491, 17778) and counts["organsmnist"] == (13932, 2452, 8827)
    assert sum(map(sum, counts.values())) == RELEASE_IMAGES


def test_loading_organ_at_the_release_counts_stays_within_1_5x_its_uint8_size(tmp_path):
    r = organ_memory(28, tmp_dir=str(tmp_path))
    u8 = r["u8_source"]
    assert u8 == RELEASE_IMAGES * 28 * 28
    bound = K * u8 + SLACK
    for label in ("first", "cached"):  # decode + cache, then the memory-mapped cache
        x = r[label]
        assert x["samples"][0] > 10000  # the class pairing kept the coronal view's ~13k training images
        for step in ("load_peak", "epoch_peak"):  # load_splits alone, then with one pass of training batches
            assert x[step] <= bound, (f"{label} {step}: {x[step] / MB:.0f} MB resident for {u8 / MB:.0f} MB of uint8 "
                                      f"images ({x[step] / u8:.1f}x); the bound is {bound / MB:.0f} MB")
