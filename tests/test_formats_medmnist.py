"""medmnist-organ on tiny ``organ{a,c,s}mnist*.npz`` files in the MedMNIST format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.testing import fixtures as F
from bench.data.formats.medmnist import MedMnistOrgan
from bench.errors import DataError

# images per class and split in the axial view; the coronal and sagittal views have one and two more per class
COUNTS = {"train": [3, 4, 2], "val": [1, 1, 1], "test": [2, 1, 2]}


def make(root, **kw):
    return MedMnistOrgan(MedMnistOrgan.Config(root=str(root), **kw))


@pytest.fixture
def npz(tmp_path):
    return F.write_medmnist(tmp_path / "medmnist-organ", COUNTS)


def test_class_paired_tuples_from_the_official_splits(tmp_path, npz):
    b = make(tmp_path, dm=2)
    assert b.probe().found == {f"{v} {s}": sum(COUNTS[s]) + k * 3 for k, v in enumerate(("axial", "coronal", "sagittal"))
                               for s in ("train", "val", "test")}
    train, test = b.build()
    assert len(train) == 2 * sum(COUNTS["train"]) and len(test) == 2 * sum(COUNTS["test"])  # the axial view is smallest
    assert train.names == ("axial", "coronal", "sagittal")
    assert train.data["axial"].shape == (len(train), 1, 28, 28) and train.data["axial"].dtype == torch.float32
    for split, ds in (("train", train), ("test", test)):
        for name, flag in zip(ds.names, F.ORGAN_FLAGS):
            idx = ds.extras[f"{name}_index"].numpy()
            y = npz[flag][f"{split}_labels"][:, 0]
            assert (y[idx] == ds.labels.numpy()).all()  # every view of a tuple shows the tuple's class
            assert torch.equal(ds.data[name][:, 0], torch.from_numpy(npz[flag][f"{split}_images"][idx]).float() / 255)
    # a class-level pairing, not an instance one: with dm=1 the larger coronal pool gives a subset, no repeats
    once = make(tmp_path, dm=1).build()[0].extras["coronal_index"].numpy()
    assert len(np.unique(once)) == len(once) == sum(COUNTS["train"]) < len(npz["organcmnist"]["train_labels"])


def test_pairing_is_seeded(tmp_path, npz):
    a, b, c = (make(tmp_path, seed=s).build()[0] for s in (0, 0, 1))
    assert torch.equal(a.extras["sagittal_index"], b.extras["sagittal_index"])
    assert not torch.equal(a.extras["sagittal_index"], c.extras["sagittal_index"])


def test_an_npz_without_a_key_is_one_clear_error(tmp_path):
    F.write_medmnist(tmp_path / "medmnist-organ", COUNTS, drop=("organcmnist", "test_labels"))
    with pytest.raises(DataError) as e:
        make(tmp_path).build()
    msg = str(e.value)
    assert "organcmnist.npz: no key 'test_labels'" in msg and "train_images" in msg and "\n" not in msg
    assert make(tmp_path).probe().state == "incomplete"


def test_size_selects_the_files(tmp_path):
    F.write_medmnist(tmp_path / "medmnist-organ", COUNTS, size=64)
    assert make(tmp_path).probe().state == "missing"
    b = make(tmp_path, size=64)
    assert b.probe().variant == "MedMNIST npz, 64 px"
    assert b.build()[0].data["coronal"].shape[1:] == (1, 64, 64)


def test_missing_view_is_incomplete(tmp_path, npz):
    (tmp_path / "medmnist-organ" / "organsmnist.npz").unlink()
    p = make(tmp_path).probe()
    assert p.state == "incomplete" and p.missing_files == ("organsmnist.npz",)
