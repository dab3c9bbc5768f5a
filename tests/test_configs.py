"""The Hydra tree agrees with the registries."""

from pathlib import Path

import pytest
import yaml

from bench.compose import compose
from bench.config import config_dict, make_config
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
