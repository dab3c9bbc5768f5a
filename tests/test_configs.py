"""The Hydra tree agrees with the code: every file composes, states only what differs from its Config dataclass
(bench/schemas.py), and the suites live outside the tree where an installed package still finds them."""

from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from bench.compose import compose
from bench.config import config_dict
from bench.errors import BenchError
from bench.registry import BENCHMARKS, METHODS
from bench.run import resolve_spec
from bench.schemas import GROUP, schema_paths
from sweeps.plan import suite_override
from sweeps.suite import SUITE_DIR, load_suite, suite_names

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "sweeps" / "conf"
SCHEMA_GROUPS = ("method", "benchmark", "trainer", "eval")  # the groups whose files sit on a Config dataclass
SCHEMAS = schema_paths()


def read(group: str, name: str) -> dict:
    return yaml.safe_load((CONF / group / f"{name}.yaml").read_text()) or {}


def same(a, b) -> bool:
    """Equal as configuration values: 1 == 1.0, but true is not 1 and a tuple equals its list."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def inherited(group: str, defaults: list) -> dict:
    """The values a file's defaults list gives it before its own keys: its schema's, or another file's of the group."""
    out: dict = {}
    for entry in defaults:
        if entry == "_self_":
            continue
        target = entry.partition("@")[0]
        if target.startswith(f"/{GROUP}/"):
            out.update(config_dict(SCHEMAS[target[1:]]()))
        else:
            out.update(effective(group, target))
    return out


def effective(group: str, name: str) -> dict:
    raw = read(group, name)
    return {**inherited(group, raw.pop("defaults", [])), **raw}


def restated(raw: dict, base: dict) -> list[str]:
    """The keys of a file (other than name) whose value is the one it would inherit anyway."""
    return sorted(k for k, v in raw.items() if k not in ("name", "defaults") and k in base and same(v, base[k]))


