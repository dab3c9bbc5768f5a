"""The Hydra tree agrees with the registries, and every registered method runs on every embedded benchmark
(generated from the registries, so a newly registered one is covered automatically)."""

from pathlib import Path

import pytest
import torch
import yaml

from bench.compose import compose
from bench.config import config_dict, make_config
from bench.data import load_splits
from bench.registry import BENCHMARKS, METHODS
from bench.run import resolve_spec

CONF = Path(__file__).resolve().parents[1] / "sweeps" / "conf"


@pytest.mark.parametrize("group, registry", [("method", METHODS), ("benchmark", BENCHMARKS)])
def test_every_registered_entry_has_a_config_file_with_its_fields(group, registry):
    for name, cls in registry.items():
        path = CONF / group / f"{name}.yaml"
        assert path.exists(), f"{path} is missing"
        values = yaml.safe_load(path.read_text())
        assert values.pop("name") == name
        defaults = config_dict(cls.Config())
        assert set(values) == set(defaults), f"{path}: keys differ from {cls.__name__}.Config"
        assert config_dict(make_config(cls.Config, values, name)) == defaults, f"{path} disagrees with the defaults"


def test_every_config_file_names_a_registered_entry():
    for group, registry in (("method", METHODS), ("benchmark", BENCHMARKS)):
        for path in (CONF / group).glob("*.yaml"):
            assert path.stem in registry, f"{path} names no registered {group}"


@pytest.mark.parametrize("trainer", ["cpu", "gpu-zero1", "gpu-zero2"])
def test_trainer_groups_resolve(trainer):
    spec = resolve_spec(compose([f"trainer={trainer}"]))
    assert spec["trainer"]["zero_stage"] == {"cpu": 0, "gpu-zero1": 1, "gpu-zero2": 2}[trainer]


SMALL = {"digits-ms": {"dm": 1}, "digits-mst": {"dm": 1}, "digits-seg": {"n_train": 64, "n_test": 32}}


@pytest.mark.parametrize("method", METHODS.names())
@pytest.mark.parametrize("benchmark", BENCHMARKS.names())
def test_method_trains_and_embeds_on_benchmark(method, benchmark):
    bcls, mcls = BENCHMARKS.get(benchmark), METHODS.get(method)
    bench = bcls(make_config(bcls.Config, SMALL.get(benchmark, {}), benchmark))
    train, _, _ = load_splits(bench, 0.5, seed=0)
    torch.manual_seed(0)
    model = mcls(bench.spec(), mcls.Config())
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    idx = torch.arange(min(32, len(train)))
    batch = train.batch(idx)
    assert not batch["mask"].all()  # the batch really has missing modalities
    for _ in range(2):
        loss = model.loss(batch)["loss"]
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    emb = model.embed(batch)
    assert emb["joint"].shape[0] == len(idx) and torch.isfinite(emb["joint"]).all()
