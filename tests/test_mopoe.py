import pytest
import torch

from baselines.mopoe import MoPoE
from bench.data import load_splits
from bench.data.contracts import BenchmarkSpec, Modality
from bench.nn.dists import kl_normal, log_likelihood, product_of_experts
from bench.registry import BENCHMARKS, METHODS
from conftest import REAL_SHAPES, assert_unobserved_values_change_nothing, partly_observed_batch, random_batch

A = Modality("a", "vector", (4,))
B_IMG = Modality("b", "image", (1, 16, 16))
C_TXT = Modality("c", "text", (5,), vocab_size=7)


def _batch(mods, n=6, seed=0):
    return random_batch(mods, n, seed)


def _model(mods, **cfg):
    torch.manual_seed(0)
    return MoPoE(BenchmarkSpec("toy", tuple(mods), 2), MoPoE.Config(latent_dim=3, hidden=16, **cfg))


def test_registered_as_a_baseline_with_generation():
    assert METHODS.get("mopoe") is MoPoE and MoPoE.kind == "baseline"
    assert {"generate", "sample"} <= set(MoPoE.capabilities())


@pytest.mark.parametrize("mods", [(A,), (A, B_IMG), (A, B_IMG, C_TXT)], ids=len)
def test_the_mixture_has_one_component_per_nonempty_subset(mods):
    model = _model(mods)
    assert model.subsets.shape == (2 ** len(mods) - 1, len(mods))
    # the official rule: only the full set carries the prior expert
    assert model.subset_prior.tolist() == [bool(s.all()) for s in model.subsets]


def test_with_one_modality_the_objective_is_a_plain_vae_elbo():
    model = _model((A,))
    batch = _batch((A,))
    torch.manual_seed(3)
    got = model.loss(batch)["loss"]
    # by hand: q = PoE(expert, N(0, I)) (the full set gets the prior expert), one sample, one KL
    torch.manual_seed(3)
    torch.randperm(6)  # the component selection's draw (a single component)
    mu, logvar, xs = model.experts(batch)
    q_mu, q_logvar = product_of_experts(mu, logvar, prior_expert=True)
    z = q_mu + (0.5 * q_logvar).exp() * torch.randn_like(q_mu)
    elbo = log_likelihood(xs["a"], model.decoders["a"](z), "gaussian") - kl_normal(q_mu, q_logvar)
    assert torch.allclose(got, -elbo.mean(), atol=1e-5)


def test_the_kl_is_the_mean_of_the_subset_kls_and_reconstruction_uses_one_component_per_sample():
    model = _model((A, B_IMG, C_TXT), beta=0.7)
    batch = _batch((A, B_IMG, C_TXT), n=14)
    out = model.loss(batch)
    mu, logvar, _ = model.experts(batch)
    kls = [kl_normal(*product_of_experts(mu, logvar, s.expand(14, 3), prior_expert=bool(s.all())))
           for s in model.subsets]
    assert torch.allclose(out["kl"], torch.stack(kls).mean(0).mean(), rtol=1e-5)
    assert torch.allclose(out["loss"], -(out["rec"] - 0.7 * out["kl"]), rtol=1e-5)


def test_a_sample_mixes_only_over_subsets_of_its_observed_modalities():
    model = _model((A, B_IMG, C_TXT))
    batch = _batch((A, B_IMG, C_TXT), n=2)
    batch["mask"][:] = torch.tensor([[True, False, False], [True, False, True]])
    mu, logvar, _ = model.experts(batch)
    out = model.loss(batch)
    # sample 0 has one component ({a}, no prior); sample 1 has {a}, {c}, {a, c}
    only_a = torch.tensor([[True, False, False]])
    kl0 = kl_normal(*product_of_experts(mu[:, :1], logvar[:, :1], only_a, prior_expert=False))
    kl1 = torch.stack([
        kl_normal(*product_of_experts(mu[:, 1:], logvar[:, 1:], torch.tensor([s]), prior_expert=False))
        for s in ([True, False, False], [False, False, True], [True, False, True])
    ]).mean()
    assert torch.allclose(out["kl"], (kl0[0] + kl1) / 2, rtol=1e-5)


def test_unobserved_values_change_neither_loss_nor_gradients():
    mods = (A, B_IMG, C_TXT)
    model = _model(mods)
    batch = _batch(mods, n=8)
    batch["mask"][3:, 1] = False
    batch["mask"][5:, 2] = False
    batch["data"]["b"][3:] = float("nan")
    batch["data"]["c"][5:] = -1

    def scramble(data):
        data["b"][3:] = 123.0
        data["c"][5:] = 3

    assert_unobserved_values_change_nothing(model, batch, scramble)


@pytest.mark.parametrize("name,dims", REAL_SHAPES)
def test_embed_generate_sample_shapes_on_a_real_benchmark(name, dims):
    spec, batch = partly_observed_batch(name)
    model = MoPoE(spec, MoPoE.Config())
    names = list(dims)
    emb = model.embed(batch)
    assert set(emb) == {"joint", *names} and emb["joint"].shape == (5, 16)
    assert torch.isfinite(emb["joint"]).all()
    assert torch.isnan(emb[names[1]][:2]).all() and torch.isfinite(emb[names[1]][2:]).all()
    for target, shape in dims.items():
        assert model.generate(batch, target).shape == (5, *shape)
    assert {k: tuple(v.shape[1:]) for k, v in model.sample(3).items()} == dims


@pytest.mark.parametrize("rho", [1.0, 0.5])
def test_two_optimizer_steps_on_digits_ms(rho):
    cls = BENCHMARKS.get("digits-ms")
    train, _, _ = load_splits(cls(cls.Config(variants=1)), rho, seed=0)
    torch.manual_seed(0)
    model = MoPoE(cls(cls.Config(variants=1)).spec(), MoPoE.Config())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for batch in list(train.batches(64, shuffle=True, generator=torch.Generator().manual_seed(0)))[:2]:
        opt.zero_grad()
        loss = model.loss(batch)["loss"]
        assert torch.isfinite(loss)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
