"""DCMEM (docs/methods.md §2): the §2.8 expectations (MEME as the special case, the one-component anchor, the MI estimator,
no unpaired rows at rho = 1, cross-generation from the private prior), the shared estimators of bench.nn.mi, the
objective against a per-sample reference written from the §2.3 formulas and against the per-pair loop of version 1 (the
vectorised objective must give the same loss and gradients), masks and the method's outputs."""

import itertools
import math

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Normal, kl_divergence

from bench.data import load_splits
from bench.data.contracts import BenchmarkSpec, Modality
from bench.nn.dists import gaussian_log_prob, kl_normal
from bench.nn.mi import info_nce, log_aggregate_density, mws_mutual_information, pairwise_log_density
from bench.nn.modules import observed_inputs
from bench.registry import BENCHMARKS, METHODS
from conftest import REAL_SHAPES, assert_unobserved_values_change_nothing, partly_observed_batch, random_batch
from methods.dcmem import DCMEM, direction_objective, importance_ratio, split_rows

A = Modality("a", "vector", (4,))
B_IMG = Modality("b", "image", (1, 16, 16))
C_TXT = Modality("c", "text", (5,), vocab_size=7)
A2 = Modality("a2", "vector", (3,))
MODS = (A, B_IMG, C_TXT)


def _model(mods=MODS, **cfg):
    torch.manual_seed(0)
    cfg = {"latent_dim": 3, "private_dim": 2, "hidden": 16, "k_samples": 3, "n_pseudo": 4, **cfg}
    return DCMEM(BenchmarkSpec("toy", tuple(mods), 2), DCMEM.Config(**cfg))


def _hide(batch, rows, j, mods=MODS):
    """Unobserve modality j in ``rows``, with the harness's placeholders (NaN / -1) in its entries."""
    batch["mask"][rows, j] = False
    x = batch["data"][mods[j].name]
    x[rows] = -1 if mods[j].is_integer else float("nan")


# --- an independent reference of the objective, per sample, from the formulas of docs/methods.md §2.1/§2.3 -------------
def _normal(head, h):
    mu, logvar = head(h)
    return mu[0], (0.5 * logvar[0]).exp().clamp(min=1e-3)  # posterior std floored at 1e-3, as MEME


def _log_lik(mod, x, params):
    """log p(x | params) of one sample with torch.distributions (x [1, ...], params [1, ...])."""
    if mod.likelihood == "gaussian":
        return Normal(params[0], 1.0).log_prob(x[0]).sum()
    if mod.likelihood == "bernoulli":
        return Bernoulli(logits=params[0], validate_args=False).log_prob(x[0]).sum()
    return Categorical(logits=params[0].transpose(0, 1)).log_prob(x[0]).sum()  # [V, L] -> [L, V]


def meme_reference(model, batch, eps, alpha):
    """Plain MEME on two fully paired modalities (no private latent): -(1/B) sum_i [L_{s|t} + L_{t|s}] with
    L_{s|t} = r (log p(s | z) - log q(t | z) - KL(q(z|s) || q(z|t))) + alpha log q^(t|s), z = z^(0) of the K+1
    draws z^(k) = mu_s + sd_s eps[s, k], q(t | z) = t's decoder, r = q(t | z^(0)) / q^(t|s)."""
    names, mods = model.modality_names, model.spec.modalities
    n, total = batch["mask"].shape[0], 0.0
    for i, (s, t) in itertools.product(range(n), [(0, 1), (1, 0)]):
        xs, xt = batch["data"][names[s]][i : i + 1], batch["data"][names[t]][i : i + 1]
        mu_s, sd_s = _normal(model.z_heads[names[s]], model.z_encoders[names[s]](xs))
        mu_t, sd_t = _normal(model.z_heads[names[t]], model.z_encoders[names[t]](xt))
        z = mu_s + sd_s * eps[s, :, i]
        log_q = torch.stack([_log_lik(mods[t], xt, model.decoders[names[t]](zk[None])) for zk in z])
        log_q_hat = torch.logsumexp(log_q, 0) - math.log(len(z))
        r = (log_q[0] - log_q_hat).exp()
        rec = _log_lik(mods[s], xs, model.decoders[names[s]](z[:1]))
        kl = kl_divergence(Normal(mu_s, sd_s), Normal(mu_t, sd_t)).sum()
        total = total + r * (rec - log_q[0] - kl) + alpha * log_q_hat
    return -total / n


