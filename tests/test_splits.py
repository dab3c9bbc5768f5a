import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from bench.data import load_splits
from bench.data.contracts import MISSING_INT, Modality, MultimodalDataset
from bench.data.splits import observation_mask, stratified_split
from bench.errors import BenchError
from bench.registry import BENCHMARKS


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400), m=st.integers(2, 6), rho=st.floats(0.01, 1.0), seed=st.integers(0, 2**31))
def test_paired_fraction_and_equal_unpaired_pools(n, m, rho, seed):
    mask = observation_mask(n, m, rho, seed)
    paired = mask.all(1)
    assert abs(int(paired.sum()) - rho * n) <= 1  # the paired fraction is rho, to one sample
    unpaired = mask[~paired]
    assert bool((unpaired.sum(1) == 1).all())  # the rest keep exactly one modality
    pools = unpaired.sum(0)
    assert int(pools.max() - pools.min()) <= 1  # equal unpaired pools per modality
    assert torch.equal(mask, observation_mask(n, m, rho, seed))  # a pure function of its inputs


def test_mask_depends_on_seed_and_rho_one_is_complete():
    a, b = observation_mask(500, 2, 0.5, 0), observation_mask(500, 2, 0.5, 1)
    assert not torch.equal(a, b)
    assert bool(observation_mask(50, 3, 1.0, 0).all())


def test_mcar_keeps_the_anchor_and_drops_at_rate():
    mask = observation_mask(20000, 3, 0.7, 0, protocol="mcar")
    assert bool(mask[:, 0].all())
    assert abs(float(mask[:, 1:].float().mean()) - 0.7) < 0.02


@pytest.mark.parametrize("rho", [0.0, -0.1, 1.5, "abc", float("nan")])
def test_obs_ratio_outside_unit_interval_is_refused(rho):
    with pytest.raises(BenchError, match=r"obs_ratio"):
        observation_mask(10, 2, rho, 0)


def test_unknown_protocol_is_refused():
    with pytest.raises(BenchError, match="mcar"):
        observation_mask(10, 2, 0.5, 0, protocol="nope")


def test_missing_entries_hold_placeholders_not_data():
    mods = (Modality("a", "vector", (3,)), Modality("t", "text", (4,), vocab_size=9))
    ds = MultimodalDataset.complete(mods, {"a": torch.ones(4, 3), "t": torch.ones(4, 4, dtype=torch.long)}, [0, 1, 0, 1])
    mask = torch.tensor([[True, True], [True, False], [False, True], [True, True]])
    out = ds.with_mask(mask)
    assert torch.isnan(out.data["a"][2]).all() and not torch.isnan(out.data["a"][[0, 1, 3]]).any()
    assert bool((out.data["t"][1] == MISSING_INT).all()) and bool((out.data["t"][[0, 2, 3]] == 1).all())
    assert bool((ds.data["a"] == 1).all())  # the original is untouched


def test_stratified_split_is_deterministic_and_stratified():
    y = np.repeat(np.arange(5), 40)
    tr, te = stratified_split(y, 0.3, 7)
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == 200
    assert all((y[te] == c).sum() == 12 for c in range(5))
    tr2, te2 = stratified_split(y, 0.3, 7)
    assert np.array_equal(te, te2)


def test_load_splits_on_a_real_benchmark():
    bench = BENCHMARKS.get("digits-ms")(BENCHMARKS.get("digits-ms").Config(variants=1))
    train, val, test = load_splits(bench, 0.5, seed=3)
    assert bool(test.mask.all()) and bool(val.mask.all())  # evaluation splits are complete
    assert abs(float(train.mask.all(1).float().mean()) - 0.5) <= 1 / len(train)
    train2, val2, _ = load_splits(bench, 0.5, seed=3)
    assert torch.equal(train.mask, train2.mask) and torch.equal(val.labels, val2.labels)
    train3, _, _ = load_splits(bench, 0.5, seed=4)
    assert not torch.equal(train.mask, train3.mask)
    # the masked-out entries of train are placeholders
    m2_missing = ~train.mask[:, 1]
    assert torch.isnan(train.data["m2"][m2_missing]).all()
