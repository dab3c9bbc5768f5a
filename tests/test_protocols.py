"""Training protocols (sweeps/conf/protocol, bench/compose.py): the paper protocol's settings reach the resolved
RunSpec per method and benchmark family, explicit overrides beat them, the default protocol changes nothing, bad
names and malformed files are refused in one line, and the paper suite runs under it. Also the options the paper
settings needed: MoPoE's image likelihood and data-size weights, a fixed-scale Laplace, the trainer's betas."""

from __future__ import annotations

import dataclasses
import subprocess
from functools import lru_cache

import pytest
import torch
import yaml

from baselines.mopoe import MoPoE
from bench.compose import PROTOCOL_DIR, check_protocol, compose, protocol_names, protocol_overrides
from bench.config import make_config
from bench.data.contracts import BenchmarkSpec, Modality
from bench.testing import fixtures as F
from bench.errors import BenchError
from bench.nn.dists import log_likelihood
from bench.nn.modules import data_size_weights
from bench.registry import BENCHMARKS, METHODS
from bench.run import resolve_spec
from bench.spec import compute_run_id
from bench.train.config import TrainerConfig
from bench.train.deepspeed_setup import ds_config
from conftest import python, random_batch
from sweeps.plan import default_runs, make_plan
from sweeps.suite import Entry, load_suite

PAPER = yaml.safe_load((PROTOCOL_DIR / "paper.yaml").read_text())


@lru_cache(maxsize=None)
def _paper_spec(method: str, benchmark: str) -> dict:
    return resolve_spec(compose(["protocol=paper", f"method={method}", f"benchmark={benchmark}"]))


def _value(spec: dict, key: str):
    section, _, name = key.partition(".")
    return (spec[section]["config"] if section in ("method", "benchmark") else spec[section])[name]


def _protocol_sets(method: str, benchmark: str, key: str):
    """The value the paper protocol itself gives ``key`` (the last rule naming it), or a sentinel."""
    chosen = [ov.partition("=") for ov in protocol_overrides(PAPER, method, benchmark)]
    values = [yaml.safe_load(v) for k, _, v in chosen if k == key]
    return values[-1] if values else "<not set by the protocol>"