def _pseudo_components(model, m):
    u = model.pseudo[m]
    h = u if model.spec.modality(m).is_integer else model.z_encoders[m](u)
    mu, logvar = model.z_heads[m](h)
    return mu, (0.5 * logvar).exp().clamp(min=1e-3)


def dcmem_reference(model, batch, seed):
    """-(1/B) sum_i objective_i of docs/methods.md §2.3 with private latents (cls_private = prior), one sample at a time:
    a row with n >= 2 observed modalities averages, per source s, L_{s|t} over its n - 1 observed targets t; a row
    observing s alone gets L_s(s) with the anchor over the other modalities' pseudo-inputs. Also returns the draws
    (z^(0), w, posterior parameters) for the penalty terms. The noise is replayed in the order documented in
    DCMEM.draw."""
    cfg, names, mods = model.cfg, model.modality_names, model.spec.modalities
    n_mod, n = batch["mask"].shape[1], batch["mask"].shape[0]
    k1, dz, dw = cfg.k_samples + 1, cfg.latent_dim, cfg.private_dim
    torch.manual_seed(seed)
    eps_z = torch.randn(n_mod, k1, n, dz)
    eps_w = torch.randn(n_mod, n, dw)
    w_cls = torch.randn(n_mod, k1, n, dw)
    draws = {}
    total = 0.0
    for i in range(n):
        obs = [j for j in range(n_mod) if batch["mask"][i, j]]
        x = {j: batch["data"][names[j]][i : i + 1] for j in obs}
        qz = {j: _normal(model.z_heads[names[j]], model.z_encoders[names[j]](x[j])) for j in obs}
        qw = {j: _normal(model.w_heads[names[j]], model.w_encoders[names[j]](x[j])) for j in obs}
        z0 = {j: qz[j][0] + qz[j][1] * eps_z[j, 0, i] for j in obs}
        w = {j: qw[j][0] + qw[j][1] * eps_w[j, i] for j in obs}
        rec = {j: _log_lik(mods[j], x[j], model.decoders[names[j]](torch.cat([z0[j], w[j]])[None])) for j in obs}
        kl_w = {j: kl_divergence(Normal(*qw[j]), Normal(0.0, 1.0)).sum() for j in obs}
        draws[i] = (qz, qw, z0, w)
        if len(obs) >= 2:
            for s, t in itertools.permutations(obs, 2):
                z = qz[s][0] + qz[s][1] * eps_z[s, :, i]
                dec = model.decoders[names[t]]
                log_q = torch.stack([_log_lik(mods[t], x[t], dec(torch.cat([z[k], w_cls[t, k, i]])[None]))
                                     for k in range(k1)])
                log_q_hat = torch.logsumexp(log_q, 0) - math.log(k1)
                r = (log_q[0] - log_q_hat).exp()
                kl_z = kl_divergence(Normal(*qz[s]), Normal(*qz[t])).sum()
                term = r * (rec[s] - log_q[0] - kl_z) - kl_w[s] + cfg.alpha * log_q_hat
                total = total + term / (len(obs) - 1)
        elif obs:
            (s,) = obs
            comps = [_pseudo_components(model, names[t]) for t in range(n_mod) if t != s]
            mu_c, sd_c = torch.cat([c[0] for c in comps]), torch.cat([c[1] for c in comps])
            log_anchor = torch.logsumexp(Normal(mu_c, sd_c).log_prob(z0[s]).sum(-1), 0) - math.log(len(mu_c))
            log_q_z = Normal(*qz[s]).log_prob(z0[s]).sum()
            total = total + rec[s] - (log_q_z - log_anchor) - kl_w[s]
    return -total / n, draws


