"""cub-icc (mmvae's cub/ tree with caption files), cubicc (CMVAE's tensors) and cub-200 (the CUB-200-2011 release)
on tiny files in the real formats."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from bench.testing import fixtures as F
from bench.data.formats.cub import Cub200, Cubicc, CubIcc
from bench.data.text import EOS, EXC, PAD, words
from bench.errors import DataError

TRAIN_CLASSES = F.cub_class_names(2)            # 001.Black_footed_Albatross, 002.Laysan_Albatross
TEST_CLASSES = F.cub_class_names(1, start=3)    # 003.Sooty_Albatross: class-disjoint


def make(cls, root, **kw):
    return cls(cls.Config(root=str(root), **kw))


@pytest.fixture
def cub(tmp_path):
    return F.write_cub_icc(tmp_path / "cub-icc" / "cub", TRAIN_CLASSES, TEST_CLASSES, n_per_class=2)


def decode(ds, name):
    itos = ds.modalities[ds.names.index(name)].vocab
    return [[itos[i] for i in row] for row in ds.data[name].tolist()]


def test_cub_icc_ten_captions_per_image_and_k_to_k_div_10(tmp_path, cub):
    train, test = make(CubIcc, tmp_path, min_occ=0).build()
    assert (len(train), len(test)) == (40, 20)  # 10 x 4 and 10 x 2 images
    assert train.data["image"].shape == (40, 3, 64, 64) and train.data["image"].dtype == torch.float32
    assert train.data["caption"].shape == (40, 32) and train.data["caption"].dtype == torch.long
    assert train.extras["image_index"].tolist() == [k // 10 for k in range(40)]
    for k in range(0, 40, 7):  # caption k is line k of the caption file and its image is image k // 10
        tokens = decode(train, "caption")[k]
        assert tokens[: tokens.index("<eos>")] == words(cub["train"]["captions"][k])
        assert torch.equal(train.data["image"][k], train.data["image"][(k // 10) * 10])
    assert not torch.equal(train.data["image"][0], train.data["image"][10])


def test_cub_icc_imagefolder_order_and_class_disjoint_labels(tmp_path, cub):
    train, test = make(CubIcc, tmp_path).build()
    # ImageFolder order: sorted class folders, sorted files; labels index the union of the class folders
    assert train.labels[::10].tolist() == [0, 0, 1, 1] and test.labels.unique().tolist() == [2]
    assert not set(train.labels.tolist()) & set(test.labels.tolist())
    assert make(CubIcc, tmp_path).spec().n_classes == 3


def test_cub_icc_vocabulary_from_train_only_with_the_special_tokens(tmp_path, cub):
    train, test = make(CubIcc, tmp_path, min_occ=0).build()
    itos = train.modalities[1].vocab
    assert itos[:3] == ("<exc>", "<pad>", "<eos>") and (EXC, PAD, EOS) == (0, 1, 2)
    assert "sooty" not in itos and "laysan" in itos  # "sooty" is only in the test captions
    row = test.data["caption"][0].tolist()
    assert row[words(cub["test"]["captions"][0]).index("sooty")] == EXC
    n = len(words(cub["train"]["captions"][0]))
    assert train.data["caption"][0, n] == EOS and (train.data["caption"][0, n + 1 :] == PAD).all()
    # min_occ: a word is kept only if the train captions hold it more than min_occ times
    counts = Counter(w for c in cub["train"]["captions"] for w in words(c))
    strict = set(make(CubIcc, tmp_path, min_occ=4).build()[0].modalities[1].vocab)
    assert counts["7"] == 4 and "7" not in strict and counts["0"] > 4 and "0" in strict
    assert strict - {"<exc>", "<pad>", "<eos>"} == {w for w, c in counts.items() if c > 4}


def test_cub_icc_truncates_to_max_len_with_eos(tmp_path, cub):
    train, _ = make(CubIcc, tmp_path, max_len=5).build()
    assert train.data["caption"].shape == (40, 5) and (train.data["caption"][:, 4] == EOS).all()


def test_cub_icc_a_missing_caption_line_is_one_clear_error(tmp_path, cub):
    path = tmp_path / "cub-icc" / "cub" / "text_testclasses.txt"
    path.write_text("\n".join(cub["test"]["captions"][:-1]) + "\n")
    with pytest.raises(DataError) as e:
        make(CubIcc, tmp_path).build()
    msg = str(e.value)
    assert "text_testclasses.txt: 19 caption lines for 2 images in test/" in msg and "exactly 10" in msg
    assert make(CubIcc, tmp_path).probe().state == "incomplete"


def test_cub_icc_truncated_jpeg_is_one_clear_error(tmp_path, cub):
    path = next((tmp_path / "cub-icc" / "cub" / "train" / TRAIN_CLASSES[1]).glob("*.jpg"))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=rf"{path.name}: cannot decode the image .*truncated or corrupt"):
        make(CubIcc, tmp_path).build()


@pytest.mark.parametrize("one_hot", [False, True])
def test_cubicc_sizes_from_the_files_and_the_official_split(tmp_path, one_hot):
    w = F.write_cubicc(tmp_path / "cubicc" / "CUBICC", n=12, n_classes=3, max_len=32, vocab=20, one_hot=one_hot)
    b = make(Cubicc, tmp_path)
    assert b.probe().found == {"train": 6, "validation": 3, "test": 3}
    train, test = b.build()
    spec = b.spec()
    assert spec.n_classes == 3 and spec.modality("caption").vocab_size == 20 and spec.modality("caption").shape == (32,)
    assert spec.modality("caption").vocab[:3] == ("<exc>", "<pad>", "<eos>")
    assert train.extras["source_index"].tolist() == w["split"]["train"].tolist()
    assert test.extras["source_index"].tolist() == w["split"]["test"].tolist()
    assert torch.equal(test.data["caption"], torch.from_numpy(w["captions"][w["split"]["test"]]))
    assert torch.equal(train.data["image"], torch.from_numpy(w["images"][w["split"]["train"]]).float() / 255)
    assert train.labels.tolist() == w["labels"][w["split"]["train"]].tolist()


def test_cubicc_missing_and_wrong_files(tmp_path):
    w = F.write_cubicc(tmp_path / "cubicc", n=12)
    (tmp_path / "cubicc" / "labels.pt").unlink()
    p = make(Cubicc, tmp_path).probe()
    assert p.state == "incomplete" and p.missing_files == ("labels.pt",)
    torch.save(torch.from_numpy(w["labels"]), tmp_path / "cubicc" / "labels.pt")
    np.save(tmp_path / "cubicc" / "test_split.npy", np.array([3, 40]))
    with pytest.raises(DataError, match=r"test_split\.npy: indices in \[3, 40\] but labels\.pt has 12 samples"):
        make(Cubicc, tmp_path).build()


@pytest.fixture
def cub200(tmp_path):
    return F.write_cub200(tmp_path / "cub-200" / "CUB_200_2011", n_classes=2, n_per_class=3)


def test_cub200_official_split_attributes_and_class_text(tmp_path, cub200):
    b = make(Cub200, tmp_path)
    assert b.probe().found == {"train": 4, "test": 2}
    train, test = b.build()
    rows_train = np.flatnonzero(cub200["is_train"] == 1)
    rows_test = np.flatnonzero(cub200["is_train"] == 0)
    assert train.extras["source_index"].tolist() == rows_train.tolist()
    assert test.extras["source_index"].tolist() == rows_test.tolist()
    assert train.labels.tolist() == cub200["labels"][rows_train].tolist()  # class ids 1.. -> 0..
    assert train.data["attributes"].shape == (4, 312) and train.data["attributes"].dtype == torch.float32
    assert torch.equal(test.data["attributes"], torch.from_numpy(cub200["attributes"][rows_test]).float())
    texts = [" ".join(t[: t.index("<eos>")]) for t in decode(train, "class_text")]
    assert texts[0] == "black footed albatross" and texts[-1] == "laysan albatross"
    assert b.spec().n_classes == 2 and b.spec().modality("attributes").shape == (312,)


def test_cub200_a_missing_attribute_line_is_one_clear_error(tmp_path, cub200):
    path = tmp_path / "cub-200" / "CUB_200_2011" / "attributes" / "image_attribute_labels.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:400] + lines[401:]) + "\n")  # image 2, attribute 89
    with pytest.raises(DataError, match=r"image_attribute_labels\.txt: no line for image 2, attribute 89"):
        make(Cub200, tmp_path).build()


def test_cub200_image_listed_but_absent_is_incomplete(tmp_path, cub200):
    next((tmp_path / "cub-200" / "CUB_200_2011" / "images").rglob("*.jpg")).unlink()
    p = make(Cub200, tmp_path).probe()
    assert p.state == "incomplete" and "1 image(s) listed in images.txt" in p.missing_files[0]


def test_cub_vocab_json_is_read_for_cubicc(tmp_path):
    F.write_cubicc(tmp_path / "cubicc", n=12, vocab=20)
    (tmp_path / "cubicc" / "cub.vocab").write_text(json.dumps({"w2i": {}}))
    with pytest.raises(DataError, match=r"cub\.vocab: not a vocabulary file"):
        make(Cubicc, tmp_path).build()
