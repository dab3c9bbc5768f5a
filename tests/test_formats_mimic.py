"""mimic-cxr on a 2-subject MIMIC-CXR-JPG tree with its CSVs and reports, and on MoPoE-MIMIC's tensorised files
under both of that repository's naming schemes."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from bench.testing import fixtures as F
from bench.data.formats.mimic import LABELS, MimicCxr
from bench.errors import DataError, DataMissing


def make(root, **kw):
    return MimicCxr(MimicCxr.Config(root=str(root), **kw))


@pytest.fixture
def tree(tmp_path):
    return F.write_mimic_raw(tmp_path / "mimic-cxr")


def test_raw_tree_studies_views_labels_and_official_split(tmp_path, tree):
    b = make(tmp_path, min_count=1)
    assert b.probe().state == "present" and b.probe().found == {"train": 2, "test": 1}
    train, test = b.build()
    # the study without a lateral image is not a sample; the split is the official one, by study
    assert train.extras["study_id"].tolist() == [50414267, 53189527] and test.extras["study_id"].tolist() == [57375967]
    assert train.data["frontal"].shape == (2, 1, 64, 64) and train.data["lateral"].dtype == torch.float32
    assert train.data["report"].shape == (2, 128) and train.data["report"].dtype == torch.long
    # multi-hot over the six MoPoE-MIMIC columns; uncertain Atelectasis (-1) counts as negative
    assert train.extras["multi_label"].tolist() == [[0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]]
    assert test.extras["multi_label"].tolist() == [[0, 0, 0, 1, 0, 0]]
    assert train.labels.tolist() == [1, 5] and test.labels.tolist() == [3]  # first positive finding, else No Finding
    vocab = b.spec().modality("report").vocab
    report = [vocab[i] for i in train.data["report"][0].tolist()]
    assert "cardiomegaly" in report and report.index("<eos>") > 5
    assert "pleural" not in vocab  # the vocabulary comes from the train reports only
    assert b.spec().n_classes == len(LABELS) == 6


def test_frontal_is_pa_then_ap_and_images_are_the_files(tmp_path, tree):
    train, _ = make(tmp_path, size=16).build()
    from PIL import Image

    study = tmp_path / "mimic-cxr" / "files" / "p10" / "p10000032" / "s53189527"
    ap = sorted(study.glob("*-ap.jpg"))  # that study has AP and two LATERAL images, no PA
    assert len(ap) == 1
    im = Image.open(ap[0]).convert("L")
    s = min(im.size)
    left, top = (im.width - s) // 2, (im.height - s) // 2
    want = np.asarray(im.crop((left, top, left + s, top + s)).resize((16, 16), Image.BILINEAR), dtype=np.float32)
    assert torch.allclose(train.data["frontal"][1, 0], torch.from_numpy(want) / 255, atol=0.06)


def test_uncertain_pleural_effusion_drops_the_study(tmp_path):
    studies = [{"subject": 11000001, "study": 51000001, "split": "train", "views": ["PA", "LATERAL"],
                "labels": {"Cardiomegaly": 1}},
               {"subject": 11000001, "study": 51000002, "split": "train", "views": ["PA", "LATERAL"],
                "labels": {"Pleural Effusion": -1}},
               {"subject": 12000002, "study": 52000003, "split": "test", "views": ["PA", "LL"], "labels": {}}]
    F.write_mimic_raw(tmp_path / "mimic-cxr", studies)
    train, test = make(tmp_path).build()
    assert train.extras["study_id"].tolist() == [51000001] and test.labels.tolist() == [5]


def test_a_missing_jpg_is_incomplete_never_fewer_samples(tmp_path, tree):
    victim = next((tmp_path / "mimic-cxr" / "files").rglob("*-lateral.jpg"))
    victim.unlink()
    with pytest.raises(DataMissing) as e:
        make(tmp_path).build()
    assert "1 image(s)/report(s) the CSVs select" in str(e.value) and victim.name in str(e.value)
    assert make(tmp_path).probe().state == "incomplete"


def test_a_truncated_jpg_is_one_clear_error(tmp_path, tree):
    victim = next((tmp_path / "mimic-cxr" / "files").rglob("*-pa.jpg"))
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(DataError, match=rf"{victim.name}: cannot decode the image .*truncated or corrupt"):
        make(tmp_path).build()


def test_a_csv_without_its_column_is_one_clear_error(tmp_path, tree):
    path = tmp_path / "mimic-cxr" / "mimic-cxr-2.0.0-metadata.csv.gz"
    text = gzip.decompress(path.read_bytes()).decode().replace("ViewPosition", "View")
    path.write_bytes(gzip.compress(text.encode()))
    with pytest.raises(DataError, match=r"metadata\.csv\.gz: no column\(s\) ViewPosition"):
        make(tmp_path).build()


@pytest.mark.parametrize("naming", ["writer", "reader"])
def test_tensorised_variant_under_both_namings(tmp_path, naming):
    w = F.write_mimic_tensors(tmp_path / "mimic-cxr", {"train": 6, "eval": 2, "test": 4}, size=32, naming=naming)
    b = make(tmp_path, size=32, min_count=1)
    assert b.probe().variant == "MoPoE-MIMIC tensors, 32 px" and b.probe().found == {"train": 6, "test": 4}
    train, test = b.build()
    assert (len(train), len(test)) == (6, 4)
    assert torch.allclose(test.data["lateral"][:, 0], torch.from_numpy(w["test"]["lat"]), atol=1 / 255)
    assert torch.equal(test.extras["multi_label"], torch.from_numpy(w["test"]["labels"]))
    assert train.labels.tolist() == [0, 1, 2, 3, 4, 5]
    vocab = b.spec().modality("report").vocab
    assert [vocab[i] for i in train.data["report"][2].tolist()][:4] == ["the", "heart", "shows", "lung"]
    # another size: the stored tensors are resized
    assert make(tmp_path, size=16).build()[0].data["frontal"].shape == (6, 1, 16, 16)


def test_tensorised_variant_with_a_short_labels_file(tmp_path):
    F.write_mimic_tensors(tmp_path / "mimic-cxr", size=32)
    path = tmp_path / "mimic-cxr" / "test_labels.csv"
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(DataError, match=r"test_labels\.csv: 3 rows for 4 images in test_pa32\.pt"):
        make(tmp_path, size=32).build()
