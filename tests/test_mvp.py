import math
from collections import Counter

import pytest
import torch
from torch import nn

from baselines.mvp import MVP, random_cyclic_permutations
from baselines.mvp.model import GroupedMLP
from bench.data import load_splits
from bench.data.contracts import BenchmarkSpec, Modality
from bench.registry import BENCHMARKS, METHODS
from conftest import REAL_SHAPES, assert_unobserved_values_change_nothing, partly_observed_batch, random_batch

MODS = (Modality("a", "vector", (4,)), Modality("b", "image", (1, 16, 16)), Modality("c", "text", (5,), vocab_size=7))


def _batch(mods=MODS, n=6, seed=0):
    return random_batch(mods, n, seed)


def _model(mods=MODS, epoch=0, n_epochs=1, **cfg):
    torch.manual_seed(0)
    model = MVP(BenchmarkSpec("toy", tuple(mods), 2),
                MVP.Config(latent_dim=6, common_dim=3, hidden=16, transform_hidden=(8, 8), **cfg))
    model.on_epoch_start(epoch, n_epochs)
    return model


def _cycle_length(perm: list[int], start: int) -> int:
    i, n = perm[start], 1
    while i != start:
        i, n = perm[i], n + 1
    return n


# --- the permutation -------------------------------------------------------------------------------------------
def test_permutations_are_single_cycles_on_the_observed_views_and_fix_the_rest():
    g = torch.Generator().manual_seed(0)
    mask = torch.rand(300, 6, generator=g) < 0.6
    perm = random_cyclic_permutations(mask, 4, g)
    assert perm.shape == (300, 4, 6)
    for b in range(300):
        obs = mask[b].nonzero().flatten().tolist()
        for p in perm[b].tolist():
            assert sorted(p) == list(range(6))  # a permutation
            for i in range(6):
                if i not in obs:
                    assert p[i] == i
            if len(obs) == 1:
                assert p[obs[0]] == obs[0]
            elif obs:
                assert all(p[i] != i and p[i] in obs for i in obs)  # a derangement of the observed set
                assert _cycle_length(p, obs[0]) == len(obs)  # one cycle through all of them


def test_with_two_views_the_permutation_swaps_them():
    perm = random_cyclic_permutations(torch.ones(5, 2, dtype=torch.bool), 3)
    assert (perm == torch.tensor([1, 0])).all()


def test_the_cycles_are_uniform():
    g = torch.Generator().manual_seed(1)
    perm = random_cyclic_permutations(torch.ones(6000, 4, dtype=torch.bool), 1, g)[:, 0]
    counts = Counter(tuple(p) for p in perm.tolist())
    assert len(counts) == math.factorial(3)  # all (n - 1)! four-cycles, nothing else
    assert max(counts.values()) / min(counts.values()) < 1.2


def test_permute_columns_moves_entries_within_their_column():
    m, b, d = 3, 2, 1
    mat = torch.arange(m * m * b, dtype=torch.float).view(m, m, b, d)
    perm = torch.tensor([[[1, 2, 0], [2, 0, 1], [1, 0, 2]], [[0, 1, 2], [1, 0, 2], [2, 1, 0]]])  # [B, col, row]
    out = MVP.permute_columns(mat, perm)
    for i in range(m):
        for v in range(m):
            for s in range(b):
                assert out[i, v, s, 0] == mat[perm[s, v, i], v, s, 0]


def test_grouped_mlp_equals_separate_mlps():
    torch.manual_seed(0)
    grouped = GroupedMLP(3, 4, (5, 6), 2)
    x = torch.randn(3, 7, 4)
    out = grouped(x)
    for g in range(3):
        h = x[g]
        for i, (w, bias) in enumerate(zip(grouped.weights, grouped.biases)):
            h = h @ w[g] + bias[g]
            if i < len(grouped.weights) - 1:
                h = nn.functional.leaky_relu(h)
        assert torch.allclose(out[g], h, atol=1e-6)


# --- the model -------------------------------------------------------------------------------------------------
def test_registered_as_a_baseline_without_unconditional_sampling():
    assert METHODS.get("mvp") is MVP and MVP.kind == "baseline"
    caps = set(MVP.capabilities())
    assert "generate" in caps and "sample" not in caps  # no prior: the model defines no unconditional sample


