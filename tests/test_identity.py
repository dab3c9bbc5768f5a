"""One identity per run (docs/run-identity.md): run_id, the Optuna study name of a cell and the split seeds all
derive from the spec without its non-identity keys; spec_version 1 records keep their run_ids and their splits."""

import copy
import dataclasses
import hashlib

import pytest
import torch

from bench.compose import compose
from bench.config import make_config
from bench.data.splits import (benchmark_section, legacy_split_seeds, load_splits, observation_mask, split_seed,
                               split_seeds, stratified_split)
from bench.registry import BENCHMARKS
from bench.run import resolve_spec
from bench.spec import SPEC_VERSION, RunSpec, benchmark_identity, compute_run_id, data_key, derive_seed
from sweeps.plan import Cell
from sweeps.suite import Suite, TuneBudget

# A spec_version 1 spec as the code before version 2 resolved it (mvae on digits-ms, rho 0.5, seed 2), and the
# run_id that code gave it: a record written then is found under this id.
V1_SPEC = {
    "benchmark": {"config": {"dm": 1, "ink_max": 0.4, "max_angle": 15.0, "noise_std": 0.05, "pairing": "class",
                             "paper_min": 0.6, "seed": 0, "variants": 4}, "name": "digits-ms", "version": 2},
    "debug": {},
    "eval": {"batch_size": 512, "classifier_batch_size": 64, "classifier_epochs": 15, "classifier_hidden": 128,
             "classifier_lr": 0.002, "coherence_max_samples": 1000, "coherence_max_subsets": 10, "fid_features": None,
             "fid_inception_weights": None, "fid_max_samples": 10000, "kid_subset_size": 1000, "kid_subsets": 100,
             "kmeans_fit": "test", "kmeans_n_init": 10, "kmeans_score": "test", "metrics": None,
             "probe_max_train": 5000, "probe_replace": False, "probe_scaler": True, "protocol": "default"},
    "method": {"config": {"beta": 1.0, "hidden": 128, "latent_dim": 16, "n_random_subsets": 0, "recon_weights": [],
                          "warmup_epochs": 0}, "name": "mvae", "version": 1},
    "missing": "paired", "obs_ratio": 0.5, "phase": "final", "seed": 2, "spec_version": 1, "suite": "adhoc",
    "trainer": {"amsgrad": False, "batch_size": 128, "betas": [0.9, 0.999], "device": "auto", "epochs": 10,
                "gradient_clipping": 0.0, "keep_checkpoints": 1, "lr": 0.001, "precision": "fp32", "progress": True,
                "val_fraction": 0.1, "weight_decay": 0.0, "workers": 1, "zero_stage": 0},
}
V1_RUN_ID = "5ac54ee96ed555fe"


def _old_split_seed(*parts):
    # the definition of the seeds of spec_version 1, written out: sha256 of the \x1f-joined str() of the parts,
    # first 8 bytes little-endian, shifted right once
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "little") >> 1


def _digits(**cfg):
    cls = BENCHMARKS.get("digits-ms")
    return cls(cls.Config(variants=1, **cfg))


# --- golden values: the embedded datasets and every run's seeds are generated from these -------------------------
@pytest.mark.parametrize("parts, expected", [
    (("mmrl-digits", 0, "train"), 1964239239248451869),
    (("mfeat6", "split", 0), 7995400947034759582),
    (("bc-3view", "split", 1), 4545136296953435021),
    (("kvasir-seg split", 0), 8801924162454182526),
    (("digits-ms", 1, "DigitsMs.Config(x=1)", "obs", 0.5, "paired", 3), 640914327388184294),
])
def test_split_seed_values_are_unchanged(parts, expected):
    assert split_seed(*parts) == expected == _old_split_seed(*parts)


def test_derive_seed_value_is_unchanged():
    assert derive_seed("abc", "init") == 3337804315890315603


# --- spec_version 1 records ----------------------------------------------------------------------------------------
def test_a_version_1_spec_keeps_its_run_id():
    assert compute_run_id(V1_SPEC) == V1_RUN_ID
    spec = RunSpec.from_dict(V1_SPEC)
    assert spec.spec_version == 1 and spec.run_id == V1_RUN_ID and spec.to_dict()["spec_version"] == 1