def config_files() -> list[tuple[str, str]]:
    return [(g, p.stem) for g in SCHEMA_GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


@pytest.mark.parametrize("group, name", config_files())
def test_a_config_file_states_only_what_differs_from_what_it_inherits(group, name):
    raw = read(group, name)
    defaults = raw.get("defaults") or []
    assert any(str(d).startswith(f"/{GROUP}/") for d in defaults) or any(
        (CONF / group / f"{d}.yaml").exists() for d in defaults), \
        f"{group}/{name}.yaml names neither its schema (/{GROUP}/...) nor a file of its group in its defaults list"
    base = inherited(group, defaults)
    assert not restated(raw, base), f"{group}/{name}.yaml restates inherited values: {restated(raw, base)}"
    assert set(raw) - {"defaults", "name"} <= set(base), f"{group}/{name}.yaml has keys its schema lacks"


def test_the_restatement_check_catches_a_default_written_out():
    base = config_dict(SCHEMAS[f"{GROUP}/method/mvae"]())
    assert restated({"name": "mvae", "beta": 1, "latent_dim": 32, "recon_weights": ()}, base) == ["beta",
                                                                                                  "recon_weights"]
    assert restated({"amsgrad": 0}, {"amsgrad": False}) == []  # 0 is not false: stating it is a difference


@pytest.mark.parametrize("group, registry", [("method", METHODS), ("benchmark", BENCHMARKS)])
def test_every_registered_entry_has_a_config_file_on_its_schema(group, registry):
    for name, cls in registry.items():
        path = CONF / group / f"{name}.yaml"
        assert path.exists(), f"{path} is missing"
        raw = read(group, name)
        assert raw.get("name") == name
        assert f"/{GROUP}/{group}/{name}@_here_" in raw.get("defaults", []), f"{path} does not name its schema"
        assert set(effective(group, name)) == {"name", *config_dict(cls.Config())}


def test_every_config_file_names_a_registered_entry():
    for group, registry in (("method", METHODS), ("benchmark", BENCHMARKS)):
        for path in (CONF / group).glob("*.yaml"):
            assert path.stem in registry, f"{path} names no registered {group}"


def test_every_config_composes_to_its_code_defaults_and_its_own_values():
    """One composition per benchmark (the methods and the other groups' files taken in turn) covers every file."""
    methods, benchmarks = METHODS.names(), BENCHMARKS.names()
    others = [(g, p.stem) for g in ("trainer", "eval") for p in sorted((CONF / g).glob("*.yaml"))]
    for i, b in enumerate(benchmarks):
        m, (g, o) = methods[i % len(methods)], others[i % len(others)]
        cfg = compose([f"method={m}", f"benchmark={b}", f"{g}={o}"])
        for group, name in (("method", m), ("benchmark", b), (g, o)):
            assert cfg[group] == effective(group, name), f"{group}={name} composed to other values"
        resolve_spec(cfg)
    assert len(benchmarks) >= max(len(methods), len(others))


@pytest.mark.parametrize("trainer", ["gpu-zero1", "gpu-zero2"])
def test_gpu_trainers_are_cpu_with_three_changes(trainer):
    """What they compose to is checked above; here, that they inherit cpu and change only the GPU settings."""
    assert "cpu" in read("trainer", trainer)["defaults"]
    gpu, cpu = effective("trainer", trainer), effective("trainer", "cpu")
    assert {k for k in gpu if not same(gpu[k], cpu[k])} == {"device", "zero_stage", "precision"}
    assert (gpu["device"], gpu["precision"], gpu["zero_stage"]) == ("cuda", "bf16", int(trainer[-1]))


def test_schemas_keep_values_as_make_config_keeps_them():
    """1 and 1.0 give different run_ids: an integer in an optional float or in a list is not made a float."""
    cfg = compose(["method=mvae", "method.recon_weights=[1,2]", "trainer.gradient_clipping=1", "method.beta=2"])
    spec = resolve_spec(cfg)
    assert spec["method"]["config"]["recon_weights"] == [1, 2]
    assert all(type(w) is int for w in spec["method"]["config"]["recon_weights"])
    assert type(spec["trainer"]["gradient_clipping"]) is int and type(spec["method"]["config"]["beta"]) is float


@pytest.mark.parametrize("override, says", [("method.hidden=abc", "could not be converted to Integer"),
                                            ("method.nope=1", "unknown option 'method.nope'")])
def test_a_value_or_key_the_schema_refuses_is_one_line(override, says):
    with pytest.raises(BenchError, match=says) as e:
        compose(["method=mvae", override])
    assert "\n" not in str(e.value)


# --- suites --------------------------------------------------------------------------------------------------------
def test_suites_live_outside_the_config_tree_and_all_load():
    assert not (CONF / "suite").exists() and CONF not in SUITE_DIR.parents
    assert suite_names() == sorted(p.stem for p in SUITE_DIR.glob("*.yaml")) and "quick" in suite_names()
    for name in suite_names():
        assert load_suite(name).name == name


def test_the_package_data_ships_every_suite():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = SUITE_DIR.parent
    shipped = {p for pattern in data.get(package.name, []) for p in package.glob(pattern)}
    assert set(SUITE_DIR.glob("*.yaml")) <= shipped, "pyproject.toml's package-data leaves suites out"


NAMES = ["quick", "my suite", "it's", "a\\b", "a\\", "x${y}", "a\\${y}", "a\\'", "null", "1.5", "a=b,c", "[x]", "é"]


@pytest.mark.parametrize("name", NAMES)
def test_a_suite_name_reaches_the_runs_as_written(name):
    override, = OverridesParser.create().parse_overrides([suite_override(name)])
    assert override.key_or_group == "suite"
    assert OmegaConf.to_container(OmegaConf.create({"s": override.value()}), resolve=True)["s"] == name


def test_a_planned_run_carries_its_suite_name_through_composition():
    assert compose([suite_override("it's ${x}")])["suite"] == "it's ${x}"
