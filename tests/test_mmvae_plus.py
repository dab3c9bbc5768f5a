import math

import pytest
import torch
from torch.distributions import Laplace

from baselines.mmvae_plus import MMVAEPlus
from bench.data import load_splits
from bench.data.contracts import BenchmarkSpec, Modality
from bench.nn.dists import gaussian_log_prob, iwae_bound, log_likelihood
from bench.nn.iwae import ESTIMATORS, dreg_surrogate, importance_weights
from bench.nn.laplace import (
    laplace_log_density,
    laplace_rsample,
    log_mixture_laplace,
    masked_log_mean_exp,
    softmax_scale,
)
from bench.nn.modules import observed_inputs
from bench.registry import BENCHMARKS, METHODS
from conftest import REAL_SHAPES, assert_unobserved_values_change_nothing, partly_observed_batch, random_batch

A = Modality("a", "vector", (4,))
B_IMG = Modality("b", "image", (1, 16, 16))
C_TXT = Modality("c", "text", (5,), vocab_size=7)
MODS = (A, B_IMG, C_TXT)


def _batch(mods=MODS, n=6, seed=0):
    return random_batch(mods, n, seed)


def _model(mods=MODS, **cfg):
    torch.manual_seed(0)
    cfg = {"latent_dim": 3, "private_dim": 2, "hidden": 16, **cfg}
    return MMVAEPlus(BenchmarkSpec("toy", tuple(mods), 2), MMVAEPlus.Config(**cfg))


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# --- Laplace helpers ------------------------------------------------------------------------------------------
def test_softmax_scale_of_zero_logits_is_one_and_scales_sum_to_the_dimension():
    assert torch.allclose(softmax_scale(torch.zeros(2, 5), eta=0.0), torch.ones(2, 5))
    assert torch.allclose(softmax_scale(torch.zeros(5)), torch.full((5,), 1 + 1e-6))
    s = softmax_scale(torch.randn(3, 7), eta=0.0)
    assert (s > 0).all() and torch.allclose(s.sum(-1), torch.full((3,), 7.0))


def test_laplace_draws_and_density_match_torch_distributions():
    loc, scale = torch.tensor([0.5, -2.0]), torch.tensor([0.3, 2.0])
    x = laplace_rsample(loc, scale, (200_000,), generator=torch.Generator().manual_seed(0))
    assert x.shape == (200_000, 2) and torch.isfinite(x).all()
    assert torch.allclose(x.median(0).values, loc, atol=0.02)
    assert torch.allclose((x - loc).abs().mean(0), scale, rtol=0.02)  # E|x - loc| = scale
    pts = torch.randn(4, 2)
    assert torch.allclose(laplace_log_density(pts, loc, scale), Laplace(loc, scale).log_prob(pts).sum(-1))
    # reparameterised: d x / d loc = 1
    loc_p = loc.clone().requires_grad_()
    laplace_rsample(loc_p, scale, (3,)).sum().backward()
    assert torch.equal(loc_p.grad, torch.full((2,), 3.0))


def test_q_mix_of_one_component_is_that_posterior():
    z = torch.randn(2, 5, 4, 3)  # [M, K, B, D]
    loc, scale = torch.randn(1, 4, 3), softmax_scale(torch.randn(1, 4, 3))
    got = log_mixture_laplace(z, loc, scale, torch.ones(4, 1, dtype=torch.bool))
    assert torch.allclose(got, laplace_log_density(z, loc[0], scale[0]), atol=1e-5)


def test_q_mix_is_the_log_mean_over_observed_components_only():
    z = torch.randn(3, 4, 2)  # [K, B, D]
    loc, scale = torch.randn(3, 4, 2), softmax_scale(torch.randn(3, 4, 2))
    mask = torch.tensor([[True, True, True], [True, False, True], [False, True, False], [True, False, False]])
    got = log_mixture_laplace(z, loc, scale, mask)
    for b in range(4):
        comps = [Laplace(loc[c, b], scale[c, b]).log_prob(z[:, b]).sum(-1) for c in range(3) if mask[b, c]]
        want = torch.logsumexp(torch.stack(comps), 0) - math.log(len(comps))
        assert torch.allclose(got[:, b], want, atol=1e-5)
    # a left-out component changes neither value nor gradient
    loc2 = loc.clone()
    loc2[1, 1] = 1e3
    assert torch.equal(log_mixture_laplace(z, loc2, scale, mask), got)


