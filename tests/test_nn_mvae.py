import pytest
import torch

from baselines.mvae import MVAE
from bench.data.contracts import BenchmarkSpec, Modality
from bench.nn.dists import kl_normal, log_likelihood, product_of_experts
from bench.nn.modules import build_decoder, build_encoder, fill_missing
from bench.registry import BENCHMARKS

MODS = [
    Modality("img16", "image", (1, 16, 16)),
    Modality("img28", "image", (3, 28, 28), likelihood="gaussian"),
    Modality("img64", "image", (3, 64, 64)),
    Modality("img1615", "image", (1, 16, 15)),
    Modality("vec", "vector", (7,)),
    Modality("txt", "text", (8,), vocab_size=11),
    Modality("seg", "mask", (32, 32), n_classes=11),
]


def _sample(m: Modality, b: int) -> torch.Tensor:
    if m.kind == "text":
        return torch.randint(0, m.vocab_size, (b,) + m.shape)
    if m.kind == "mask":
        return torch.randint(0, m.n_classes, (b,) + m.shape)
    return torch.rand((b,) + m.shape)


@pytest.mark.parametrize("m", MODS, ids=lambda m: m.name)
def test_encoder_decoder_shapes_and_likelihood(m):
    enc, dec = build_encoder(m), build_decoder(m, latent_dim=5)
    x = _sample(m, 3)
    h = enc(x)
    assert h.shape == (3, enc.out_dim)
    params = dec(torch.randn(3, 5))
    ll = log_likelihood(x, params, m.likelihood)
    assert ll.shape == (3,) and torch.isfinite(ll).all()


def test_mvae_poe_with_only_the_prior_is_standard_normal():
    mu, logvar = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    q_mu, q_logvar = product_of_experts(mu, logvar, torch.zeros(4, 2, dtype=torch.bool), prior_expert=True)
    assert torch.allclose(q_mu, torch.zeros(4, 3), atol=1e-6) and torch.allclose(q_logvar, torch.zeros(4, 3), atol=1e-6)


def test_mvae_poe_with_prior_adds_unit_precision():
    mu, logvar = torch.randn(1, 4, 3), torch.randn(1, 4, 3)
    _, q_logvar = product_of_experts(mu, logvar, prior_expert=True)
    assert torch.allclose(torch.exp(-q_logvar), 1 + torch.exp(-logvar[0]), rtol=1e-5)


def _two_modality():
    spec = BenchmarkSpec("toy", (Modality("a", "vector", (4,)), Modality("b", "image", (1, 16, 16))), 2)
    torch.manual_seed(0)
    model = MVAE(spec, MVAE.Config(latent_dim=3, hidden=16))
    batch = {"data": {"a": torch.randn(6, 4), "b": torch.rand(6, 1, 16, 16)},
             "mask": torch.ones(6, 2, dtype=torch.bool), "label": torch.zeros(6, dtype=torch.long)}
    return model, batch


def test_subset_elbo_with_one_modality_is_a_plain_vae_elbo():
    model, batch = _two_modality()
    mu, logvar, xs = model.experts(batch)
    single = torch.tensor([[True, False]] * 6)
    torch.manual_seed(1)
    got = model.subset_elbo(mu, logvar, xs, single, beta=1.0)
    # by hand: posterior = prior x expert a, reconstruct a only
    torch.manual_seed(1)
    q_mu, q_logvar = product_of_experts(mu[:1], logvar[:1], prior_expert=True)
    z = q_mu + torch.randn_like(q_mu) * torch.exp(0.5 * q_logvar)
    want = log_likelihood(xs["a"], model.decoders["a"](z), "gaussian") - kl_normal(q_mu, q_logvar)
    assert torch.allclose(got, want, atol=1e-5)


def test_mvae_reads_the_mask_values_of_missing_entries_do_not_matter():
    model, batch = _two_modality()
    batch["mask"][3:, 1] = False
    batch["data"]["b"][3:] = float("nan")
    torch.manual_seed(2)
    out = model.loss(batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    other = {**batch, "data": {**batch["data"], "b": batch["data"]["b"].clone()}}
    other["data"]["b"][3:] = 123.0
    torch.manual_seed(2)
    assert torch.equal(model.loss(other)["loss"], out["loss"].detach())


def test_mvae_embed_generate_sample_on_a_real_benchmark():
    bench = BENCHMARKS.get("digits-mst")(BENCHMARKS.get("digits-mst").Config(variants=1))
    train, _ = bench.build()
    model = MVAE(bench.spec(), MVAE.Config())
    batch = train.batch(torch.arange(5))
    batch["mask"][0, 1] = False
    emb = model.embed(batch)
    assert set(emb) == {"joint", "m1", "m2", "text"} and emb["joint"].shape == (5, 16)
    assert torch.isnan(emb["m2"][0]).all() and torch.isfinite(emb["m2"][1:]).all()
    assert model.generate(batch, "m2").shape == (5, 3, 16, 16)
    assert model.generate(batch, "text").shape == (5, 8)
    assert set(model.sample(2)) == {"m1", "m2", "text"}
    assert {"generate", "sample"} <= set(MVAE.capabilities())


def test_fill_missing_zeroes_unobserved_rows_only():
    x = torch.tensor([[1.0, 2.0], [float("nan"), float("nan")]])
    out = fill_missing(x, torch.tensor([True, False]))
    assert torch.equal(out, torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