def penalty_reference(model, batch, draws):
    """beta_IB's and gamma's terms of §2.3 from the reference draws: sum_m (|R_m|/B) I^(z_m; w_m) over the rows R_m
    observing m, and the mean over ordered pairs of (|R_st|/B) InfoNCE(mu_s -> mu_t) over the rows observing both."""
    mask = batch["mask"]
    n, n_mod = mask.shape
    mi = 0.0
    for j in range(n_mod):
        rows = [i for i in range(n) if mask[i, j]]
        qz, qw = [draws[i][0][j] for i in rows], [draws[i][1][j] for i in rows]
        mi = mi + len(rows) / n * mws_mutual_information(
            torch.stack([draws[i][2][j] for i in rows]), torch.stack([q[0] for q in qz]),
            torch.stack([2 * q[1].log() for q in qz]), torch.stack([draws[i][3][j] for i in rows]),
            torch.stack([q[0] for q in qw]), torch.stack([2 * q[1].log() for q in qw]))
    nce = 0.0
    for s, t in itertools.permutations(range(n_mod), 2):
        rows = [i for i in range(n) if mask[i, s] and mask[i, t]]
        if rows:
            a = torch.stack([draws[i][0][s][0] for i in rows])
            b = torch.stack([draws[i][0][t][0] for i in rows])
            nce = nce + len(rows) / n * info_nce(a, b, model.cfg.tau_a, symmetric=False)
    return mi, nce / (n_mod * (n_mod - 1))


# --- bench.nn.mi ----------------------------------------------------------------------------------------------
def _gaussians(n, d, seed, spread=1.0, var=0.5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * spread, torch.full((n, d), math.log(var))


def _draw(mu, logvar, seed):
    return mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dataset_size", [None, 10_000])
def test_mi_is_exactly_zero_when_w_does_not_depend_on_x(dataset_size):
    z_mu, z_lv = _gaussians(64, 3, 0)
    w_mu, w_lv = torch.full((64, 2), 0.3), torch.full((64, 2), -0.5)
    z, w = _draw(z_mu, z_lv, 1), _draw(w_mu, w_lv, 2)
    assert mws_mutual_information(z, z_mu, z_lv, w, w_mu, w_lv, dataset_size).abs() < 1e-5


def test_mi_is_about_zero_for_independent_gaussians_and_matches_the_closed_form_for_correlated_ones():
    n, var, rho = 2000, 0.5, 0.8
    z_mu, lv = _gaussians(n, 2, 3)
    w_mu = _gaussians(n, 2, 4)[0]
    z, w = _draw(z_mu, lv, 5), _draw(w_mu, lv, 6)
    assert mws_mutual_information(z, z_mu, lv, w, w_mu, lv).abs() < 0.03
    # aggregate (z, w) is jointly Gaussian per dim with correlation rho / (1 + var): I = -D/2 log(1 - corr^2)
    w_mu = rho * z_mu + math.sqrt(1 - rho**2) * w_mu
    w = _draw(w_mu, lv, 6)
    want = -2 * 0.5 * math.log(1 - (rho / (1 + var)) ** 2)
    assert mws_mutual_information(z, z_mu, lv, w, w_mu, lv).item() == pytest.approx(want, abs=0.05)


def test_mi_is_large_when_z_equals_w_and_zero_for_an_empty_w():
    n = 256
    mu, lv = _gaussians(n, 3, 7, spread=1.0, var=1e-4)
    z = _draw(mu, lv, 8)
    mi = mws_mutual_information(z, mu, lv, z, mu, lv)
    assert mi > 0.95 * math.log(n) and mi <= math.log(n) + 1e-4  # the minibatch estimate is capped at log B
    empty = torch.zeros(n, 0)
    assert mws_mutual_information(z, mu, lv, empty, empty, empty) == 0


def test_aggregate_density_weights():
    z_mu, z_lv = _gaussians(5, 2, 9)
    z = _draw(z_mu, z_lv, 10)
    log_q = pairwise_log_density(z, z_mu, z_lv)
    assert torch.allclose(log_q[1, 3], Normal(z_mu[3], (0.5 * z_lv[3]).exp()).log_prob(z[1]).sum())
    assert torch.allclose(log_aggregate_density(log_q), torch.logsumexp(log_q, 1) - math.log(5))
    big = log_aggregate_density(log_q, 1000)
    want = torch.log(log_q.diagonal().exp() / 1000 + (log_q.exp().sum(1) - log_q.diagonal().exp()) * 999 / 1000 / 4)
    assert torch.allclose(big, want, atol=1e-5)
    assert torch.allclose(log_aggregate_density(log_q[:1, :1], 50), log_q[0, :1])
    with pytest.raises(ValueError):
        log_aggregate_density(log_q, 3)


def test_info_nce_values():
    q = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(0)))[0]
    assert info_nce(q, 3 * q, tau=0.01) < 1e-6  # cosine: the scale is irrelevant
    same = torch.ones(5, 4)
    assert info_nce(same, same).item() == pytest.approx(math.log(5), abs=1e-5)
    a, b = torch.randn(7, 3), torch.randn(7, 3)
    an, bn = torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(b, dim=-1)
    one_way = -(torch.log_softmax(an @ bn.T / 0.2, 1).diagonal()).mean()
    assert torch.allclose(info_nce(a, b, 0.2, symmetric=False), one_way)
    assert torch.allclose(info_nce(a, b, 0.2), 0.5 * (one_way + info_nce(b, a, 0.2, symmetric=False)))
    assert info_nce(q, q[[1, 2, 3, 4, 5, 0]], tau=0.05) > 10  # mismatched pairs


