"""kvasir-seg and voc-2012 (the segmentation suite) on tiny files in their release layouts."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from PIL import Image

from bench.testing import fixtures as F
from bench.data.formats.segmentation import KvasirSeg, Voc2012
from bench.errors import DataError


def make(cls, root, **kw):
    return cls(cls.Config(root=str(root), **kw))


def test_kvasir_images_masks_split_and_size_labels(tmp_path):
    names = F.write_kvasir(tmp_path / "kvasir-seg" / "Kvasir-SEG", n=10)
    train, test = make(KvasirSeg, tmp_path, size=32).build()
    assert (len(train), len(test)) == (8, 2)
    assert train.data["image"].shape == (8, 3, 32, 32) and train.data["mask"].shape == (8, 32, 32)
    assert train.data["mask"].dtype == torch.long and set(train.data["mask"].unique().tolist()) == {0, 1}
    rows = sorted(train.extras["source_index"].tolist() + test.extras["source_index"].tolist())
    assert rows == list(range(10))  # every image in exactly one split
    # the polyp radius grows with i % 3 in the fixture, and so does the size class
    sizes = {int(i): int(y) for ds in (train, test) for i, y in zip(ds.extras["source_index"], ds.labels)}
    by_name = sorted(names)
    assert all(sizes[j] == {0: 0, 1: 1, 2: 2}[names.index(by_name[j]) % 3] for j in range(10))


def test_kvasir_split_does_not_depend_on_the_listing_order(tmp_path, monkeypatch):
    F.write_kvasir(tmp_path / "a" / "kvasir-seg", n=10)
    reference = make(KvasirSeg, tmp_path / "a").build()[1].extras["source_index"].tolist()
    F.write_kvasir(tmp_path / "b" / "kvasir-seg", n=10)
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda p=".": random.Random(3).sample(real(p), len(real(p))))
    assert make(KvasirSeg, tmp_path / "b").build()[1].extras["source_index"].tolist() == reference


def test_kvasir_image_without_mask_is_an_error(tmp_path):
    F.write_kvasir(tmp_path / "kvasir-seg", n=4)
    victim = sorted((tmp_path / "kvasir-seg" / "masks").iterdir())[1]
    victim.unlink()
    with pytest.raises(DataError, match=r"masks: image .* has no mask \(1 images without a mask"):
        make(KvasirSeg, tmp_path).build()


def test_voc_official_lists_palette_masks_and_void(tmp_path):
    w = F.write_voc(tmp_path / "voc-2012", train=4, val=3)
    b = make(Voc2012, tmp_path, size=30)
    assert b.probe().found == {"train": 4, "test": 3}
    train, test = b.build()
    assert (len(train), len(test)) == (4, 3)
    assert train.data["mask"].shape == (4, 30, 30) and train.data["mask"].dtype == torch.long
    assert int(train.data["mask"].max()) < 21  # void (255) is folded into background
    # the label is the object class covering most pixels; train = train.txt, test = val.txt
    assert train.labels.tolist() == [c for _, c in w["train"]] and test.labels.tolist() == [c for _, c in w["val"]]
    raw = np.asarray(Image.open(tmp_path / "voc-2012" / "VOCdevkit" / "VOC2012" / "SegmentationClass" /
                                f"{w['val'][0][0]}.png").resize((30, 30), Image.NEAREST))
    assert torch.equal(test.data["mask"][0], torch.from_numpy(np.where(raw == 255, 0, raw).astype(np.int64)))


def test_voc_listed_image_missing_is_incomplete_and_bad_index_is_an_error(tmp_path):
    w = F.write_voc(tmp_path / "voc-2012")
    base = tmp_path / "voc-2012" / "VOCdevkit" / "VOC2012"
    (base / "JPEGImages" / f"{w['train'][1][0]}.jpg").unlink()
    p = make(Voc2012, tmp_path).probe()
    assert p.state == "incomplete" and f"JPEGImages/{w['train'][1][0]}.jpg" in p.missing_files[0]
    w = F.write_voc(tmp_path / "v2" / "voc-2012")
    mask = base.parent.parent.parent / "v2" / "voc-2012" / "VOCdevkit" / "VOC2012" / "SegmentationClass"
    bad = Image.frombytes("P", (40, 30), np.full((30, 40), 40, np.uint8).tobytes())
    bad.putpalette(list(range(256)) * 3)  # a full palette, as VOC's: index 40 stays 40
    bad.save(mask / f"{w['val'][2][0]}.png")
    with pytest.raises(DataError, match=rf"{w['val'][2][0]}\.png: class index 40; VOC masks hold 0-20 and 255"):
        make(Voc2012, tmp_path / "v2").build()
