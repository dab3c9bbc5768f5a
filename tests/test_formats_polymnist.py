"""polymnist on tiny files in the real formats: the generator's PNG tree ``m{k}/{i}.{digit}.png`` and multivae's
tensors."""

from __future__ import annotations

import os
import random
import shutil

import numpy as np
import pytest
import torch

from bench.testing import fixtures as F
from bench.data.formats.base import clear_memo
from bench.data.formats.polymnist import PolyMnist
from bench.errors import DataError


def bench(root, **kw):
    return PolyMnist(PolyMnist.Config(root=str(root), **kw))


@pytest.fixture
def tree(tmp_path):
    return F.write_polymnist_png(tmp_path / "polymnist", {"train": 4, "test": 2}, classes=(0, 1, 2))


def expected_images(tree, split, ds, k):
    return torch.stack([torch.from_numpy(tree[split][i, y][k]).float() / 255
                        for i, y in zip(ds.extras["file_index"].tolist(), ds.labels.tolist())])


def test_png_tree_lengths_shapes_labels_and_tuples(tmp_path, tree):
    train, test = bench(tmp_path).build()
    assert (len(train), len(test)) == (12, 6)
    assert train.names == ("m0", "m1", "m2", "m3", "m4")
    assert all(train.data[f"m{k}"].shape == (12, 3, 28, 28) and train.data[f"m{k}"].dtype == torch.float32
               for k in range(5))
    # the label is the digit of the file name, the tuple is the five files of one name
    assert sorted(zip(train.extras["file_index"].tolist(), train.labels.tolist())) == sorted(tree["train"])
    for split, ds in (("train", train), ("test", test)):
        for k in range(5):
            assert torch.equal(ds.data[f"m{k}"], expected_images(tree, split, ds, k))


def test_alignment_survives_shuffled_directory_listings(tmp_path, tree, monkeypatch):
    reference = bench(tmp_path).build()[0]
    shutil.copytree(tmp_path / "polymnist", tmp_path / "other" / "polymnist")  # uncached copy
    real = os.listdir
    rng = random.Random(0)
    listings = {}

    def shuffled(path="."):
        names = real(path)
        rng.shuffle(names)  # a different order on every call, as a file system may give
        listings[os.path.basename(str(path))] = names
        return names

    monkeypatch.setattr(os, "listdir", shuffled)
    again = bench(tmp_path / "other").build()[0]
    # not vacuous: the modalities' listings really came back in different orders
    assert len({tuple(listings[f"m{k}"]) for k in range(5)}) > 1
    for k in range(5):
        assert torch.equal(again.data[f"m{k}"], reference.data[f"m{k}"])
    assert torch.equal(again.labels, reference.labels)


def test_mismatched_name_sets_are_one_clear_error(tmp_path, tree):
    (tmp_path / "polymnist" / "train" / "m3" / "2.1.png").unlink()
    with pytest.raises(DataError) as e:
        bench(tmp_path).build()
    msg = str(e.value)
    assert "train/m3: file names differ from" in msg and "1 only in m0 (e.g. 2.1.png)" in msg and "\n" not in msg
    assert bench(tmp_path).probe().state == "incomplete"


def test_an_extra_file_in_one_modality_is_an_error(tmp_path, tree):
    shutil.copy(tmp_path / "polymnist" / "test" / "m0" / "0.0.png", tmp_path / "polymnist" / "test" / "m2" / "9.0.png")
    with pytest.raises(DataError, match=r"test/m2: file names differ .*1 only in m2 \(e\.g\. 9\.0\.png\)"):
        bench(tmp_path).build()


def test_bad_file_name_is_an_error(tmp_path, tree):
    for k in range(5):
        shutil.copy(tmp_path / "polymnist" / "train" / f"m{k}" / "0.0.png",
                    tmp_path / "polymnist" / "train" / f"m{k}" / "zero.png")
    with pytest.raises(DataError, match=r"m0/zero\.png: not a PolyMNIST file name; expected \{i\}\.\{digit\}\.png"):
        bench(tmp_path).build()


def test_truncated_png_is_one_clear_error(tmp_path, tree):
    path = tmp_path / "polymnist" / "test" / "m4" / "1.2.png"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match=r"test/m4/1\.2\.png: cannot decode the image .*truncated or corrupt"):
        bench(tmp_path).build()


def test_tensor_variant(tmp_path):
    written = F.write_polymnist_tensors(tmp_path / "polymnist" / "MMNIST", {"train": 3, "test": 2})
    b = bench(tmp_path)
    assert b.probe().variant == "tensors" and b.probe().found == {"train": 9, "test": 6}
    train, test = b.build()
    mods, y = written["test"]
    assert torch.equal(test.labels, torch.from_numpy(y))
    assert torch.equal(test.data["m3"], torch.from_numpy(mods[3]).float() / 255)
    torch.save(torch.zeros(8, 3, 28, 28), tmp_path / "polymnist" / "MMNIST" / "train" / "m2.pt")
    with pytest.raises(DataError, match=r"train/m2\.pt: tensor of shape \(8, 3, 28, 28\); expected \[9, 3, H, W\]"):
        bench(tmp_path).build()


def test_resized_images(tmp_path, tree):
    train, _ = bench(tmp_path, size=16).build()
    assert train.data["m0"].shape == (12, 3, 16, 16) and bench(tmp_path, size=16).spec().modalities[0].shape == (3, 16, 16)


def test_second_load_reads_the_cache_and_a_changed_png_rebuilds_it(tmp_path, tree, monkeypatch):
    b = bench(tmp_path)
    decoded = []
    real_decode = PolyMnist.decode
    monkeypatch.setattr(PolyMnist, "decode", lambda self, layout: decoded.append(1) or real_decode(self, layout))
    first = b.build()[0]
    clear_memo()
    assert torch.equal(b.build()[0].data["m1"], first.data["m1"]) and len(decoded) == 1  # from the cache
    (old,) = b.cache().keys()
    path = tmp_path / "polymnist" / "train" / "m1" / "3.2.png"
    size = path.stat().st_size
    F.save_image(path, np.full((3, 28, 28), 7, np.uint8))  # a flat image: a different file size
    assert path.stat().st_size != size
    clear_memo()
    second = b.build()[0]
    assert len(decoded) == 2
    (new,) = b.cache().keys()
    assert new != old
    row = [j for j, (i, y) in enumerate(zip(second.extras["file_index"].tolist(), second.labels.tolist()))
           if (i, y) == (3, 2)][0]
    assert torch.allclose(second.data["m1"][row], torch.full((3, 28, 28), 7 / 255))
    assert not torch.equal(second.data["m1"][row], first.data["m1"][row])


def test_the_engine_observation_split_applies(tmp_path, tree):
    from bench.data import load_splits

    train, val, test = load_splits(bench(tmp_path), 0.5, seed=0, val_fraction=0.0)
    observed = train.mask.sum(1)
    assert (observed == 5).sum() == 6 and (observed == 1).sum() == 6  # half paired, the rest one modality each
    assert torch.isnan(train.data["m0"][~train.mask[:, 0]]).all() and test.mask.all() and val is None