def test_masked_estimators_equal_the_estimates_on_the_selected_rows():
    g = torch.Generator().manual_seed(1)
    z_mu, z_lv, w_mu, w_lv = (torch.randn(3, 9, d, generator=g) for d in (3, 3, 2, 2))
    z, w = _draw(z_mu, z_lv, 2), _draw(w_mu, w_lv, 3)
    mask = torch.rand(3, 9, generator=g) < 0.6
    mask[1] = False  # an empty row set: 0, and finite gradients
    mask[2] = True
    z_mu.requires_grad_(True)
    mi = mws_mutual_information(z, z_mu, z_lv, w, w_mu, w_lv, mask=mask)
    nce = info_nce(z_mu, w_mu[..., :1].expand(-1, -1, 3) + z_mu, 0.3, mask=mask)
    for j in (0, 2):
        r = mask[j]
        want = mws_mutual_information(z[j][r], z_mu[j][r], z_lv[j][r], w[j][r], w_mu[j][r], w_lv[j][r])
        assert torch.allclose(mi[j], want, atol=1e-5)
        assert torch.allclose(nce[j], info_nce(z_mu[j][r], w_mu[j][r, :1] + z_mu[j][r], 0.3), atol=1e-5)
    assert mi[1] == 0 and nce[1] == 0
    (mi.sum() + nce.sum()).backward()
    assert torch.isfinite(z_mu.grad).all() and (z_mu.grad[1] == 0).all()
    with pytest.raises(ValueError, match="dataset_size"):
        mws_mutual_information(z, z_mu, z_lv, w, w_mu, w_lv, dataset_size=100, mask=mask)


# --- pure pieces of the objective -----------------------------------------------------------------------------
def test_importance_ratio_averages_to_one_and_is_one_when_q_is_constant():
    log_q = torch.randn(11, 6, generator=torch.Generator().manual_seed(0)) * 20
    r, log_q_hat = importance_ratio(log_q)
    assert torch.allclose(log_q_hat, torch.logsumexp(log_q, 0) - math.log(11))
    assert not r.requires_grad and (r <= 11 + 1e-4).all()
    ratios = torch.stack([importance_ratio(log_q.roll(k, 0))[0] for k in range(11)])  # each draw in position 0
    assert torch.allclose(ratios.mean(0), torch.ones(6), atol=1e-5)
    r, _ = importance_ratio(torch.full((11, 6), -3.0))
    assert torch.allclose(r, torch.ones(6))
    # with r = 1 and K = 0 the direction is a plain conditional-prior ELBO plus alpha times the cross term
    rec, lq, klz, klw = torch.randn(4), torch.randn(1, 4), torch.rand(4), torch.rand(4)
    assert torch.allclose(direction_objective(rec, lq, klz, klw, 2.0), rec - lq[0] - klz - klw + 2 * lq[0])