def test_masked_log_mean_exp_gives_zero_gradient_to_left_out_entries():
    v = torch.randn(4, 3, requires_grad=True)
    mask = torch.tensor([True, False, True])
    masked_log_mean_exp(v, mask).sum().backward()
    assert torch.equal(v.grad[:, 1], torch.zeros(4)) and (v.grad[:, [0, 2]] > 0).all()


# --- estimators -----------------------------------------------------------------------------------------------
def test_dreg_surrogate_value_is_the_iwae_value():
    lw = torch.randn(10, 6) * 3
    assert torch.equal(dreg_surrogate(lw, dim=0), iwae_bound(lw, dim=0))
    assert torch.equal(ESTIMATORS["iwae"](lw, dim=0), iwae_bound(lw, dim=0))
    assert torch.allclose(ESTIMATORS["elbo"](lw, dim=0), lw.mean(0))
    one = torch.randn(1, 6)
    assert all(torch.allclose(f(one, dim=0), one[0]) for f in ESTIMATORS.values())


def test_dreg_gradient_is_the_squared_weight_path_derivative():
    # z_k = mu + e_k, lw_k = -z_k^2 / 2 (q already detached): d/dmu = sum_k w_k^2 (-z_k)
    mu = torch.tensor(0.7, requires_grad=True)
    e = torch.randn(8)
    z = mu + e
    lw = -0.5 * z.pow(2)
    dreg_surrogate(lw, [z], dim=0).backward()
    w = importance_weights(lw)
    assert torch.allclose(mu.grad, (w.pow(2) * -z.detach()).sum(), atol=1e-6)


def _toy_encoder_grads(estimator: str, k: int = 10, repeats: int = 4000) -> torch.Tensor:
    """Per-repeat d/d mu of the K-sample objective on the toy Gaussian model p(z) = N(0, 1), p(x | z) = N(z, 1), x = 1,
    q(z) = N(mu, 0.8^2)."""
    torch.manual_seed(0)
    mu = torch.full((repeats,), 0.3, requires_grad=True)
    logvar = torch.full((repeats,), 2 * math.log(0.8), requires_grad=True)
    z = mu + (0.5 * logvar).exp() * torch.randn(k, repeats)
    q_mu, q_logvar = (mu.detach(), logvar.detach()) if estimator == "dreg" else (mu, logvar)
    zero = torch.zeros(())
    log_joint = gaussian_log_prob(torch.tensor(1.0), z, zero) + gaussian_log_prob(z, zero, zero)
    lw = log_joint - gaussian_log_prob(z, q_mu, q_logvar)
    ESTIMATORS[estimator](lw, [z], dim=0).sum().backward()
    return mu.grad


def test_dreg_gradients_have_lower_variance_than_iwae_on_a_toy_gaussian_model():
    iwae, dreg = _toy_encoder_grads("iwae"), _toy_encoder_grads("dreg")
    assert dreg.var() < 0.5 * iwae.var()
    # both estimate the same gradient
    se = (iwae.var() / len(iwae) + dreg.var() / len(dreg)).sqrt()
    assert (iwae.mean() - dreg.mean()).abs() < 4 * se


# --- the model ------------------------------------------------------------------------------------------------
def test_registered_as_a_baseline_with_generation():
    assert METHODS.get("mmvae_plus") is MMVAEPlus and MMVAEPlus.kind == "baseline"
    assert {"generate", "sample"} <= set(MMVAEPlus.capabilities())


@pytest.mark.parametrize("bad", [{"estimator": "vi"}, {"k_samples": 0}, {"image_likelihood": "gauss"},
                                 {"generate_z": "x"}, {"recon_weights": (1.0,)}, {"laplace_scale": 0.0}])
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValueError):
        _model(**bad)