def test_new_specs_are_version_2_with_their_own_run_id():
    cfg = {"method": {"name": "mvae"}, "benchmark": {"name": "digits-ms"}, "obs_ratio": 0.5, "seed": 2}
    spec = resolve_spec(cfg)
    assert spec["spec_version"] == SPEC_VERSION == 2
    assert RunSpec.from_dict(spec).run_id == compute_run_id(spec)
    # the same settings written by version 1 are another run: its record keeps its id and its splits
    assert compute_run_id({**spec, "spec_version": 1}) != compute_run_id(spec)
    assert compute_run_id({**V1_SPEC, "spec_version": 2}) != V1_RUN_ID


def test_legacy_seeds_are_the_old_formula_and_give_the_old_splits():
    bench, rho, seed, protocol = _digits(), 0.5, 3, "paired"
    ident = (bench.name, bench.version, repr(bench.cfg))
    old_val, old_obs = _old_split_seed(*ident, "val", seed), _old_split_seed(*ident, "obs", rho, protocol, seed)
    assert legacy_split_seeds(bench, rho, seed, protocol) == (old_val, old_obs)

    train, val, _ = load_splits(bench, rho, seed, protocol, legacy_seeds=True)
    full = bench.build()[0]
    tr_idx, va_idx = stratified_split(full.labels.numpy(), 0.1, old_val)
    assert torch.equal(val.labels, full.labels[torch.as_tensor(va_idx)])
    assert torch.equal(train.mask, observation_mask(len(tr_idx), len(full.modalities), rho, old_obs, protocol))
    new_train, _, _ = load_splits(bench, rho, seed, protocol)
    assert not torch.equal(new_train.mask, train.mask)  # version 2 draws other splits


@pytest.mark.parametrize("version, legacy", [(1, True), (2, False), (None, True)])
def test_a_run_uses_the_seeds_of_its_spec_version(monkeypatch, version, legacy):
    import bench.train.worker

    seen = {}

    class Stop(Exception):
        pass

    def spy(*args, **kw):
        seen.update(kw)
        raise Stop

    monkeypatch.setattr(bench.train.worker, "load_splits", spy)
    spec = copy.deepcopy(V1_SPEC)
    if version is None:
        del spec["spec_version"]  # a spec from before versions were written
    else:
        spec["spec_version"] = version
    with pytest.raises(Stop):
        bench.train.worker.execute(spec, compute_run_id(spec), store=None, progress=None)
    assert seen["legacy_seeds"] is legacy


# --- non-identity keys change nothing -----------------------------------------------------------------------------
def _cell_and_spec(*overrides):
    cfg = compose(["method=mvae", "benchmark=polymnist", "obs_ratio=0.5", *overrides])
    return Cell("mvae", "polymnist", 0.5, cfg, space={"trainer.lr": {"loguniform": [1e-4, 3e-3]}}), resolve_spec(cfg)


def test_root_workers_and_progress_change_no_run_id_study_or_split_seed(tmp_path):
    suite = Suite(name="t", methods=(), benchmarks=(), obs_ratios=(0.5,), seeds=(0,),
                  tune=TuneBudget(n_trials=4, epochs=2))
    variants = [(), (f"benchmark.root={tmp_path / 'a'}",), (f"benchmark.root={tmp_path / 'b'}",),
                ("trainer.workers=2",), ("trainer.progress=false",),
                (f"benchmark.root={tmp_path / 'c'}", "trainer.workers=4", "trainer.progress=true")]
    seen = set()
    for ov in variants:
        cell, spec = _cell_and_spec(*ov)
        seen.add((compute_run_id(spec), cell.study_name(suite), split_seeds(spec["benchmark"], 0.5, 0, "paired")))
    assert len(seen) == 1, seen
    # an identity key changes all three, so the check above can fail
    cell, spec = _cell_and_spec("benchmark.size=32")
    other = (compute_run_id(spec), cell.study_name(suite), split_seeds(spec["benchmark"], 0.5, 0, "paired"))
    (same,) = seen
    assert all(a != b for a, b in zip(same, other))
    assert cell.study_name(suite).startswith("t.mvae.polymnist.rho0.5.")