# (method, benchmark standing for its family, option, official value); sources in docs/protocols.md
PAPER_SETTINGS = [
    *[("mopoe", "mnist-svhn-text", k, v) for k, v in [
        ("method.image_likelihood", "laplace"), ("method.laplace_scale", 0.75), ("method.latent_dim", 20),
        ("method.beta", 2.5), ("method.recon_scaling", "data_size"), ("trainer.epochs", 200),
        ("trainer.batch_size", 256), ("trainer.lr", 0.001)]],
    *[("mopoe", "polymnist", k, v) for k, v in [
        ("method.image_likelihood", "laplace"), ("method.laplace_scale", 0.75), ("method.latent_dim", 512),
        ("method.beta", 2.5), ("trainer.epochs", 300), ("trainer.batch_size", 256), ("trainer.lr", 0.0005)]],
    ("mopoe", "digits-poly5", "method.latent_dim", 512),      # the embedded stand-in of the PolyMNIST family
    ("mopoe", "cub-icc", "method.image_likelihood", "laplace"),  # method-wide
    *[("mvae", "mnist-svhn-text", k, v) for k, v in [
        ("method.latent_dim", 64), ("method.warmup_epochs", 200), ("trainer.epochs", 500),
        ("trainer.batch_size", 100), ("trainer.lr", 0.001), ("method.recon_weights", [1.0, 1.0, 10.0])]],
    ("mvae", "polymnist", "method.warmup_epochs", 20),
    ("mvae", "digits-mst", "method.recon_weights", [1.0, 1.0, 10.0]),
    ("mvae", "cub-icc", "method.recon_weights", [1.0, 10.0]),
    ("mvae", "cubicc", "method.recon_weights", [1.0, 10.0]),
    ("mvae", "cub-200", "method.recon_weights", [1.0, 10.0, 10.0]),
    ("mvae", "mimic-cxr", "method.recon_weights", [1.0, 1.0, 10.0]),
    *[("mmvae_plus", "polymnist", k, v) for k, v in [
        ("method.latent_dim", 32), ("method.private_dim", 32), ("method.beta", 2.5), ("method.estimator", "dreg"),
        ("method.k_samples", 10), ("method.image_likelihood", "laplace"), ("method.laplace_scale", 0.75),
        ("trainer.epochs", 150), ("trainer.batch_size", 128), ("trainer.lr", 0.001), ("trainer.amsgrad", True)]],
    *[("mvp", "polymnist", k, v) for k, v in [
        ("method.latent_dim", 96), ("method.common_dim", 48), ("method.transform_hidden", [256, 1024, 256]),
        ("method.rec_weight", 2.0), ("method.perm_weight", 5.0), ("method.common_weight", 2.5),
        ("method.warmup_fraction", 0.4), ("trainer.epochs", 500), ("trainer.batch_size", 256),
        ("trainer.lr", 0.0005), ("trainer.weight_decay", 1e-5), ("trainer.gradient_clipping", 12.0)]],
    *[("mvp", "mfeat6", k, v) for k, v in [
        ("method.latent_dim", 16), ("method.common_dim", 16), ("method.transform_hidden", [128, 256, 128]),
        ("method.rec_weight", 2.5), ("method.perm_weight", 10.0), ("method.common_weight", 5.0),
        ("method.warmup_fraction", 0.6667), ("trainer.epochs", 150), ("trainer.batch_size", 512),
        ("trainer.lr", 0.001), ("trainer.weight_decay", 1e-5), ("trainer.gradient_clipping", 12.0)]],
    *[(m, "digits-ms", k, v) for m in ("pmrl", "pmrl_leading") for k, v in [
        ("trainer.weight_decay", 0.01), ("trainer.betas", [0.9, 0.98]), ("trainer.gradient_clipping", 2.0),
        ("trainer.batch_size", 64), ("method.tau1", 0.05), ("method.tau2", 0.1)]],
    *[("dcmem", "digits-ms", k, v) for k, v in [
        ("method.image_likelihood", "laplace"), ("method.alpha", 10.0), ("method.k_samples", 10),
        ("method.latent_dim", 64), ("trainer.epochs", 500), ("trainer.batch_size", 128), ("trainer.lr", 0.0005)]],
    ("dcmem", "cub-icc", "method.image_likelihood", "laplace"),
    ("cm_glasso", "cub-icc", "trainer.epochs", 100),  # the harness budget where no paper gives one
]


@pytest.mark.parametrize("method, benchmark, key, value", PAPER_SETTINGS,
                         ids=[f"{m}-{b}-{k}" for m, b, k, _ in PAPER_SETTINGS])
def test_the_paper_protocol_puts_each_official_setting_in_the_run_spec(method, benchmark, key, value):
    assert _value(_paper_spec(method, benchmark), key) == value
    # named by the protocol itself, so that dropping a rule whose value is also the harness default still fails
    assert _protocol_sets(method, benchmark, key) == value


def test_families_hold_the_paper_suites_benchmarks_and_their_embedded_stand_ins():
    families = PAPER["families"]
    assert {b.name for b in load_suite("paper").benchmarks} <= {b for members in families.values() for b in members}
    assert {"digits-ms", "digits-mst"} <= set(families["mnist-svhn"]) and "digits-poly5" in families["polymnist"]


def test_an_explicit_override_beats_the_protocol_and_leaves_its_other_settings():
    spec = resolve_spec(compose(["protocol=paper", "method=mopoe", "benchmark=polymnist", "method.latent_dim=32",
                                 "trainer.epochs=3"]))
    assert spec["method"]["config"]["latent_dim"] == 32 and spec["trainer"]["epochs"] == 3
    assert spec["method"]["config"]["beta"] == 2.5 and spec["trainer"]["batch_size"] == 256
    # the order of the arguments does not matter: the protocol's strings always come first
    again = resolve_spec(compose(["trainer.epochs=3", "method.latent_dim=32", "protocol=paper", "method=mopoe",
                                  "benchmark=polymnist"]))
    assert compute_run_id(again) == compute_run_id(spec)