def test_split_rows_and_rho_1_yields_no_unpaired_rows():
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 1, 1], [0, 0, 1], [0, 0, 0]], dtype=torch.bool)
    paired, unpaired = split_rows(mask)
    assert paired.tolist() == [True, False, True, False, False]
    assert unpaired.tolist() == [[False] * 3, [True, False, False], [False] * 3, [False, False, True], [False] * 3]
    cls = BENCHMARKS.get("digits-ms")
    for rho in (1.0, 0.5):
        train = load_splits(cls(cls.Config(variants=1)), rho, seed=0)[0]
        n_unpaired = sum(int(split_rows(b["mask"])[1].sum()) for b in train.batches(64))
        assert (n_unpaired == 0) == (rho == 1.0)


def test_the_anchor_is_used_only_for_rows_observing_one_modality():
    model = _model()
    batch = random_batch(MODS, 6)
    model.loss(batch)["loss"].backward()
    assert all(p.grad is None for p in model.pseudo.values())  # rho = 1: no unpaired row, no anchor
    model.zero_grad()
    _hide(batch, [1], 1)
    _hide(batch, [1], 2)  # row 1 observes a alone: its anchor mixes b's and c's pseudo-inputs
    model.loss(batch)["loss"].backward()
    assert model.pseudo["a"].grad is None
    assert all(model.pseudo[m].grad.abs().sum() > 0 for m in ("b", "c"))


# --- the objective --------------------------------------------------------------------------------------------
def test_with_no_private_latent_and_no_penalties_it_is_meme():
    model = _model(mods=(A, B_IMG), private_dim=0, beta_ib=0.0, gamma=0.0, alpha=3.0)
    batch = random_batch((A, B_IMG), 5, seed=1)
    torch.manual_seed(5)
    got = model.loss(batch)["loss"]
    torch.manual_seed(5)
    eps = torch.randn(2, 4, 5, 3)  # the model's only draw: z [M, K+1, B, Dz]
    want = meme_reference(model, batch, eps, alpha=3.0)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-3)
    # the alignment term is added on top, with its weight
    aligned = _model(mods=(A, B_IMG), private_dim=0, beta_ib=0.0, gamma=2.0, alpha=3.0)
    torch.manual_seed(5)
    with_nce = aligned.loss(batch)
    assert with_nce["nce"] > 0 and torch.allclose(with_nce["loss"] - got, 2 * with_nce["nce"], atol=1e-3)


def test_objective_with_private_latents_three_modalities_and_missing_ones_matches_the_reference():
    model = _model(beta_ib=0.0, gamma=0.0, alpha=2.0)
    batch = random_batch(MODS, 6, seed=2)
    _hide(batch, [0], 1)           # row 0: a, c (one pair)
    _hide(batch, [1, 4], 1)
    _hide(batch, [1, 4], 2)        # rows 1, 4: a alone
    _hide(batch, [2], 0)
    _hide(batch, [2], 2)           # row 2: b alone (anchor: a's data-space and c's feature-space pseudo-inputs)
    _hide(batch, [3], 0)
    _hide(batch, [3], 1)           # row 3: c alone (anchor: a's and b's data-space pseudo-inputs)
    torch.manual_seed(11)
    out = model.loss(batch)
    want, draws = dcmem_reference(model, batch, 11)
    assert torch.allclose(out["loss"], want, rtol=1e-5, atol=1e-3)
    # the penalties: beta_IB sum_m (|R_m|/B) I^(z_m; w_m) + gamma mean_(s,t) (|R_st|/B) InfoNCE
    mi, nce = penalty_reference(model, batch, draws)
    weighted = _model(beta_ib=0.7, gamma=0.3, alpha=2.0)
    torch.manual_seed(11)
    got = weighted.loss(batch)
    assert torch.allclose(got["mi"], mi, atol=1e-4) and torch.allclose(got["nce"], nce, atol=1e-5)
    assert torch.allclose(got["loss"], want + 0.7 * mi + 0.3 * nce, rtol=1e-5, atol=1e-3)