def test_study_name_follows_space_and_budget_but_not_the_suite_description():
    cell, _ = _cell_and_spec()
    budget = TuneBudget(n_trials=4, epochs=2)
    base = Suite(name="t", methods=(), benchmarks=(), obs_ratios=(0.5,), seeds=(0,), tune=budget)
    name = cell.study_name(base)
    assert cell.study_name(dataclasses.replace(base, tune=TuneBudget(n_trials=5, epochs=2))) != name
    assert dataclasses.replace(cell, space={"trainer.lr": {"loguniform": [1e-4, 1e-3]}}).study_name(base) != name
    assert cell.study_name(dataclasses.replace(base, description="other words")) == name


def test_renaming_the_config_class_changes_neither_splits_nor_run_id(monkeypatch):
    cls = BENCHMARKS.get("digits-ms")
    before = _digits()
    spec_before = resolve_spec({"method": {"name": "mvae"}, "benchmark": {"name": "digits-ms", "variants": 1}})
    a_train, a_val, _ = load_splits(before, 0.5, 3)

    class RenamedConfig(cls.Config):  # same fields, another class name: another repr
        pass

    monkeypatch.setattr(cls, "Config", RenamedConfig)
    after = cls(make_config(cls.Config, {"variants": 1}, "benchmark"))
    assert type(after.cfg) is RenamedConfig and repr(after.cfg) != repr(before.cfg)
    spec_after = resolve_spec({"method": {"name": "mvae"}, "benchmark": {"name": "digits-ms", "variants": 1}})
    assert compute_run_id(spec_after) == compute_run_id(spec_before)
    b_train, b_val, _ = load_splits(after, 0.5, 3)
    assert torch.equal(a_train.mask, b_train.mask) and torch.equal(a_val.labels, b_val.labels)
    # the version-1 seeds did change with the name: the reason for version 2
    assert legacy_split_seeds(after, 0.5, 3, "paired") != legacy_split_seeds(before, 0.5, 3, "paired")


# --- split seeds of version 2 ---------------------------------------------------------------------------------------
def test_split_seeds_follow_identity_seed_rho_and_protocol_only():
    section = {"name": "polymnist", "version": 1, "config": {"root": "/a", "size": 28}}
    val, obs = split_seeds(section, 0.5, 0, "paired")
    assert split_seeds({**section, "config": {"root": None, "size": 28}}, 0.5, 0, "paired") == (val, obs)
    # the hold-out is the same set at every rho and protocol; the mask is not
    assert split_seeds(section, 0.25, 0, "mcar")[0] == val
    others = [split_seeds(section, 0.25, 0, "paired"), split_seeds(section, 0.5, 0, "mcar"),
              split_seeds(section, 0.5, 1, "paired")]
    assert all(o[1] != obs for o in others) and others[2][0] != val
    assert split_seeds({**section, "version": 2}, 0.5, 0, "paired")[0] != val
    assert split_seeds({**section, "config": {"root": None, "size": 32}}, 0.5, 0, "paired")[0] != val


def test_every_method_gets_the_same_splits():
    seeds = {split_seeds(resolve_spec({"method": {"name": m}, "benchmark": {"name": "digits-ms"}})["benchmark"],
                         0.5, 0, "paired") for m in ("mvae", "mopoe", "untrained")}
    assert len(seeds) == 1


@pytest.mark.parametrize("name", sorted(BENCHMARKS.names()))
def test_a_benchmark_instance_has_the_data_key_of_its_spec(name):
    # bench.run seeds the splits from the instance it builds from the spec: both must name the same data
    spec = resolve_spec({"method": {"name": "mvae"}, "benchmark": {"name": name, "root": "/somewhere"}}
                        if getattr(BENCHMARKS.get(name), "needs_data", False) else
                        {"method": {"name": "mvae"}, "benchmark": {"name": name}})
    cls = BENCHMARKS.get(name)
    instance = cls(make_config(cls.Config, spec["benchmark"]["config"], "benchmark"))
    assert data_key(benchmark_section(instance)) == data_key(spec["benchmark"])
    assert "root" not in benchmark_identity(spec["benchmark"])["config"]


def test_a_malformed_benchmark_section_is_refused():
    with pytest.raises(ValueError, match=r"exactly the keys \['config', 'name', 'version'\], got \['name'\]"):
        data_key({"name": "digits-ms"})