@pytest.mark.parametrize("method, benchmark", [("mopoe", "polymnist"), ("mvae", "mnist-svhn-text"),
                                               ("pmrl", "digits-ms"), ("mvp", "mfeat6")])
def test_the_default_protocol_changes_nothing(method, benchmark):
    plain = resolve_spec(compose([f"method={method}", f"benchmark={benchmark}"]))
    default = resolve_spec(compose(["protocol=default", f"method={method}", f"benchmark={benchmark}"]))
    assert default == plain and "protocol" not in plain  # not stored at the default: earlier specs read back alike
    assert compute_run_id(default) == compute_run_id(plain)
    assert resolve_spec(compose(["protocol=paper", f"method={method}", f"benchmark={benchmark}"])) != plain


def test_the_protocol_is_a_label_outside_the_run_identity():
    paper = resolve_spec(compose(["protocol=paper", "method=cm_glasso", "benchmark=cub-icc"]))
    same = resolve_spec(compose(["method=cm_glasso", "benchmark=cub-icc", "trainer.epochs=100"]))
    assert paper["protocol"] == "paper" and "protocol" not in same
    assert compute_run_id(paper) == compute_run_id(same)  # the same settings are the same run


def test_an_unknown_protocol_is_refused_in_one_line_naming_the_valid_ones(cli_env, tmp_path):
    with pytest.raises(BenchError) as e:
        compose(["protocol=papers"])
    assert str(e.value) == "unknown protocol 'papers'; did you mean 'paper'? valid: default, paper"
    out = subprocess.run([python(), "-m", "bench", "run", "protocol=nope"], env=cli_env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["error: unknown protocol 'nope' valid: default, paper"]


@pytest.mark.parametrize("change, expect", [
    ({"families": {"a": ["digits-ms"], "b": ["digits-ms"]}}, "benchmark 'digits-ms' is in two families, a and b"),
    ({"families": {"a": ["digits-mz"]}}, "did you mean 'digits-ms'"),
    ({"rules": {"mvea": {"*": []}}}, "did you mean 'mvae'"),
    ({"rules": {"mvae": {"svhn": []}}}, "'svhn' is neither a family"),
    ({"rules": {"mvae": {"*": ["method=mopoe"]}}}, "'method=mopoe' is not a dotted key=value"),
    ({"rules": {"mvae": {"*": ["method.beta"]}}}, "'method.beta' is not a dotted key=value"),
    ({"budget": 3}, "unknown key(s) budget"),
])
def test_a_malformed_protocol_is_refused_in_one_line(change, expect):
    with pytest.raises(BenchError) as e:
        check_protocol({"name": "bad", "families": {}, "rules": {}, **change})
    assert expect in str(e.value) and "\n" not in str(e.value)


def test_a_rule_naming_a_missing_option_names_the_protocol(monkeypatch):
    broken = {"name": "paper", "families": {}, "rules": {"mvae": {"*": ["method.nope=1"]}}}
    monkeypatch.setattr("bench.compose.protocol_overrides", lambda p, m, b: protocol_overrides(broken, m, b))
    with pytest.raises(BenchError, match=r"^protocol paper: unknown option 'method.nope'; valid: method.beta"):
        compose(["protocol=paper", "method=mvae"])


def test_rules_apply_from_the_least_to_the_most_specific():
    p = {"families": {"fam": ["digits-ms"]},
         "rules": {"*": {"digits-ms": ["x.a=1"], "*": ["x.a=2"], "fam": ["x.a=3"]},
                   "mvae": {"digits-ms": ["x.a=4"], "fam": ["x.a=5"], "*": ["x.a=6"]}}}
    assert protocol_overrides(p, "mvae", "digits-ms") == [f"x.a={i}" for i in (2, 3, 1, 6, 5, 4)]
    assert protocol_overrides(p, "mopoe", "mfeat6") == ["x.a=2"]


@pytest.mark.parametrize("name", protocol_names())
def test_every_protocol_file_is_well_formed_and_its_rules_build_valid_configs(name):
    protocol = yaml.safe_load((PROTOCOL_DIR / f"{name}.yaml").read_text())
    assert protocol["name"] == name
    check_protocol(protocol)
    members = sorted({b for bs in protocol["families"].values() for b in bs} | {"digits-ms"})
    for method in METHODS.names():
        for benchmark in members:
            values: dict = {"method": {}, "trainer": {}}
            for ov in protocol_overrides(protocol, method, benchmark):
                key, _, value = ov.partition("=")
                section, _, option = key.partition(".")
                values[section][option] = yaml.safe_load(value)
            # unknown options and bad values are refused here, without a Hydra composition per pair
            make_config(METHODS.get(method).Config, values["method"], f"{name}: {method} on {benchmark}")
            make_config(TrainerConfig, values["trainer"], f"{name}: trainer of {method} on {benchmark}")


def _modalities(benchmark: str, root) -> tuple[Modality, ...]:
    writers = {"cub-icc": lambda: F.write_cub_icc(root / "cub-icc" / "cub", F.cub_class_names(2),
                                                   F.cub_class_names(1, start=3), n_per_class=2),
               "cubicc": lambda: F.write_cubicc(root / "cubicc", n=12),
               "cub-200": lambda: F.write_cub200(root / "cub-200" / "CUB_200_2011", n_classes=2, n_per_class=3),
               "mimic-cxr": lambda: F.write_mimic_tensors(root / "mimic-cxr", {"train": 6, "eval": 2, "test": 4})}
    cls = BENCHMARKS.get(benchmark)
    if benchmark in writers:
        writers[benchmark]()
        return cls(cls.Config(root=str(root))).spec().modalities
    return cls(cls.Config()).spec().modalities


@pytest.mark.parametrize("benchmark", ["mnist-svhn-text", "digits-mst", "cub-icc", "cubicc", "cub-200", "mimic-cxr"])
def test_mvae_weights_its_text_and_attribute_modalities_ten_times_its_images(benchmark, tmp_path):
    """The explicit per-benchmark lists must follow each benchmark's modality order."""
    mods = _modalities(benchmark, tmp_path)
    expected = [1.0 if m.kind == "image" else 10.0 for m in mods]
    assert _paper_spec("mvae", benchmark)["method"]["config"]["recon_weights"] == expected


def test_the_paper_suites_runs_carry_the_paper_protocol():
    suite = load_suite("paper")
    assert "protocol=paper" in suite.overrides and suite.tune is None
    # the plan of the suite on embedded stand-ins (the paper data is not here): every run is labelled paper and
    # holds the family's settings
    small = dataclasses.replace(suite, methods=(Entry("mopoe"), Entry("mvae")), obs_ratios=(1.0,), seeds=(0,),
                                benchmarks=(Entry("digits-poly5"), Entry("digits-mst")))
    runs = default_runs(make_plan(small))
    assert len(runs) == 4 and all(r["protocol"] == "paper" for r in runs)
    by = {(r["method"]["name"], r["benchmark"]["name"]): r for r in runs}
    assert by["mopoe", "digits-poly5"]["method"]["config"]["latent_dim"] == 512
    assert by["mvae", "digits-mst"]["method"]["config"]["recon_weights"] == [1.0, 1.0, 10.0]


# --- the options the paper settings needed -------------------------------------------------------------------
IMG = Modality("img", "image", (1, 4, 4), likelihood="bernoulli")
RGB = Modality("rgb", "image", (3, 4, 4), likelihood="gaussian")
TXT = Modality("txt", "text", (3,), vocab_size=5)


def test_a_fixed_scale_laplace_is_torchs_laplace():
    torch.manual_seed(0)
    x, loc = torch.randn(5, 2, 3), torch.randn(5, 2, 3)
    want = torch.distributions.Laplace(loc, torch.tensor(0.75)).log_prob(x).sum((1, 2))
    assert torch.allclose(log_likelihood(x, loc, "laplace", laplace_scale=0.75), want, atol=1e-5)
    unit = torch.distributions.Laplace(loc, torch.tensor(1.0)).log_prob(x).sum((1, 2))
    assert torch.allclose(log_likelihood(x, loc, "laplace"), unit, atol=1e-5)
    with pytest.raises(ValueError, match="laplace_scale must be positive"):
        log_likelihood(x, loc, "laplace", laplace_scale=0.0)


def test_data_size_weights_are_mopoes_mnist_svhn_text_weights():
    mods = BENCHMARKS.get("mnist-svhn-text")(BENCHMARKS.get("mnist-svhn-text").Config()).spec().modalities
    assert data_size_weights(mods) == pytest.approx((3072 / 784, 1.0, 3072 / 8))
    assert data_size_weights((RGB, RGB)) == (1.0, 1.0)


def _mopoe(**cfg):
    torch.manual_seed(0)
    return MoPoE(BenchmarkSpec("toy", (IMG, RGB, TXT), 2), MoPoE.Config(latent_dim=3, hidden=8, **cfg))


def test_mopoe_laplace_images_and_data_size_weights_enter_its_reconstruction():
    model = _mopoe(image_likelihood="laplace", laplace_scale=0.5, recon_scaling="data_size",
                   recon_weights=(1.0, 2.0, 1.0))
    assert model.likelihoods == ("laplace", "laplace", "categorical")
    assert model.weights == pytest.approx((3.0, 2.0, 16.0))   # 48/16, 2 x 48/48, 48/3
    batch = random_batch((IMG, RGB, TXT), 4, 0)
    _, _, xs = model.experts(batch)
    z = torch.randn(4, 3)
    want = sum(w * log_likelihood(xs[m], model.decoders[m](z), kind, laplace_scale=0.5)
               for w, m, kind in zip(model.weights, ("img", "rgb", "txt"), model.likelihoods))
    assert torch.allclose(model.reconstruction(z, xs, batch["mask"]), want, atol=1e-4)
    # a Laplace image's mean is its decoder output, where a Bernoulli image's is a sigmoid of it
    for m, mean in ((model, lambda p: p), (_mopoe(), torch.sigmoid)):
        torch.manual_seed(1)
        sampled = m.sample(2)["img"]
        torch.manual_seed(1)
        assert torch.allclose(sampled, mean(m.decoders["img"](torch.randn(2, 3))))


def test_mopoe_keeps_its_own_likelihoods_by_default_and_refuses_bad_options():
    assert _mopoe().likelihoods == ("bernoulli", "gaussian", "categorical") and _mopoe().weights == (1.0,) * 3
    with pytest.raises(ValueError, match=r"image_likelihood must be one of \('auto', 'laplace'\)"):
        _mopoe(image_likelihood="normal")
    with pytest.raises(ValueError, match=r"recon_scaling must be one of \('none', 'data_size'\)"):
        _mopoe(recon_scaling="size")
    with pytest.raises(ValueError, match="laplace_scale must be positive"):
        _mopoe(laplace_scale=0.0)


def test_trainer_betas_and_amsgrad_reach_the_optimiser_and_bad_betas_are_refused():
    spec = resolve_spec(compose(["method=pmrl", "trainer.betas=[0.9,0.98]", "trainer.amsgrad=true"]))
    params = ds_config(spec["trainer"], use_cuda=False)["optimizer"]["params"]
    assert params["betas"] == [0.9, 0.98] and params["amsgrad"] is True
    default = ds_config(resolve_spec(compose([]))["trainer"], use_cuda=False)["optimizer"]["params"]
    assert default["betas"] == [0.9, 0.999] and default["amsgrad"] is False
    with pytest.raises(BenchError, match=r"trainer.betas must be two numbers in \[0, 1\)"):
        resolve_spec(compose(["trainer.betas=[0.9,1.0]"]))