def test_the_latent_matrix_has_the_encoders_on_the_diagonal():
    model = _model()
    mu, logvar, _ = model.experts(_batch())
    z_mu, z_logvar = model.latent_matrix(mu, logvar)
    assert z_mu.shape == (3, 3, 6, 6)
    for v in range(3):
        assert torch.equal(z_mu[v, v], mu[v]) and torch.equal(z_logvar[v, v], logvar[v])
    # entry (i, j) depends on view i only
    x = torch.randn_like(mu[0])
    mu2 = mu.clone()
    mu2[0] = x
    z2 = model.latent_matrix(mu2, logvar)[0]
    assert torch.equal(z2[1:], z_mu[1:]) and not torch.equal(z2[0], z_mu[0])


@pytest.mark.parametrize("epoch", [0, 1])
def test_divergences_vanish_when_the_correspondences_are_exact(epoch):
    """If T_{i->j}(x_i) equals view j's own posterior, every column is constant, so permuting changes nothing."""
    model = _model(epoch=epoch, n_epochs=2)
    model.latent_matrix = lambda mu, logvar: (mu.unsqueeze(0).expand(3, -1, -1, -1),
                                              logvar.unsqueeze(0).expand(3, -1, -1, -1))
    out = model.loss(_batch())
    assert out["perm_kl"] == 0 and out["common_kl"] == 0
    assert torch.allclose(out["loss"], model.cfg.rec_weight * out["rec"])


def test_the_permuted_branch_joins_after_the_warmup():
    model = _model(n_epochs=10)
    assert not model.double()
    model.on_epoch_start(4, 10)
    assert model.double()


@pytest.mark.parametrize("epoch", [0, 1])
def test_unobserved_views_change_neither_loss_nor_gradients(epoch):
    model = _model(epoch=epoch, n_epochs=2)
    batch = _batch(n=8)
    # samples 0-2 complete, 3-4 observe {a, c}, 5-6 observe {a}, 7 observes {c}
    batch["mask"][3:, 1] = False
    batch["mask"][5:7, 2] = False
    batch["mask"][7, 0] = False
    batch["data"]["b"][3:] = float("nan")
    batch["data"]["c"][5:7] = -1
    batch["data"]["a"][7] = float("nan")

    def scramble(data):
        data["b"][3:] = 123.0
        data["c"][5:7] = 4
        data["a"][7] = -7.0

    assert_unobserved_values_change_nothing(model, batch, scramble)
    assert all(p.grad is not None for p in model.parameters())   # every parameter takes part


def test_a_lone_observed_view_contributes_reconstruction_only():
    model = _model()
    batch = _batch(n=1)
    batch["mask"][0] = torch.tensor([False, True, False])
    out = model.loss(batch)
    assert out["perm_kl"] == 0 and out["common_kl"] == 0


def test_one_modality_runs():
    mods = MODS[:1]
    model = _model(mods)
    out = model.loss(_batch(mods))
    assert torch.isfinite(out["loss"]) and out["perm_kl"] == 0
    assert model.embed(_batch(mods))["joint"].shape == (6, 3)


@pytest.mark.parametrize("name,dims", REAL_SHAPES)
def test_embed_and_generate_shapes_on_a_real_benchmark(name, dims):
    spec, batch = partly_observed_batch(name)
    model = MVP(spec, MVP.Config())
    names = list(dims)
    emb = model.embed(batch)
    assert set(emb) == {"joint", *names} and emb["joint"].shape == (5, MVP.Config().common_dim)
    assert torch.isfinite(emb["joint"]).all()
    assert torch.isnan(emb[names[1]][:2]).all() and torch.isfinite(emb[names[1]][2:]).all()
    # with a single observed view the joint representation is that view's own common part
    assert torch.allclose(emb["joint"][1], emb[names[0]][1], atol=1e-5)
    for target, shape in dims.items():
        assert model.generate(batch, target).shape == (5, *shape)


@pytest.mark.parametrize("rho", [1.0, 0.5])
def test_two_optimizer_steps_on_digits_ms(rho):
    cls = BENCHMARKS.get("digits-ms")
    train, _, _ = load_splits(cls(cls.Config(variants=1)), rho, seed=0)
    torch.manual_seed(0)
    model = MVP(cls(cls.Config(variants=1)).spec(), MVP.Config())
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=1e-5)
    batches = list(train.batches(64, shuffle=True, generator=torch.Generator().manual_seed(0)))[:2]
    for epoch, batch in enumerate(batches):
        model.on_epoch_start(epoch, 2)  # the second step also reconstructs the permuted branch
        opt.zero_grad()
        loss = model.loss(batch)["loss"]
        assert torch.isfinite(loss)
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
