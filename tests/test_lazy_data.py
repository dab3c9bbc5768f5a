"""Lazy modalities (bench.data.lazy): uint8 rows plus an index, converted only for the rows a batch gathers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data import load_splits
from bench.data.contracts import MISSING_INT, Modality, MultimodalDataset
from bench.testing import fixtures as F
from bench.data.formats.base import clear_memo, to_float_images
from bench.data.formats.medmnist import MedMnistOrgan
from bench.data.formats.segmentation import KvasirSeg
from bench.data.lazy import LazyImages, LazyInts, LazyRows, narrow_ints
from bench.eval.classifiers import fingerprint, observed_rows
from bench.registry import BENCHMARKS
from bench.train.loop import device_batches, shard

COUNTS = {"train": [5, 6, 4], "val": [1, 1, 1], "test": [3, 2, 3]}
VIEWS = dict(zip(("axial", "coronal", "sagittal"), F.ORGAN_FLAGS))


class RecordingSource:
    """A uint8 array that records every row read, and refuses any read but ``source[int64 rows]``."""

    def __init__(self, a: np.ndarray):
        self.a, self.shape, self.dtype, self.reads = a, a.shape, a.dtype, []

    def __getitem__(self, rows):
        assert isinstance(rows, np.ndarray) and rows.dtype == np.int64, f"read by {type(rows).__name__}"
        self.reads.append(rows.copy())
        return self.a[rows]

    def __array__(self, *a, **k):
        raise AssertionError("the whole source was read")

    def rows_read(self) -> list[int]:
        return sorted(np.concatenate(self.reads).tolist()) if self.reads else []


def bits(t: torch.Tensor) -> torch.Tensor:
    """The float32 values as their bit patterns, so that equality means bit-identical (NaN included)."""
    return t.contiguous().view(torch.int32)


def organ(root, **kw) -> MedMnistOrgan:
    return MedMnistOrgan(MedMnistOrgan.Config(root=str(root), **kw))


@pytest.fixture
def npz(tmp_path):
    return F.write_medmnist(tmp_path / "medmnist-organ", COUNTS)


def reference(npz: dict, split: str, name: str, index: torch.Tensor) -> torch.Tensor:
    """What the readers assembled before: the whole view converted by to_float_images, then the pairing gathered."""
    return to_float_images(npz[VIEWS[name]][f"{split}_images"][:, None])[index]


# --- a reader's batches against the old float path ---------------------------------------------------------------
@pytest.mark.parametrize("cached", [False, True])
def test_reader_batches_are_bit_identical_to_the_float_path(tmp_path, npz, cached):
    clear_memo()
    if cached:
        organ(tmp_path, dm=2).build()
        clear_memo()
    train, test = organ(tmp_path, dm=2).build()
    gen = torch.Generator().manual_seed(0)
    for split, ds in (("train", train), ("test", test)):
        for name in VIEWS:
            x = ds.data[name]
            assert isinstance(x, LazyImages) and isinstance(x.source, np.memmap)  # the cache, not a copy
            assert x.shape == (len(ds), 1, 28, 28) and x.dtype == torch.float32 and x.is_floating_point()
            ref = reference(npz, split, name, ds.extras[f"{name}_index"])
            idx = torch.randperm(len(ds), generator=gen)[:7]
            got = ds.batch(idx)["data"][name]
            assert got.dtype == torch.float32 and torch.equal(bits(got), bits(ref[idx]))
            assert torch.equal(bits(ds.batch(idx, device="cpu")["data"][name]), bits(ref[idx]))
            assert torch.equal(bits(x.materialize()), bits(ref))


def test_every_image_reader_stays_lazy(tmp_path):
    F.write_kvasir(tmp_path / "kvasir-seg", n=10)
    train, _ = KvasirSeg(KvasirSeg.Config(root=str(tmp_path), size=16)).build()
    assert isinstance(train.data["image"], LazyImages) and isinstance(train.data["mask"], LazyInts)
    masks = train.batch(torch.arange(len(train)))["data"]["mask"]
    assert masks.dtype == torch.long and set(masks.unique().tolist()) <= {0, 1}


# --- subsets and observation masks ---------------------------------------------------------------------------------
def test_splits_and_observation_masks_read_nan_for_unobserved_rows(tmp_path, npz):
    clear_memo()
    bench = organ(tmp_path, dm=3)
    full, _ = bench.build()
    train, val, _ = load_splits(bench, 0.4, seed=1, val_fraction=0.2)
    assert not train.mask.all() and bool(val.mask.all())
    for j, name in enumerate(train.names):
        x = train.data[name]
        assert isinstance(x, LazyImages) and x.source is full.data[name].source  # a view: the same memory map
        ref = reference(npz, "train", name, train.extras[f"{name}_index"])
        got = train.batch(torch.arange(len(train)))["data"][name]
        hidden = ~train.mask[:, j]
        assert torch.isnan(got[hidden]).all() and not torch.isnan(got[~hidden]).any()
        assert torch.equal(bits(got[~hidden]), bits(ref[~hidden]))
        vref = reference(npz, "train", name, val.extras[f"{name}_index"])
        assert torch.equal(bits(val.batch(torch.arange(len(val)))["data"][name]), bits(vref))


def test_with_mask_only_hides_and_matches_the_tensor_path():
    u8 = np.arange(6 * 4, dtype=np.uint8).reshape(6, 1, 2, 2) * 9
    ints = np.arange(6 * 3, dtype=np.uint8).reshape(6, 3)
    mods = (Modality("im", "image", (1, 2, 2)), Modality("t", "text", (3,), vocab_size=256))
    lazy = MultimodalDataset.complete(mods, {"im": LazyImages(u8), "t": LazyInts(ints)}, [0, 1, 0, 1, 0, 1])
    eager = MultimodalDataset.complete(mods, {"im": to_float_images(u8), "t": torch.from_numpy(ints).long()},
                                       [0, 1, 0, 1, 0, 1])
    first = torch.tensor([[1, 1], [0, 1], [1, 0], [1, 1], [0, 1], [1, 1]], dtype=torch.bool)
    second = torch.tensor([[1, 1], [1, 0], [1, 1], [0, 1], [1, 1], [1, 1]], dtype=torch.bool)
    idx = torch.tensor([5, 0, 3, 1, 2, 4])
    for masks in ((first,), (first, second)):
        a, b = lazy, eager
        for m in masks:
            a, b = a.with_mask(m), b.with_mask(m)
        ga, gb = a.batch(idx), b.batch(idx)
        assert torch.equal(bits(ga["data"]["im"]), bits(gb["data"]["im"]))  # NaN where either mask hid a row
        assert torch.equal(ga["data"]["t"], gb["data"]["t"]) and torch.equal(ga["mask"], gb["mask"])
    hidden = lazy.with_mask(first).with_mask(second).batch(torch.arange(6))["data"]["t"]
    assert (hidden[[1, 2]] == MISSING_INT).all() and (hidden[[0, 3, 4, 5]] != MISSING_INT).all()  # either mask
    sub = lazy.with_mask(first).subset(torch.tensor([1, 3]))
    assert torch.isnan(sub.batch([0])["data"]["im"]).all() and not torch.isnan(sub.batch([1])["data"]["im"]).any()


# --- nothing read or copied beyond the rows asked for --------------------------------------------------------------
def test_views_read_nothing_and_gathers_read_only_the_observed_rows_asked():
    rng = np.random.default_rng(0)
    src = RecordingSource(rng.integers(0, 256, (50, 3, 8, 8), dtype=np.uint8))
    n = 2000  # pairings repeat source rows: N > Nsrc
    index = torch.from_numpy(rng.integers(0, 50, n))
    x = LazyImages(src, index)
    sub = x.take(torch.arange(0, n, 3))
    hidden = torch.zeros(len(sub), dtype=torch.bool)
    hidden[::4] = True
    masked = sub.with_missing(hidden)
    assert src.reads == []  # views index the index: no row read
    assert masked.source is src and masked.index.nbytes == 8 * len(sub) and masked.missing.nbytes == len(sub)
    assert not any(isinstance(v, (torch.Tensor, np.ndarray)) and v.nbytes > 8 * n
                   for v in vars(masked).values())  # nothing the size of the pixels
    ask = torch.tensor([0, 1, 4, 7, 8, 9])
    got = masked[ask]
    assert src.rows_read() == sorted(sub.index[ask][~hidden[ask]].tolist())  # the hidden rows are not read
    assert torch.isnan(got[~hidden[ask].logical_not()]).all()
    want = torch.from_numpy(src.a[sub.index[ask].numpy()]).float() / 255
    assert torch.equal(bits(got[~hidden[ask]]), bits(want[~hidden[ask]]))


def test_a_memory_map_is_a_view_and_a_take_allocates_no_pixels(tmp_path):
    path = tmp_path / "images.npy"
    np.save(path, np.random.default_rng(1).integers(0, 256, (300, 1, 16, 16), dtype=np.uint8))
    mm = np.load(path, mmap_mode="r")
    x = LazyImages(mm, torch.arange(300).repeat(10))
    sub = x.take(torch.arange(0, 3000, 7))
    tensors = [v for v in vars(sub).values() if isinstance(v, torch.Tensor)]
    assert sub.source is mm and sum(t.nbytes for t in tensors) <= 9 * len(sub)  # index (8 B) + mask (1 B) per row
    assert sum(t.nbytes for t in tensors) < mm[0].nbytes * len(sub) / 16
    assert torch.equal(bits(sub[[2, 5]]), bits(to_float_images(np.asarray(mm))[sub.index[[2, 5]]]))


# --- code written for whole tensors ----------------------------------------------------------------------------------
def test_torch_ops_operators_and_methods_materialise():
    u8 = np.random.default_rng(2).integers(0, 256, (9, 2, 3, 3), dtype=np.uint8)
    index = torch.tensor([8, 0, 0, 3, 5, 1])
    missing = torch.tensor([False, False, True, False, False, False])
    x = LazyImages(u8, index, missing)
    ref = to_float_images(u8)[index]
    ref[2] = float("nan")
    assert torch.equal(bits(x.materialize()), bits(ref))
    assert torch.equal(bits(torch.cat([x, ref])), bits(torch.cat([ref, ref])))
    assert torch.allclose(x, ref, equal_nan=True) and torch.isnan(x).sum() == ref[2].numel()
    assert torch.equal(bits(x.flatten(1)), bits(ref.flatten(1))) and x.numpy().shape == tuple(ref.shape)
    assert float(torch.nansum(x)) == float(torch.nansum(ref)) and np.asarray(x).dtype == np.float32
    assert torch.equal(x == ref, ref == ref) and torch.equal(bits(x[~missing] - ref[~missing]), bits(ref[~missing] * 0))
    assert torch.equal(bits(x * 2), bits(ref * 2)) and torch.equal(bits(2 * x), bits(2 * ref))
    # every row key a tensor takes, and tuple keys
    for key in (3, -1, slice(1, 5, 2), torch.tensor([4, 0]), np.array([1, 3]), [5, 5, 0], ~missing,
                missing.numpy(), torch.tensor(2), np.int64(4)):
        assert torch.equal(bits(x[key]), bits(ref[key])), key
    assert torch.equal(bits(x[:, 1]), bits(ref[:, 1])) and torch.equal(bits(x[3, 0, 1]), bits(ref[3, 0, 1]))
    assert torch.equal(bits(x[..., 0]), bits(ref[..., 0]))
    with pytest.raises(IndexError, match="out of range"):
        x[6]


def test_bad_inputs_are_one_clear_line():
    u8 = np.zeros((4, 2, 2), dtype=np.uint8)
    cases = [(lambda: LazyImages(u8.astype(np.float32)), "must hold integers"),
             (lambda: LazyImages(u8.astype(np.int16)), "must be uint8"),
             (lambda: LazyImages(u8, torch.tensor([0, 4])), r"index in \[0, 4\].*valid: 0 to 3"),
             (lambda: LazyImages(u8, torch.tensor([0.5])), "1-D integer tensor"),
             (lambda: LazyImages(u8, None, torch.zeros(3, dtype=torch.bool)), r"shape \(4,\)"),
             (lambda: LazyImages(u8, scale=0), "scale must be > 0"),
             (lambda: LazyImages([1, 2]), "array of rows")]
    for make, msg in cases:
        with pytest.raises(ValueError, match=msg) as e:
            make()
        assert "\n" not in str(e.value)
    with pytest.raises(IndexError, match=r"shape \(4,\)"):
        LazyImages(u8)[torch.ones(3, dtype=torch.bool)]
    with pytest.raises(ValueError, match=r"data keys|tensor shape"):
        MultimodalDataset.complete((Modality("im", "image", (2, 3)),), {"im": LazyImages(u8)}, [0, 1, 0, 1])


def test_narrow_ints_read_back_identical():
    ids = torch.tensor([[0, 5, 300], [2, 1, 0]])
    lazy = narrow_ints(ids)
    assert lazy.source.dtype == np.int16 and lazy.dtype == torch.long and torch.equal(lazy[:], ids)
    assert narrow_ints(torch.tensor([[3, 200]])).source.dtype == np.uint8


# --- the harness's consumers -----------------------------------------------------------------------------------------
def test_classifier_rows_stay_lazy_and_fingerprint_like_the_tensor():
    u8 = np.random.default_rng(3).integers(0, 256, (20, 1, 4, 4), dtype=np.uint8)
    mods = (Modality("im", "image", (1, 4, 4)), Modality("v", "vector", (2,)))
    ds = MultimodalDataset.complete(mods, {"im": LazyImages(u8, torch.arange(20).flip(0)), "v": torch.zeros(20, 2)},
                                    torch.arange(20) % 2)
    mask = torch.ones(20, 2, dtype=torch.bool)
    mask[::3, 0] = False
    x, y = observed_rows(ds.with_mask(mask), "im")
    assert isinstance(x, LazyRows) and len(x) == len(y) == int(mask[:, 0].sum())
    assert fingerprint(x, y) == fingerprint(x.materialize(), y)
    assert fingerprint(x, y) != fingerprint(x.materialize() * 0.5, y)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_device_batches_are_the_sharded_cpu_batches(world):
    u8 = np.random.default_rng(4).integers(0, 256, (11, 1, 3, 3), dtype=np.uint8)
    mods = (Modality("im", "image", (1, 3, 3)), Modality("v", "vector", (2,)))
    ds = MultimodalDataset.complete(mods, {"im": LazyImages(u8, torch.arange(11) % 7), "v": torch.randn(11, 2)},
                                    torch.arange(11) % 3)
    for rank in range(world):
        old = [shard(b, rank, world) if world > 1 else (b, 1.0)
               for b in ds.batches(4, shuffle=True, generator=torch.Generator().manual_seed(5))]
        new = list(device_batches(ds, 4, torch.device("cpu"), rank, world, shuffle=True,
                                  generator=torch.Generator().manual_seed(5)))
        assert [w for _, w in old] == [w for _, w in new]
        for (a, _), (b, _) in zip(old, new):
            assert all(torch.equal(bits(a["data"][k]) if k == "im" else a["data"][k],
                                   bits(b["data"][k]) if k == "im" else b["data"][k]) for k in ds.names)
            assert torch.equal(a["mask"], b["mask"]) and torch.equal(a["label"], b["label"])


def test_embedded_benchmarks_keep_plain_tensors():
    bench = BENCHMARKS.get("digits-ms")(BENCHMARKS.get("digits-ms").Config(variants=1))
    train, val, test = load_splits(bench, 0.5, seed=0)
    assert all(type(v) is torch.Tensor for ds in (train, val, test) for v in ds.data.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gather_is_bit_identical_to_the_cpu_gather():
    u8 = np.random.default_rng(6).integers(0, 256, (500, 3, 16, 16), dtype=np.uint8)
    missing = torch.zeros(2000, dtype=torch.bool)
    missing[::5] = True
    x = LazyImages(u8, torch.from_numpy(np.random.default_rng(7).integers(0, 500, 2000)), missing)
    idx = torch.randperm(2000, generator=torch.Generator().manual_seed(8))[:256]
    got = x.gather(idx, "cuda")
    assert got.device.type == "cuda" and torch.equal(bits(got.cpu()), bits(x[idx]))
    ints = LazyInts(u8[:, 0, 0], x.index, missing)
    assert torch.equal(ints.gather(idx, "cuda").cpu(), ints[idx])
