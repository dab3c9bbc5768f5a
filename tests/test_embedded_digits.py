"""The five embedded benchmarks built from scikit-learn digits: contracts, determinism and pairing invariants."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from bench.data.embedded import digits as D
from bench.data.embedded import digits_caption, digits_ms, digits_poly5, digits_seg
from bench.data.text import ALPHABET, words
from bench.errors import BenchError
from bench.registry import BENCHMARKS, METRICS

MS = digits_ms.DigitsMSConfig(dm=1)
POLY = digits_poly5.DigitsPoly5Config()
CAP = digits_caption.DigitsCaptionConfig()
SEG = digits_seg.DigitsSegConfig(n_train=300, n_test=200)


def build(name: str, cfg):
    return BENCHMARKS.get(name)(cfg).build()


def decode_chars(ids: torch.Tensor) -> list[str]:
    return ["".join(ALPHABET[i] for i in row) for row in ids.tolist()]


def decode_words(ds, name: str) -> list[str]:
    vocab = ds.modalities[ds.names.index(name)].vocab
    return [" ".join(vocab[i] for i in row if i > 2) for row in ds.data[name].tolist()]  # drop <exc>/<pad>/<eos>


def assert_equal_datasets(a, b) -> None:
    assert a.names == b.names
    for k in a.data:
        assert torch.equal(a.data[k], b.data[k]), k
    assert torch.equal(a.labels, b.labels)


# --- shared contract -------------------------------------------------------------------------------------------

CASES = [("digits-ms", MS), ("digits-mst", MS), ("digits-poly5", POLY), ("digits-caption", CAP), ("digits-seg", SEG)]


def test_builds_offline(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for cached in (D.digits_raw, D.digits_upsampled, D.digit_split, digits_poly5.background_photos):
        cached.cache_clear()  # force the sklearn loaders to run under the network ban
    assert len(digits_ms.build_split(MS, "test")) > 0
    assert len(digits_poly5.build_split(POLY, "test")) > 0


@pytest.mark.parametrize("name,cfg", CASES)
def test_contract(name, cfg):
    bench = BENCHMARKS.get(name)(cfg)
    spec = bench.spec()
    train, test = bench.build()
    assert spec.n_classes == 10 and spec.name == name
    assert set(spec.default_metrics) <= set(METRICS.names())
    if getattr(cfg, "pairing", "class") == "class" and name != "digits-seg":
        # exact-partner retrieval is at chance under class pairing: only the class-level score is offered
        assert "retrieval_r1" not in spec.default_metrics and "retrieval_class_p10" in spec.default_metrics
    for ds in (train, test):
        assert ds.modalities == spec.modalities
        assert ds.labels.dtype == torch.int64 and bool(ds.mask.all())
        assert set(ds.labels.unique().tolist()) == set(range(10))
        for m in ds.modalities:
            x = ds.data[m.name]
            if m.kind == "image":
                assert x.dtype == torch.float32 and x.dim() == 4
                assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
            elif m.kind == "text":
                assert x.dtype == torch.int64 and int(x.min()) >= 0 and int(x.max()) < m.vocab_size
            else:
                assert x.dtype == torch.int64 and int(x.min()) >= 0 and int(x.max()) < m.n_classes


def test_registered_shapes():
    shapes = {n: {m.name: m.shape for m in BENCHMARKS.get(n)(c).spec().modalities} for n, c in CASES}
    assert shapes["digits-ms"] == {"m1": (1, 16, 16), "m2": (3, 16, 16)}
    assert shapes["digits-mst"] == {"m1": (1, 16, 16), "m2": (3, 16, 16), "text": (8,)}
    assert shapes["digits-poly5"] == {f"m{k}": (3, 16, 16) for k in range(5)}
    assert shapes["digits-caption"] == {"image": (1, 16, 16), "caption": (16,)}
    assert shapes["digits-seg"] == {"image": (1, 32, 32), "mask": (32, 32), "caption": (8,)}
    likelihoods = {m.name: m.likelihood for m in BENCHMARKS.get("digits-ms")(MS).spec().modalities}
    assert likelihoods == {"m1": "bernoulli", "m2": "gaussian"}


def test_sizes():
    assert [len(d) for d in D.digit_split()] == [1258, 539]
    assert [len(d) for d in build("digits-ms", digits_ms.DigitsMSConfig(dm=2))] == [2 * 1258, 2 * 539]
    assert [len(d) for d in build("digits-poly5", POLY)] == [1258, 539]
    assert [len(d) for d in build("digits-caption", CAP)] == [12580, 5390]
    assert [len(d) for d in build("digits-seg", SEG)] == [300, 200]


@pytest.mark.parametrize("builder,cfg,field", [
    (digits_ms._build_ms, MS, "m2"), (digits_ms._build_mst, MS, "text"), (digits_poly5._build, POLY, "m0"),
    (digits_seg._build, SEG, "image"), (digits_caption._build, CAP, "caption"),
], ids=["ms", "mst", "poly5", "seg", "caption"])
def test_deterministic_and_seeded(builder, cfg, field):
    build_uncached = builder.__wrapped__  # bypass the memo: two real constructions
    first, second = build_uncached(cfg), build_uncached(cfg)
    for a, b in zip(first, second):
        assert_equal_datasets(a, b)
    other = build_uncached(type(cfg)(**{**cfg.__dict__, "seed": cfg.seed + 1}))
    assert not torch.equal(first[0].data[field], other[0].data[field])


def test_split_never_leaks():
    train_idx, test_idx = D.digit_split()
    assert not set(train_idx) & set(test_idx)
    ms_train, ms_test = build("digits-ms", MS)
    poly_train, poly_test = build("digits-poly5", POLY)
    seg_train, seg_test = build("digits-seg", SEG)
    for ds, pool in ((ms_train, train_idx), (ms_test, test_idx)):
        assert set(ds.extras["m1_index"].tolist()) | set(ds.extras["m2_index"].tolist()) <= set(pool)
    for ds, pool in ((poly_train, train_idx), (poly_test, test_idx), (seg_train, train_idx), (seg_test, test_idx)):
        used = ds.extras["source_index"]
        assert set(used[used >= 0].tolist()) <= set(pool)


# --- digits-ms / digits-mst ------------------------------------------------------------------------------------

def test_ms_class_pairing():
    train, _ = build("digits-ms", digits_ms.DigitsMSConfig(dm=2))
    labels = D.digits_raw()[1]
    i1, i2 = train.extras["m1_index"].numpy(), train.extras["m2_index"].numpy()
    assert (labels[i1] == labels[i2]).all() and (labels[i1] == train.labels.numpy()).all()
    assert (i1 != i2).all()  # a different instance of the same class, never the digit itself
    assert torch.equal(train.data["m1"], D.digits_upsampled(16)[torch.from_numpy(i1)])
    # each digit is m1 of exactly dm pairs, and its partners differ: m2 is not a function of m1
    assert (np.bincount(i1, minlength=len(labels))[D.digit_split()[0]] == 2).all()
    first = {}
    differs = 0
    for row, k in enumerate(i1):
        if k in first:
            differs += not torch.equal(train.data["m2"][first[k]], train.data["m2"][row])
        else:
            first[k] = row
    assert differs == len(first)


def test_ms_style():
    train, _ = build("digits-ms", MS)
    gap = np.abs(D.luminance(train.extras["m2_fg"].numpy()) - D.luminance(train.extras["m2_bg"].numpy()))
    assert gap.min() >= MS.min_luminance_gap
    assert float(train.extras["m2_angle"].abs().max()) <= MS.max_angle
    assert float(train.data["m2"].std()) > 0.1


def test_ms_instance_pairing_control():
    train, _ = build("digits-ms", digits_ms.DigitsMSConfig(dm=1, pairing="instance"))
    assert torch.equal(train.extras["m1_index"], train.extras["m2_index"])
    with pytest.raises(BenchError):
        build("digits-ms", digits_ms.DigitsMSConfig(pairing="nope"))


def test_mst_text():
    ms_train, _ = build("digits-ms", MS)
    train, test = build("digits-mst", MS)
    assert torch.equal(train.data["m1"], ms_train.data["m1"]) and torch.equal(train.data["m2"], ms_train.data["m2"])
    for ds in (train, test):
        texts = decode_chars(ds.data["text"])
        assert all(len(t) == 8 for t in texts)
        assert [t.strip() for t in texts] == [D.WORDS[y] for y in ds.labels.tolist()]
        offsets = [len(t) - len(t.lstrip()) for t in texts]
        assert offsets == ds.extras["text_offset"].tolist()
    assert len(set(train.extras["text_offset"].tolist())) >= 4  # the offset really varies


def test_m1_linear_probe():
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    train, test = build("digits-ms", MS)
    with threadpool_limits(1):  # multi-threaded BLAS on this tiny problem is ~50x slower on a busy 2-core box
        clf = LogisticRegression(max_iter=500).fit(train.data["m1"].flatten(1).numpy(), train.labels.numpy())
    assert clf.score(test.data["m1"].flatten(1).numpy(), test.labels.numpy()) > 0.8


# --- digits-poly5 ----------------------------------------------------------------------------------------------

def test_poly5_tuples_and_rendering():
    train, _ = build("digits-poly5", POLY)
    src = train.extras["source_index"].numpy()
    labels = D.digits_raw()[1]
    assert (labels[src] == train.labels.numpy()[:, None]).all()
    assert all(len(set(row)) == 5 for row in src.tolist())  # five different instances per tuple
    photos = digits_poly5.background_photos(POLY.photo_downscale)
    ink = D.digits_upsampled(16)
    for k in range(5):  # every modality is its crop, inverted exactly where the digit's ink exceeds 0.5
        photo = photos[k % 2][list(digits_poly5.CHANNEL_ORDER[k])]
        for row in (0, 1, len(train) - 1):
            r, c = train.extras["crop_yx"][row, k].tolist()
            crop = photo[:, r : r + 16, c : c + 16]
            digit = ink[src[row, k]] > 0.5
            assert torch.allclose(train.data[f"m{k}"][row], torch.where(digit, 1 - crop, crop))
    # modalities sharing a photo still differ (channel order)
    assert not torch.equal(train.data["m0"].mean((0, 2, 3)), train.data["m2"].mean((0, 2, 3)))


# --- digits-caption --------------------------------------------------------------------------------------------

def test_caption_cub_pairing():
    train, test = build("digits-caption", CAP)
    images = D.digits_upsampled(16)
    for ds in (train, test):
        k = torch.arange(len(ds))
        assert torch.equal(ds.extras["image_index"], k // 10)
        first_rows = ds.data["image"][(k // 10) * 10]
        assert torch.equal(ds.data["image"], first_rows)  # all 10 captions of an image share its tensor
        assert torch.equal(ds.data["image"], images[ds.extras["source_index"]])
        assert torch.equal(ds.labels, torch.as_tensor(D.digits_raw()[1][ds.extras["source_index"].numpy()]))
    sub = train.subset(torch.tensor([25, 3]))
    assert sub.extras["image_index"].tolist() == [2, 0]


def test_captions_never_just_the_label():
    train, _ = build("digits-caption", CAP)
    texts = decode_words(train, "caption")
    names = {w for y in range(10) for w in (D.WORDS[y], str(y))}
    assert all(len(words(t)) >= 3 for t in texts)
    assert not any(set(words(t)) <= names | {"digit", "number"} for t in texts)
    per_image = [texts[i : i + 10] for i in range(0, len(texts), 10)]
    for caps, y in zip(per_image[:50], train.labels[::10][:50].tolist()):
        named = [c for c in caps if D.WORDS[y] in words(c) or str(y) in words(c)]
        assert 0 < len(named) < 10  # some captions name the class, some never do
    assert any("thick" in t or "bold" in t or "heavy" in t for t in texts)
    assert any("left" in t for t in texts) and any("right" in t for t in texts)


def test_caption_class_disjoint():
    train, test = build("digits-caption", digits_caption.DigitsCaptionConfig(class_disjoint_test=True))
    assert set(train.labels.unique().tolist()) == set(range(7))
    assert set(test.labels.unique().tolist()) == {7, 8, 9}
    vocab = train.modalities[1].vocab
    assert "seven" not in vocab  # vocabulary from train captions only, as CUB
    assert (test.data["caption"] == 0).any()  # so test-class words encode as <exc>


# --- digits-seg ------------------------------------------------------------------------------------------------

def test_seg_mask_matches_caption():
    train, test = build("digits-seg", SEG)
    for ds in (train, test):
        captions = decode_words(ds, "caption")
        for i in range(len(ds)):
            named = [D.WORDS.index(w) for w in words(captions[i]) if w in D.WORDS]
            listed = [d for d in ds.extras["digits"][i].tolist() if d >= 0]
            assert named == listed and 2 <= len(named) <= 3
            assert set(ds.data["mask"][i].unique().tolist()) == {0} | {1 + d for d in named}
            assert ds.labels[i].item() == named[0]  # label = leftmost digit
        ink = ds.data["mask"] > 0
        assert bool((ds.data["image"][:, 0][ink] > 0.5).all())
    cols = train.extras["boxes"][:, :, 1]
    present = train.extras["digits"] >= 0
    assert bool(((cols[:, 1:] >= cols[:, :-1]) | ~present[:, 1:]).all())  # listed left to right
