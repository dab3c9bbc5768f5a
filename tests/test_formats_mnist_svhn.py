"""mnist-svhn and mnist-svhn-text on tiny files in the real formats: torchvision MNIST (raw IDX, gzipped, processed
.pt), SVHN .mat files and mmvae's pair index files."""

from __future__ import annotations

import pytest
import scipy.io
import torch

from bench.testing import fixtures as F
from bench.data.formats.mnist_svhn import MnistSvhn, MnistSvhnText, read_svhn
from bench.data.text import ALPHABET
from bench.errors import DataError, DataMissing


def bench(cls, root, **kw):
    return cls(cls.Config(root=str(root), **kw))


@pytest.fixture
def written(tmp_path):
    # 3 classes; train: 4 MNIST / 3 SVHN per class, test: 2 / 2
    return F.write_mnist_svhn(tmp_path / "mnist-svhn")


def test_recomputed_pairing_lengths_shapes_and_class_pairs(tmp_path, written):
    train, test = bench(MnistSvhn, tmp_path, dm=2).build()
    assert len(train) == 3 * min(4, 3) * 2 and len(test) == 3 * 2 * 2  # per class min(#mnist, #svhn) x dm
    assert train.data["mnist"].shape == (18, 1, 28, 28) and train.data["svhn"].shape == (18, 3, 32, 32)
    assert train.data["mnist"].dtype == torch.float32 and train.labels.dtype == torch.long
    assert 0.0 <= float(train.data["svhn"].min()) and float(train.data["svhn"].max()) <= 1.0
    for split, ds in (("train", train), ("test", test)):
        mx, my = written["mnist"][split]
        sx, sy = written["svhn"][split]
        mi, si = ds.extras["mnist_index"].numpy(), ds.extras["svhn_index"].numpy()
        assert (my[mi] == sy[si]).all() and (ds.labels.numpy() == my[mi]).all()  # a pair shares its class
        # each side holds exactly the source image it names, from its own split's file
        assert torch.equal(ds.data["mnist"][:, 0], torch.from_numpy(mx[mi]).float() / 255)
        assert torch.equal(ds.data["svhn"], torch.from_numpy(sx[si]).float() / 255)


def test_svhn_label_10_is_the_digit_0(tmp_path, written):
    path = tmp_path / "mnist-svhn" / "SVHN" / "train_32x32.mat"
    raw = scipy.io.loadmat(path)["y"].reshape(-1)
    assert 10 in raw and 0 not in raw  # the file really uses 10 for zero
    x, y = read_svhn(path)
    assert sorted(set(y.tolist())) == [0, 1, 2] and (y[raw == 10] == 0).all()
    assert x.shape == (9, 3, 32, 32)
    # X is (32, 32, 3, N) on disk: pixel (row, col, channel, n) -> [n, channel, row, col]
    assert x[4, 2, 5, 7] == scipy.io.loadmat(path)["X"][5, 7, 2, 4]


def test_pairing_is_seeded_and_dm_multiplies(tmp_path, written):
    a = bench(MnistSvhn, tmp_path, dm=1, seed=0).build()[0]
    b = bench(MnistSvhn, tmp_path, dm=1, seed=0).build()[0]
    c = bench(MnistSvhn, tmp_path, dm=1, seed=1).build()[0]
    assert torch.equal(a.extras["svhn_index"], b.extras["svhn_index"])
    assert not torch.equal(a.extras["mnist_index"], c.extras["mnist_index"])
    assert len(bench(MnistSvhn, tmp_path, dm=3).build()[0]) == 3 * len(a)


@pytest.mark.parametrize("kind, gz", [("processed", False), ("raw", True)])
def test_other_mnist_layouts(tmp_path, kind, gz):
    folder = tmp_path / "mnist-svhn"
    labels = {"train": F.per_class([0, 1], 3), "test": F.per_class([0, 1], 2)}
    mnist = F.write_mnist(folder, labels, kind=kind, gz=gz)
    F.write_svhn(folder, labels)
    b = bench(MnistSvhn, tmp_path, dm=1)
    assert b.probe().variant.startswith(f"MNIST {kind}")
    train, _ = b.build()
    mi = train.extras["mnist_index"].numpy()
    assert torch.equal(train.data["mnist"][:, 0], torch.from_numpy(mnist["train"][0][mi]).float() / 255)