def test_with_dw_0_and_k_1_it_is_mmvae_with_the_stratified_elbo():
    """Computed by hand, one sample and one source at a time, with missing modalities: q_mix mixes the observed
    modalities, the sources are the observed ones (averaged), the targets are the observed ones."""
    model = _model(private_dim=0, beta=0.7)
    batch = _batch(n=5)
    batch["mask"][1, 1] = False
    batch["mask"][2, 1:] = False
    batch["mask"][4, 0] = False
    batch["data"]["b"][~batch["mask"][:, 1]] = float("nan")
    batch["data"]["c"][~batch["mask"][:, 2]] = -1
    torch.manual_seed(5)
    got = model.loss(batch)["loss"]

    xs = observed_inputs(batch, model.modality_names)
    post = model.encode(xs)
    torch.manual_seed(5)
    z = laplace_rsample(post.z_loc.unsqueeze(1), post.z_scale.unsqueeze(1))  # [M, 1, B, Dz], the model's draw
    prior = Laplace(torch.zeros(3), torch.ones(3))
    per_sample = []
    for b in range(5):
        observed = [j for j in range(3) if batch["mask"][b, j]]
        terms = []
        for r in observed:
            zr = z[r, 0, b]
            rec = sum(log_likelihood(xs[m.name][b : b + 1], model.decoders[m.name](zr[None]), m.likelihood)[0]
                      for j, m in enumerate(MODS) if j in observed)
            log_q = torch.stack([Laplace(post.z_loc[m, b], post.z_scale[m, b]).log_prob(zr).sum() for m in observed])
            log_q_mix = torch.logsumexp(log_q, 0) - math.log(len(observed))
            terms.append(rec + 0.7 * (prior.log_prob(zr).sum() - log_q_mix))
        per_sample.append(torch.stack(terms).mean())
    assert torch.allclose(got, -torch.stack(per_sample).mean(), rtol=1e-5, atol=1e-4)


def test_with_one_modality_q_mix_is_its_own_posterior():
    model = _model(mods=(A,))
    batch = _batch(mods=(A,))
    post = model.encode(observed_inputs(batch, model.modality_names))
    z, w = model.draw(post, 4)
    reg = model.regulariser(post, batch["mask"], z, w)
    want = (Laplace(0.0, 1.0).log_prob(z).sum(-1) + Laplace(0.0, 1.0).log_prob(w).sum(-1)
            - laplace_log_density(z, post.z_loc.unsqueeze(1), post.z_scale.unsqueeze(1))
            - laplace_log_density(w, post.w_loc.unsqueeze(1), post.w_scale.unsqueeze(1)))
    assert torch.allclose(reg, want, atol=1e-5)


def test_cross_reconstructions_use_the_auxiliary_prior_and_train_it():
    model = _model()
    assert model.aux_logits.shape == (3, 2)
    assert torch.allclose(model.aux_scale(0), torch.ones(2))  # initialised at the prior's scale
    model.loss(_batch())["loss"].backward()
    assert model.aux_logits.grad is not None and model.aux_logits.grad.abs().sum() > 0


def test_dreg_has_the_iwae_value_and_decoder_gradients_but_other_encoder_gradients():
    batch = _batch(n=8)
    batch["mask"][2:5, 1] = False
    runs = {}
    for est in ("iwae", "dreg"):
        model = _model(estimator=est, k_samples=4)
        torch.manual_seed(7)
        loss = model.loss(batch)["loss"]
        loss.backward()
        runs[est] = (loss.detach(), _grads(model))
    (l_iwae, g_iwae), (l_dreg, g_dreg) = runs["iwae"], runs["dreg"]
    assert torch.allclose(l_iwae, l_dreg)
    dec = [n for n in g_iwae if n.startswith("decoders.") or n == "aux_logits"]
    enc = [n for n in g_iwae if n.startswith(("z_encoders.", "z_heads.", "w_encoders.", "w_heads."))]
    assert dec and enc and set(g_iwae) == set(g_dreg)
    assert all(torch.allclose(g_iwae[n], g_dreg[n], rtol=1e-4, atol=1e-5) for n in dec)
    assert not all(torch.allclose(g_iwae[n], g_dreg[n], rtol=1e-4, atol=1e-5) for n in enc)


def test_k_1_estimators_agree_in_value():
    batch = _batch()
    values = []
    for est in ESTIMATORS:
        model = _model(estimator=est)
        torch.manual_seed(1)
        values.append(model.loss(batch)["loss"].detach())
    assert all(torch.allclose(v, values[0]) for v in values)


