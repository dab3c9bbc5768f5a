"""The data root, the decode cache (atomic, keyed by the source files, memory-mapped) and registration that reads
no file."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from bench.data.cache import ArrayCache, source_key
from bench.testing import fixtures as F
from bench.data.root import benchmark_dir, cache_root, data_root
from conftest import python


def test_root_resolution_order(tmp_path, monkeypatch):
    monkeypatch.delenv("MMRL_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root() == tmp_path / "home" / ".mmrl-bench" / "data"
    monkeypatch.setenv("MMRL_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env" and data_root("") == tmp_path / "env"
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert benchmark_dir("polymnist", tmp_path) == tmp_path / "polymnist"
    assert benchmark_dir("mnist-svhn-text", tmp_path) == tmp_path / "mnist-svhn"  # the two share their files
    assert cache_root(tmp_path) == tmp_path / ".cache"
    monkeypatch.setenv("MMRL_DATA_CACHE", str(tmp_path / "elsewhere"))
    assert cache_root(tmp_path) == tmp_path / "elsewhere"


def test_key_follows_names_sizes_and_options(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"12345")
    b.write_bytes(b"xy")
    key = source_key([a, b], tmp_path, {"size": 28})
    assert source_key([b, a], tmp_path, {"size": 28}) == key  # order of listing does not matter
    assert source_key([a, b], tmp_path, {"size": 64}).split("-")[1] == key.split("-")[1]
    assert source_key([a, b], tmp_path, {"size": 64}) != key
    a.write_bytes(b"123456")
    assert source_key([a, b], tmp_path, {"size": 28}) != key
    a.rename(tmp_path / "c.bin")
    assert source_key([tmp_path / "c.bin", b], tmp_path, {"size": 28}) != key


def test_entries_are_memory_mapped_atomic_and_replace_stale_ones(tmp_path):
    cache = ArrayCache(tmp_path, "bench", "28px")
    arrays = {"x": np.arange(12, dtype=np.uint8).reshape(3, 4), "names": ["a", "b"]}
    got, hit = cache.load_or_build("aaaa-1111", lambda: arrays)
    assert not hit and isinstance(got["x"], np.memmap) and got["names"] == ["a", "b"]
    got, hit = cache.load_or_build("aaaa-1111", lambda: pytest.fail("rebuilt a fresh entry"))
    assert hit and np.array_equal(got["x"], arrays["x"])
    assert cache.state("aaaa-1111") == "fresh" and cache.state("aaaa-2222") == "stale"
    assert cache.state("bbbb-1111") == "none"  # other decoding options: not this entry's concern

    def broken():
        raise RuntimeError("decoder crashed")

    with pytest.raises(RuntimeError):
        cache.load_or_build("aaaa-2222", broken)
    assert cache.keys() == ["aaaa-1111"]  # a failed build leaves nothing
    # a folder left by a killed writer (no meta.json, or a temporary name) is never read
    (cache.dir / "aaaa-3333").mkdir()
    np.save(cache.dir / "aaaa-3333" / "x.npy", np.zeros(3))
    assert cache.load("aaaa-3333") is None
    cache.load_or_build("aaaa-2222", lambda: arrays)
    cache.load_or_build("bbbb-1111", lambda: arrays)
    assert cache.keys() == ["aaaa-2222", "bbbb-1111"]  # the stale entry went, the other options' entry stays
    assert not [p for p in cache.dir.iterdir() if p.name.startswith(".tmp-")]
    assert json.loads((cache.dir / "aaaa-2222" / "meta.json").read_text())["arrays"] == ["x"]


def test_a_read_only_cache_place_still_loads(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    got, hit = ArrayCache(blocker, "bench", "28px").load_or_build("k-1", lambda: {"x": np.ones(2)})
    assert not hit and np.array_equal(got["x"], np.ones(2)) and "MMRL_DATA_CACHE" in caplog.text


def test_registration_and_listing_read_no_data_file(tmp_path):
    """Every benchmark is registered, instantiated and listed (`bench ls benchmarks`) with a data root full of
    fixtures, and no file or folder under it is opened or listed (audit hooks see every open and listdir)."""
    F.write_polymnist_png(tmp_path / "polymnist", {"train": 1, "test": 1})
    F.write_medmnist(tmp_path / "medmnist-organ", {"train": [2, 2], "val": [1, 1], "test": [1, 1]})
    code = f"""
import os, sys
root = {str(tmp_path)!r}
touched = []
def hook(event, args):
    if event in ("open", "os.listdir", "os.scandir") and args and str(args[0]).startswith(root):
        touched.append((event, str(args[0])))
sys.addaudithook(hook)
os.environ["MMRL_DATA"] = root
from bench.cli import main
from bench.registry import BENCHMARKS
assert main(["ls", "benchmarks"]) == 0
for name in BENCHMARKS.names():
    BENCHMARKS.get(name)()
print("TOUCHED", touched)
"""
    out = subprocess.run([python(), "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "polymnist" in out.stdout and "TOUCHED []" in out.stdout, out.stdout[-2000:]


def test_the_root_changes_neither_the_splits_nor_the_run_id(tmp_path):
    import shutil

    import torch

    from bench.compose import compose
    from bench.data import load_splits
    from bench.data.formats.polymnist import PolyMnist
    from bench.run import resolve_spec
    from bench.spec import compute_run_id

    F.write_polymnist_png(tmp_path / "a" / "polymnist", {"train": 6, "test": 2})
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    a, b = (load_splits(PolyMnist(PolyMnist.Config(root=str(tmp_path / r))), 0.5, seed=3) for r in "ab")
    for x, y in zip(a, b):
        assert torch.equal(x.mask, y.mask) and torch.equal(x.labels, y.labels)
        assert torch.equal(x.data["m2"].nan_to_num(-1), y.data["m2"].nan_to_num(-1))
    ids = {compute_run_id(resolve_spec(compose(["benchmark=polymnist", f"benchmark.root={tmp_path / r}"])))
           for r in "ab"}
    assert len(ids) == 1