def test_mmvae_index_files_give_the_pairs_and_the_length(tmp_path, written):
    folder = tmp_path / "mnist-svhn"
    my, sy = written["mnist"]["train"][1], written["svhn"]["train"][1]
    pairs = [(m, s) for m in range(len(my)) for s in range(len(sy)) if my[m] == sy[s]][:7]
    F.write_mmvae_index(folder, "train", [p[0] for p in pairs], [p[1] for p in pairs])
    F.write_mmvae_index(folder, "test", [0, 1], [1, 0])  # test: MNIST 0, 1 and SVHN 0, 1 are class 0
    b = bench(MnistSvhn, tmp_path)
    assert "mmvae index files" in b.probe().variant
    train, test = b.build()
    assert len(train) == 7 and len(test) == 2  # the length is the index files', not assumed
    assert train.extras["mnist_index"].tolist() == [p[0] for p in pairs]
    assert train.extras["svhn_index"].tolist() == [p[1] for p in pairs]
    # the text benchmark follows MoPoE: it recomputes the pairing and never reads the index files
    assert "recomputed" in bench(MnistSvhnText, tmp_path).probe().variant


def test_index_files_pairing_different_classes_are_refused(tmp_path, written):
    folder = tmp_path / "mnist-svhn"
    F.write_mmvae_index(folder, "train", [0, 1], [0, 5])  # MNIST 1 is class 0, SVHN 5 is class 1
    F.write_mmvae_index(folder, "test", [0], [0])
    with pytest.raises(DataError, match=r"train-ms-mnist-idx\.pt: pair 1 joins MNIST 1 \(class 0\) with SVHN 5 "
                                        r"\(class 1\)"):
        bench(MnistSvhn, tmp_path).build()


def test_mat_without_y_is_one_clear_error(tmp_path):
    folder = tmp_path / "mnist-svhn"
    labels = {"train": F.per_class([0, 1], 2), "test": F.per_class([0, 1], 2)}
    F.write_mnist(folder, labels)
    F.write_svhn(folder, labels, drop="y")
    with pytest.raises(DataError) as e:
        bench(MnistSvhn, tmp_path).build()
    msg = str(e.value)
    assert "train_32x32.mat" in msg and "no 'y'" in msg and "\n" not in msg


def test_truncated_idx_file_is_one_clear_error(tmp_path, written):
    path = tmp_path / "mnist-svhn" / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: .* the file is truncated"):
        bench(MnistSvhn, tmp_path).build()


def test_absent_and_partial_data(tmp_path):
    b = bench(MnistSvhn, tmp_path)
    with pytest.raises(DataMissing, match=r"no mnist-svhn data in .*mnist-svhn"):
        b.build()
    assert b.probe().state == "missing"
    F.write_mnist(tmp_path / "mnist-svhn", {"train": F.per_class([0, 1], 2), "test": F.per_class([0, 1], 2)})
    p = b.probe()
    assert p.state == "incomplete" and p.missing_files == ("SVHN/train_32x32.mat", "SVHN/test_32x32.mat")


def test_text_modality_spells_the_label(tmp_path, written):
    train, _ = bench(MnistSvhnText, tmp_path, dm=1).build()
    assert train.data["text"].shape == (len(train), 8) and train.data["text"].dtype == torch.long
    for ids, y in zip(train.data["text"].tolist(), train.labels.tolist()):
        assert "".join(ALPHABET[i] for i in ids).strip() == F.WORDS[y]


def test_a_changed_source_file_rebuilds_the_cache(tmp_path, written):
    b = bench(MnistSvhn, tmp_path, dm=1)
    first = b.build()[1]
    cache_dir = b.cache().dir
    (old,) = b.cache().keys()
    F.write_svhn(tmp_path / "mnist-svhn", {"test": F.per_class([0, 1, 2], 1)})  # one SVHN test image per class
    second = b.build()[1]
    assert len(first) == 6 and len(second) == 3
    (new,) = b.cache().keys()
    assert new != old and not (cache_dir / old).exists()