@pytest.mark.parametrize("estimator,k", [("elbo", 1), ("dreg", 3)])
def test_unobserved_values_change_neither_loss_nor_gradients(estimator, k):
    batch = _batch(n=8)
    batch["mask"][3:, 1] = False
    batch["mask"][5:, 2] = False
    batch["mask"][0, 0] = False
    batch["data"]["b"][3:] = float("nan")
    batch["data"]["c"][5:] = -1
    batch["data"]["a"][0] = float("nan")

    def scramble(data):
        data["b"][3:] = 123.0
        data["c"][5:] = 3
        data["a"][0] = -9.0

    assert_unobserved_values_change_nothing(_model(estimator=estimator, k_samples=k), batch, scramble)


def test_paper_laplace_likelihood_for_images():
    model = _model(image_likelihood="laplace")
    assert model.likelihoods == ("gaussian", "laplace", "categorical")
    x, loc = torch.rand(3, 1, 16, 16), torch.randn(3, 1, 16, 16)
    want = Laplace(loc, torch.tensor(0.75)).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(model.modality_log_likelihood(1, x, loc), want, atol=1e-4)


def test_generation_from_one_source_and_from_none():
    model = _model()
    batch = _batch(n=4)
    batch["mask"][:, 0] = torch.tensor([True, True, False, False])
    batch["mask"][:, 1] = False
    batch["data"]["a"][2:] = float("nan")
    post = model.encode(observed_inputs(batch, model.modality_names))
    cond = batch["mask"].clone()
    cond[:, 2] = False  # target c: rows 0, 1 have source a only; rows 2, 3 have none
    for rule in ("component", "mean"):
        model = _model(generate_z=rule)
        z = model.conditional_z(post, cond)
        assert torch.allclose(z[:2], post.z_loc[0, :2]) and torch.equal(z[2:], torch.zeros(2, 3))
    out = model.generate(batch, "c")
    assert out.shape == (4, 5) and out.dtype == torch.long


@pytest.mark.parametrize("name,dims", REAL_SHAPES)
def test_embed_generate_sample_shapes_on_a_real_benchmark(name, dims):
    spec, batch = partly_observed_batch(name)
    model = MMVAEPlus(spec, MMVAEPlus.Config())
    names = list(dims)
    emb = model.embed(batch)
    assert set(emb) == {"joint", *names, *(f"{m}_w" for m in names)}
    assert all(v.shape == (5, 16) for v in emb.values()) and torch.isfinite(emb["joint"]).all()
    for key in (names[1], f"{names[1]}_w"):
        assert torch.isnan(emb[key][:2]).all() and torch.isfinite(emb[key][2:]).all()
    # the joint representation is the mean of the observed modalities' z locations
    assert torch.allclose(emb["joint"][1], emb[names[0]][1])
    assert torch.allclose(emb["joint"][2], torch.stack([emb[m][2] for m in names]).mean(0), atol=1e-6)
    for target, shape in dims.items():
        assert model.generate(batch, target).shape == (5, *shape)
    assert {k: tuple(v.shape[1:]) for k, v in model.sample(3).items()} == dims


@pytest.mark.parametrize("name,rho", [("digits-poly5", 1.0), ("digits-poly5", 0.5), ("digits-mst", 0.5)])
def test_two_optimizer_steps(name, rho):
    cls = BENCHMARKS.get(name)
    train, _, _ = load_splits(cls(cls.Config(variants=1)), rho, seed=0)
    torch.manual_seed(0)
    model = MMVAEPlus(cls(cls.Config(variants=1)).spec(), MMVAEPlus.Config(estimator="dreg", k_samples=2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    for batch in list(train.batches(64, shuffle=True, generator=torch.Generator().manual_seed(0)))[:2]:
        assert bool(batch["mask"].all()) == (rho == 1.0)
        opt.zero_grad()
        loss = model.loss(batch)["loss"]
        assert torch.isfinite(loss)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()


@pytest.mark.parametrize("estimator,k", [("elbo", 1), ("dreg", 2)])
def test_a_sample_with_nothing_observed_contributes_nothing_and_poisons_nothing(estimator, k):
    model = _model(estimator=estimator, k_samples=k)
    batch = _batch(n=4)
    batch["mask"][1] = False
    out = model.objective(batch)
    assert out["objective"][1] == 0 and torch.isfinite(out["objective"]).all()
    (-out["objective"].mean()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
