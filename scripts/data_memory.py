"""Resident memory of loading medmnist-organ at the real release's sample counts (generated pixels).

    python scripts/data_memory.py --size 128            # 28, 64, 128 or 224 px
    python scripts/data_memory.py --size 224 --tmp /big/disk

Writes the three organ npz files (OrganA/C/SMNIST: 34,561 / 6,491 / 17,778, 12,975 / 2,392 / 8,216 and
13,932 / 2,452 / 8,827 train / val / test images) into a temporary data root, then in a fresh child process each
runs ``load_splits`` as a run does, first with no cache (decode + cache) and then cached, followed by one pass over
the training batches. Prints the uint8 size of the npz images and the peak resident memory each step adds to its
process (bench.perf.common.PeakMeter), with their ratio. Needs about twice the uint8 size in free disk (npz + cache).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's bench, not an installed one

GB = 1e9


def report(r: dict) -> list[str]:
    u8 = r["u8_source"]
    lines = [f"medmnist-organ {r['size']} px, rho {r['rho']}: npz images {u8 / GB:.3f} GB uint8 "
             f"(train/val/test tuples {'/'.join(map(str, r['first']['samples']))}; "
             f"uint8 arrays in the cache {r['first']['u8_cache'] / GB:.3f} GB)"]
    for label in ("first", "cached"):
        x = r[label]
        name = "first load (decode + cache)" if label == "first" else "cached load (mmap)"
        lines.append(f"  {name:28s} load {x['load_s']:6.1f} s  peak {x['load_peak'] / GB:5.2f} GB "
                     f"({x['load_peak'] / u8:.2f}x uint8) | load + one epoch of batches: +{x['epoch_s']:.1f} s  "
                     f"peak {x['epoch_peak'] / GB:5.2f} GB ({x['epoch_peak'] / u8:.2f}x)  "
                     f"resident at the end {x['end_rss'] / GB:.2f} GB (the child's own before the load: "
                     f"{x['base_rss'] / GB:.2f} GB)")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128, help="image side: 28, 64, 128 or 224 (default 128)")
    ap.add_argument("--rho", type=float, default=1.0, help="observation ratio of the training split (default 1.0)")
    ap.add_argument("--tmp", help="folder for the temporary data root (default: the system's temporary folder)")
    args = ap.parse_args(argv)

    from bench.errors import BenchError
    from bench.perf.data import organ_memory

    try:
        r = organ_memory(args.size, args.rho, tmp_dir=args.tmp)
    except BenchError as e:
        print(f"data_memory: {e}", file=sys.stderr)
        return 2
    print("\n".join(report(r)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