def loop_reference(model, batch):
    """The loss and logged parts as DCMEM version 1 computed them: one ordered pair, one modality at a time, each
    on the whole batch with boolean indexing for the penalties. The vectorised objective must reproduce it."""
    cfg, names = model.cfg, model.modality_names
    mask = batch["mask"]
    xs = observed_inputs(batch, names)
    post = model.encode(xs)
    z, w, w_cls = model.draw(post)
    b, n_mod = mask.shape
    paired, unpaired = split_rows(mask)
    zero = torch.zeros(b)
    rec = [model.log_lik(j, z[j, 0], w[j], xs[m]) for j, m in enumerate(names)]
    kl_w = kl_normal(post.w_mu, post.w_logvar)
    share = 1.0 / (mask.sum(1) - 1).clamp(min=1)
    paired_obj, unpaired_obj, log_q_cross, mi, nce = zero, zero, [], 0.0, 0.0
    for s, t in itertools.permutations(range(n_mod), 2):
        rows = mask[:, s] & mask[:, t]
        if rows.any():
            log_q = model.log_lik(t, z[s], w_cls[t], xs[names[t]])
            kl_z = kl_normal(post.z_mu[s], post.z_logvar[s], post.z_mu[t], post.z_logvar[t])
            r, log_q_hat = importance_ratio(log_q)
            term = r * (rec[s] - log_q[0] - kl_z) - kl_w[s] + cfg.alpha * log_q_hat
            paired_obj = paired_obj + torch.where(rows, term * share, zero)
            log_q_cross.append(log_q_hat[rows])
            nce = nce + rows.sum() / b * info_nce(post.z_mu[s][rows], post.z_mu[t][rows], cfg.tau_a, symmetric=False)
    for j in range(n_mod):
        z0, rows = z[j, 0], unpaired[:, j]
        if rows.any():
            log_q_z = gaussian_log_prob(z0, post.z_mu[j], post.z_logvar[j]).sum(-1)
            term = rec[j] - (log_q_z - model.anchor_log_density(j, z0)) - kl_w[j]
            unpaired_obj = unpaired_obj + torch.where(rows, term, zero)
        rows = mask[:, j]
        if rows.any() and cfg.private_dim > 0:
            mi = mi + rows.sum() / b * mws_mutual_information(z0[rows], post.z_mu[j][rows], post.z_logvar[j][rows],
                                                              w[j][rows], post.w_mu[j][rows], post.w_logvar[j][rows])
    nce = nce / (n_mod * (n_mod - 1))
    loss = -(paired_obj + unpaired_obj).mean() + cfg.beta_ib * mi + cfg.gamma * nce
    return {"loss": loss, "paired": paired_obj.sum() / paired.sum().clamp(min=1),
            "unpaired": unpaired_obj.sum() / unpaired.any(1).sum().clamp(min=1),
            "log_q_cross": torch.cat(log_q_cross).mean() if log_q_cross else zero.sum(), "mi": mi, "nce": nce}


def _real_batch(name, n, observed):
    """The first n training samples of a real benchmark (its default build) with the mask ``observed`` (None: complete)."""
    cls = BENCHMARKS.get(name)
    bench = cls(cls.Config())
    batch = bench.build()[0].batch(torch.arange(n))
    if observed is not None:
        batch["mask"] = torch.tensor(observed, dtype=torch.bool)
    return bench.spec(), batch


