"""The untrained floor (baselines/untrained) and the chance levels recorded with every run (bench/eval/chance.py):
the trainer runs no epoch for it, its random features carry the class of separable data, and the chance rows
match their definitions, checked against the metrics themselves on random rankings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.compose import compose
from bench.config import config_dict, make_config
from bench.data import load_splits
from bench.data.contracts import BenchmarkSpec, Modality, MultimodalDataset
from bench.eval.chance import CHANCE, chance_levels, class_frequencies, expected_recall, majority_rate
from bench.eval.context import EvalContext
from bench.eval.evaluate import evaluate
from bench.eval.retrieval import class_precision_at_k, retrieval_recall
from bench.registry import BENCHMARKS, METHODS, METRICS
from bench.run import resolve_spec, run_one
from bench.store import ResultStore
from bench.train.config import TrainerConfig
from bench.train.loop import train


def _bc3view(rho: float = 1.0, seed: int = 0):
    cls = BENCHMARKS.get("bc-3view")
    bench = cls(make_config(cls.Config, {}, "bc-3view"))
    return bench.spec(), load_splits(bench, rho, seed)


# --- the method and the trainer's no-training path ---------------------------------------------------------------

def test_registered_as_a_baseline_that_does_not_train():
    cls = METHODS.get("untrained")
    assert cls.kind == "baseline" and cls.trains is False and cls.joint_needs_every_modality
    assert all(METHODS.get(m).trains for m in METHODS.names() if m != "untrained")


def test_the_trainer_runs_no_epoch_and_changes_no_parameter(tmp_path, monkeypatch):
    spec, (train_ds, val_ds, _) = _bc3view(0.5)
    cls = METHODS.get("untrained")
    torch.manual_seed(0)
    model = cls(spec, cls.Config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []
    original = cls.loss
    monkeypatch.setattr(cls, "loss", lambda self, batch: calls.append(1) or original(self, batch))
    trainer = config_dict(TrainerConfig(epochs=3, batch_size=32, progress=False, device="cpu"))
    result = train(model, train_ds, val_ds, trainer, "untrained-test", ckpt_dir=tmp_path / "ckpt")
    assert result.epochs == 0 and result.history == [] and result.samples == 0
    assert calls == []                                   # not one training or validation step
    assert not list((tmp_path / "ckpt").glob("epoch_*"))  # and nothing to resume from
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_the_loss_is_a_zero_connected_to_every_parameter():
    spec, (train_ds, _, _) = _bc3view(0.5)
    model = METHODS.get("untrained")(spec, METHODS.get("untrained").Config())
    loss = model.loss(train_ds.batch(torch.arange(8)))["loss"]
    loss.backward()
    assert loss.item() == 0.0 and all(p.grad is not None and not p.grad.any() for p in model.parameters())


def _images(sizes: tuple[int, ...], n: int = 6):
    mods = tuple(Modality(f"m{i}", "image", (1, s, s)) for i, s in enumerate(sizes))
    spec = BenchmarkSpec("toy", mods, n_classes=2)
    g = torch.Generator().manual_seed(0)
    data = {m.name: torch.rand((n, *m.shape), generator=g) for m in mods}
    mask = torch.ones(n, len(mods), dtype=torch.bool)
    mask[0, 1] = mask[1, 0] = False
    for j, m in enumerate(mods):
        data[m.name][~mask[:, j]] = float("nan")
    return spec, {"data": data, "mask": mask, "label": torch.zeros(n, dtype=torch.long)}


def test_default_floor_has_the_methods_latent_width_per_modality():
    spec, batch = _images((8, 16))
    cls = METHODS.get("untrained")
    torch.manual_seed(0)
    model = cls(spec, cls.Config())
    emb = model.embed(batch)
    assert emb["joint"].shape == (6, 2 * 16) and emb["m0"].shape == emb["m1"].shape == (6, 16)
    assert torch.isnan(emb["joint"][:2]).all() and torch.isfinite(emb["joint"][2:]).all()
    # each block is the modality's random head applied to its encoder's features
    xs = {k: torch.nan_to_num(v) for k, v in batch["data"].items()}
    expect = model.heads["m1"](model.encoders["m1"](xs["m1"]))
    assert torch.allclose(emb["m1"][2:], expect[2:]) and not list(model.named_buffers())
    with pytest.raises(ValueError, match="dim must be >= 0"):
        cls(spec, cls.Config(dim=-1))


def test_raw_features_joint_concatenates_and_modalities_of_different_widths_share_one_space():
    # 8x8 -> one stride-2 conv, 32 x 4 x 4 = 512 features; 16x16 -> two, 64 x 4 x 4 = 1024
    spec, batch = _images((8, 16))
    cls = METHODS.get("untrained")
    torch.manual_seed(0)
    model = cls(spec, cls.Config(dim=0))
    emb = model.embed(batch)
    assert emb["joint"].shape == (6, 512 + 1024) and emb["m0"].shape == emb["m1"].shape == (6, 512)
    assert torch.isnan(emb["joint"][:2]).all() and torch.isfinite(emb["joint"][2:]).all()
    assert torch.isnan(emb["m1"][0]).all() and torch.isnan(emb["m0"][1]).all()
    assert torch.isfinite(emb["m0"][2:]).all() and torch.isfinite(emb["m1"][2:]).all()
    # the joint holds each modality's own encoder features, unprojected
    feats = model.features(batch)
    assert torch.equal(emb["joint"][2:], torch.cat(feats, 1)[2:])
    assert [n for n, _ in model.named_buffers()] == ["projection_1"] and not any(
        "projection" in n for n, _ in model.named_parameters())


def test_init_follows_the_seed_like_every_method():
    spec, batch = _images((8, 16))
    cls = METHODS.get("untrained")

    def joint(seed):
        torch.manual_seed(seed)
        return cls(spec, cls.Config()).embed(batch)["joint"][2:]

    assert torch.equal(joint(3), joint(3)) and not torch.equal(joint(3), joint(4))


def test_an_untrained_run_is_evaluated_and_its_probe_is_far_above_chance(tmp_path):
    spec = resolve_spec(compose(["method=untrained", "benchmark=bc-3view", "trainer.progress=false",
                                 "eval.metrics=[probe_linear,kmeans_nmi,retrieval_r1]"]))
    record = run_one(spec, ResultStore(tmp_path)).record
    assert set(record["kind"]) == {"baseline"} and set(record["epoch"]) == {0}
    assert "loss" not in set(record["metric"])          # no epoch: no training or validation curve
    test = record[record["split"] == "test"].set_index(["metric", "target"])["value"]
    chance = record[record["split"] == "chance"].set_index(["metric", "target"])["value"]
    # the chance row, recomputed from the run's own splits
    _, (train_ds, _, test_ds) = _bc3view()
    assert chance["probe_linear", "joint"] == pytest.approx(majority_rate(train_ds.labels, test_ds.labels))
    assert 0.5 < chance["probe_linear", "joint"] < 0.75   # breast cancer: about 63 % benign
    # random features of separable data are informative: the floor is far above chance (measured 0.947)
    assert test["probe_linear", "joint"] > chance["probe_linear", "joint"] + 0.2
    assert chance["kmeans_nmi", "joint"] == 0.0
    assert set(chance.loc["retrieval_r1"].index) == set(test.loc["retrieval_r1"].index)
    assert chance.loc["retrieval_r1"].tolist() == pytest.approx([1 / len(test_ds)] * 6)  # 3 views: 6 ordered pairs


# --- chance levels on a hand-made context --------------------------------------------------------------------------

Y_TRAIN = [0] * 14 + [1] * 10 + [2] * 6      # majority class 0
Y_TEST = [0] * 4 + [1] * 10 + [2] * 6        # 20 test samples: class 0 is 20 % of them


def _toy_context(b_groups=None) -> EvalContext:
    mods = (Modality("a", "vector", (3,)), Modality("b", "vector", (5,)))
    spec = BenchmarkSpec("toy", mods, n_classes=3)
    g = torch.Generator().manual_seed(0)

    def split(y, extras=None):
        y = torch.tensor(y)
        data = {m.name: torch.randn(len(y), *m.shape, generator=g) + y[:, None].float() for m in mods}
        return MultimodalDataset.complete(mods, data, y, extras)

    cls = METHODS.get("untrained")
    torch.manual_seed(0)
    test = split(Y_TEST, None if b_groups is None else {"b_index": torch.as_tensor(b_groups)})
    return EvalContext(cls(spec, cls.Config()), spec, split(Y_TRAIN), test, {}, seed=0)


def test_chance_rows_are_written_beside_each_done_metric_and_match_the_definitions():
    ctx = _toy_context()
    names = ["probe_linear", "kmeans_acc", "kmeans_nmi", "kmeans_ari", "retrieval_r1", "retrieval_r5",
             "retrieval_class_p10", "modality_class_distance", "paired_unpaired_w2", "coherence_cross", "w2_profile"]
    rows = evaluate(ctx, names)
    chance = {(r["metric"], r["target"]): r["value"] for r in rows if r["split"] == "chance"}
    done = {(r["metric"], r["target"]) for r in rows if r["split"] == "test" and r["status"] == "done"}
    # one chance row per done target of a metric that has a chance level, and no other
    assert set(chance) == {k for k in done if k[0] in CHANCE}
    assert all(r["status"] == "done" and r["higher_is_better"] == METRICS.get(r["metric"]).higher_is_better
               for r in rows if r["split"] == "chance")
    assert not {k for k in chance if k[0] in ("coherence_cross", "w2_profile")}  # n/a; no chance level
    assert chance["probe_linear", "joint"] == pytest.approx(0.2)
    assert chance["kmeans_acc", "joint"] == pytest.approx(0.2)
    assert chance["kmeans_nmi", "joint"] == chance["kmeans_ari", "joint"] == 0.0
    assert chance["retrieval_r1", "a->b"] == chance["retrieval_r1", "b->a"] == pytest.approx(1 / 20)
    assert chance["retrieval_r5", "a->b"] == pytest.approx(5 / 20)
    assert chance["retrieval_class_p10", "a->b"] == pytest.approx(0.2 ** 2 + 0.5 ** 2 + 0.3 ** 2)
    assert {chance["modality_class_distance", t] for t in ("a->b", "b->a", "mean")} == {1.0}
    assert {chance["paired_unpaired_w2", t] for t in ("a->b", "b->a", "mean")} == {1.0}


def test_kmeans_chance_follows_the_split_the_protocol_scores():
    ctx = _toy_context()
    assert chance_levels(ctx, "kmeans_acc", ["joint"]) == pytest.approx({"joint": 0.2})  # test: 4 of 20 in class 0
    ctx.cfg["kmeans_score"] = "train"   # MVP's protocol scores the training set, where class 0 is 14 of 30
    assert chance_levels(ctx, "kmeans_acc", ["joint"]) == pytest.approx({"joint": 14 / 30})


def test_retrieval_chance_with_copies_of_the_keys():
    # b's 20 test rows are 10 items seen twice: a->b competes with the 18 keys of other items, b->a with all 19
    ctx = _toy_context(b_groups=np.repeat(np.arange(10), 2))
    r1, r5 = (chance_levels(ctx, m, ["a->b", "b->a"]) for m in ("retrieval_r1", "retrieval_r5"))
    assert r1 == pytest.approx({"a->b": 1 / 19, "b->a": 1 / 20})
    assert r5 == pytest.approx({"a->b": 5 / 19, "b->a": 5 / 20})
    # against the metric on random rankings (uneven groups: sizes 1, 2 and 3)
    groups = np.array([0, 1, 1, 2, 2, 2] + list(range(3, 17)))
    rng = np.random.default_rng(1)
    draws = [retrieval_recall(rng.normal(size=(20, 8)), rng.normal(size=(20, 8)), ks=(1, 5), key_groups=groups)
             for _ in range(1500)]
    for k in (1, 5):
        assert np.mean([d[k] for d in draws]) == pytest.approx(expected_recall(k, 20, groups), abs=0.01)
    # 15 single keys rank among 20 candidates, 2 copies among 19, 3 among 18
    assert expected_recall(1, 20, groups) == pytest.approx((15 / 20 + 2 / 19 + 3 / 18) / 20)


def test_majority_rate_and_class_frequencies():
    assert majority_rate([2, 2, 1], [1, 2, 2, 2]) == 0.75
    assert majority_rate([1, 0, 0, 1], [0, 1, 1]) == pytest.approx(1 / 3)  # a tie: the smallest class id
    np.testing.assert_allclose(class_frequencies([3, 1, 1, 3, 3, 3]), [2 / 6, 4 / 6])
    with pytest.raises(ValueError, match="training label"):
        majority_rate([], [0])
    assert chance_levels(None, "fid", ["m1:cross"]) == {}    # no chance level for FID


def test_retrieval_chance_is_the_expected_score_of_random_rankings():
    # random embeddings rank the keys uniformly at random; their mean scores converge to the chance levels
    rng = np.random.default_rng(0)
    y = np.array(Y_TEST)
    draws = [(rng.normal(size=(20, 8)), rng.normal(size=(20, 8))) for _ in range(400)]
    r1 = np.mean([retrieval_recall(q, k, ks=(1,))[1] for q, k in draws])
    p10 = np.mean([class_precision_at_k(q, k, y, y, 10) for q, k in draws])
    assert r1 == pytest.approx(1 / 20, abs=0.01)
    # sum_c p_c^2 = 0.38; the self-excluding formula sum_c n_c (n_c - 1) / (N (N - 1)) would be 0.347
    assert p10 == pytest.approx(0.38, abs=0.01)