# rows: complete, pairs and triples, rows observing one modality (the anchor path), a row observing nothing
POLY5_MASK = [[1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 0, 1], [1, 0, 1, 0, 1], [0, 1, 0, 0, 0],
              [1, 1, 1, 1, 0], [0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [1, 1, 1, 1, 1]]
MST_MASK = [[1, 1, 1], [1, 0, 0], [0, 1, 1], [0, 0, 1], [1, 1, 0], [0, 1, 0], [1, 0, 1], [1, 1, 1]]


@pytest.mark.parametrize("name,observed,cfg", [
    ("digits-poly5", POLY5_MASK, {}),
    ("digits-poly5", None, {"cls_private": "posterior"}),  # complete batch: no row gathers at all
    ("digits-mst", MST_MASK, {"cls_private": "posterior", "shared_trunk": True}),  # text: feature-space anchor
    ("digits-mst", MST_MASK, {"private_dim": 0, "image_likelihood": "laplace"}),
])
def test_the_vectorised_objective_equals_the_per_pair_loop_of_version_1(name, observed, cfg):
    spec, batch = _real_batch(name, len(observed) if observed else 6, observed)
    torch.manual_seed(0)
    model = DCMEM(spec, DCMEM.Config(k_samples=2, n_pseudo=8, **cfg))

    def run(loss_fn):
        model.zero_grad()
        torch.manual_seed(3)
        out = loss_fn(batch)
        out["loss"].backward()
        return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    got, got_grads = run(model.loss)
    want, want_grads = run(lambda b: loop_reference(model, b))
    for key in ("loss", "paired", "unpaired", "log_q_cross", "mi", "nce"):
        assert torch.allclose(got[key], torch.as_tensor(want[key], dtype=torch.float32), rtol=1e-5, atol=1e-4), key
    assert got_grads.keys() == want_grads.keys()
    for n, g in want_grads.items():
        assert torch.allclose(got_grads[n], g, rtol=1e-4, atol=1e-5 * max(1.0, g.abs().max().item())), n
    if observed is not None:  # the anchor path ran: pseudo-inputs of the other modalities got gradients
        assert any(n.startswith("pseudo.") for n in want_grads)


def test_anchor_with_one_pseudo_input_is_the_single_gaussian_log_density():
    model = _model(mods=(A, B_IMG), n_pseudo=1)
    z = torch.randn(7, 3)
    mu, sd = _pseudo_components(model, "b")  # the anchor of a's z: b's encoder at b's pseudo-input
    want = Normal(mu[0], sd[0]).log_prob(z).sum(-1)
    assert torch.allclose(model.anchor_log_density(0, z), want, atol=1e-5)
    # several pseudo-inputs and modalities: the equal-weight mixture over every other modality's components
    model = _model(n_pseudo=3)
    comps = [_pseudo_components(model, m) for m in ("a", "c")]
    per = torch.cat([Normal(mu.unsqueeze(1), sd.unsqueeze(1)).log_prob(z).sum(-1) for mu, sd in comps])  # [6, 7]
    assert torch.allclose(model.anchor_log_density(1, z), torch.logsumexp(per, 0) - math.log(6), atol=1e-5)


def test_feature_space_pseudo_inputs():
    model = _model(anchor_space="feature")
    assert model.pseudo["a"].shape == (4, model.z_encoders["a"].out_dim)
    assert model.pseudo["c"].shape == (4, model.z_encoders["c"].out_dim)
    assert _model().pseudo["b"].shape == (4, 1, 16, 16)  # data space by default, except for integer modalities
    batch = random_batch(MODS, 4)
    _hide(batch, [0], 1)
    _hide(batch, [0], 2)
    model.loss(batch)["loss"].backward()
    assert model.pseudo["b"].grad.abs().sum() > 0


# --- masks, gradients, dtype ----------------------------------------------------------------------------------
def _partial_batch():
    batch = random_batch(MODS, 8, seed=3)
    _hide(batch, [3, 4, 5, 6, 7], 1)
    _hide(batch, [5, 6, 7], 2)
    _hide(batch, [0], 0)
    return batch


def _scramble_hidden(data):
    data["b"][3:] = 123.0
    data["c"][5:] = 3
    data["a"][0] = -9.0


@pytest.mark.parametrize("cfg", [{}, {"cls_private": "posterior", "shared_trunk": True}, {"private_dim": 0}])
def test_unobserved_values_change_neither_loss_nor_gradients_nor_embeddings(cfg):
    assert_unobserved_values_change_nothing(_model(**cfg), _partial_batch(), _scramble_hidden)


def test_a_row_with_nothing_observed_contributes_nothing_and_poisons_nothing():
    model = _model()
    batch = _partial_batch()
    _hide(batch, [2], 0)
    _hide(batch, [2], 2)
    batch["mask"][2] = False
    out = model.objective(batch)
    assert out["objective"][2] == 0 and torch.isfinite(out["objective"]).all()
    model.loss(batch)["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_bf16_parameters_give_a_float32_finite_loss_and_finite_gradients():
    mods = (A, A2)
    model = _model(mods=mods).to(torch.bfloat16)
    batch = random_batch(mods, 6)
    batch["data"] = {k: v.to(torch.bfloat16) for k, v in batch["data"].items()}
    _hide(batch, [0, 1], 1, mods)
    out = model.loss(batch)
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# --- representation and generation ----------------------------------------------------------------------------
def test_registered_as_a_method_with_generation():
    assert METHODS.get("dcmem") is DCMEM and DCMEM.kind == "method"
    assert {"generate", "sample"} <= set(DCMEM.capabilities())


@pytest.mark.parametrize("bad", [{"k_samples": -1}, {"alpha": -1.0}, {"beta_ib": -0.1}, {"gamma": -1.0},
                                 {"tau_a": 0.0}, {"n_pseudo": 0}, {"cls_private": "mean"}, {"anchor_space": "latent"},
                                 {"image_likelihood": "gauss"}, {"generate_z": "mode"}, {"private_dim": -1},
                                 {"latent_dim": 0}])
def test_bad_configs_are_refused(bad):
    with pytest.raises(ValueError):
        _model(**bad)


def test_one_modality_is_refused():
    with pytest.raises(ValueError, match="two modalities"):
        _model(mods=(A,))


def test_cross_generation_draws_the_target_private_latent_from_its_prior():
    mods = (A, A2)
    model = _model(mods=mods, private_dim=3)
    n = 4000
    batch = random_batch(mods, n, seed=4)
    post = model.encode(batch["data"])
    cond = batch["mask"].clone()
    cond[:, 1] = False
    torch.manual_seed(0)
    z, w = model.cross_latents(post, cond)
    # w ~ N(0, I), independent of the target's (observed) input and posterior
    assert w.shape == (n, 3) and w.mean(0).abs().max() < 0.1 and (w.std(0) - 1).abs().max() < 0.05
    corr = torch.corrcoef(torch.cat([w, post.w_mu[1]], 1).T)[:3, 3:]
    assert corr.abs().max() < 0.1
    # z ~ q(z_a | a): standardised draws are N(0, 1)
    e = (z - post.z_mu[0]) / (0.5 * post.z_logvar[0]).exp()
    assert e.mean().abs() < 0.05 and (e.std() - 1).abs() < 0.05
    # generate: the target's own values change nothing, the source's do
    small = random_batch(mods, 6, seed=5)
    torch.manual_seed(1)
    out = model.generate(small, "a2")
    other = {**small, "data": {"a": small["data"]["a"], "a2": small["data"]["a2"] + 5.0}}
    torch.manual_seed(1)
    assert torch.equal(model.generate(other, "a2"), out)
    moved = {**small, "data": {"a": small["data"]["a"] + 1.0, "a2": small["data"]["a2"]}}
    torch.manual_seed(1)
    assert not torch.allclose(model.generate(moved, "a2"), out)
    # different prior draws give different generations of the same source
    assert not torch.allclose(model.generate(small, "a2"), out)
    mean_model = _model(mods=mods, private_dim=0, generate_z="mean")
    post = mean_model.encode(small["data"])
    z, w = mean_model.cross_latents(post, torch.tensor([[True, False]] * 6))
    assert torch.equal(z, post.z_mu[0]) and w.shape == (6, 0)


@pytest.mark.parametrize("name,dims", REAL_SHAPES)
def test_embed_generate_sample_shapes_on_a_real_benchmark(name, dims):
    spec, batch = partly_observed_batch(name)
    torch.manual_seed(0)
    model = DCMEM(spec, DCMEM.Config(k_samples=1, n_pseudo=8))
    names = list(dims)
    emb = model.embed(batch)
    assert set(emb) == {"joint", *names, *(f"private:{m}" for m in names)}
    assert all(emb[k].shape == (5, 16) for k in ("joint", *names))
    assert all(emb[f"private:{m}"].shape == (5, 8) for m in names) and torch.isfinite(emb["joint"]).all()
    for key in (names[1], f"private:{names[1]}"):
        assert torch.isnan(emb[key][:2]).all() and torch.isfinite(emb[key][2:]).all()
    # joint = the mean of the observed modalities' shared means
    assert torch.allclose(emb["joint"][1], emb[names[0]][1])
    assert torch.allclose(emb["joint"][2], torch.stack([emb[m][2] for m in names]).mean(0), atol=1e-6)
    for target, shape in dims.items():
        assert model.generate(batch, target).shape == (5, *shape)
    assert {k: tuple(v.shape[1:]) for k, v in model.sample(3).items()} == dims
