"""MultiVae's MoPoE (``multivae.models.MoPoE``) trained on the harness's tensors with the harness's networks, and a
thin adapter that lets the harness's metrics score it (tests/test_peer_multivae.py uses it).

Only MultiVae's own code trains: its ``MoPoE`` (subset posteriors, mixture, KL, likelihoods) and its
``BaseTrainer`` (data loader, optimiser, epochs). What the harness supplies is what must be equal on both sides: the
training tensors, the networks (built by the harness's ``MoPoE`` and handed to MultiVae as its custom encoders and
decoders) and the budget. Imports of ``multivae``/``pythae`` live inside the functions so that importing this
module never needs them (the test skips when they are absent).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from bench.data.contracts import BenchmarkSpec, MultimodalDataset
from bench.nn.modules import likelihood_mean, observed_inputs

# harness likelihood -> MultiVae ``decoders_dist`` name. MultiVae's "bernoulli" reads logits
# (multivae/models/base/base_utils.py set_decoder_dist), as the harness's does; its "normal" with scale 1 is the
# harness's unit-variance Gaussian; its "laplace" takes the scale the harness's MoPoE uses (``laplace_scale``).
LIKELIHOODS = {"bernoulli": "bernoulli", "gaussian": "normal", "laplace": "laplace"}


@dataclass(frozen=True)
class PeerBudget:
    """What the harness's trainer config fixes about the optimisation (torch AdamW, as DeepSpeed builds it)."""
    epochs: int
    batch_size: int
    lr: float
    seed: int
    betas: tuple[float, float] = (0.9, 0.999)
    amsgrad: bool = False
    weight_decay: float = 0.0


def harness_likelihoods(harness_mopoe: nn.Module) -> tuple[str, ...]:
    """The likelihood the harness's MoPoE trains each modality with (modality order)."""
    own = tuple(m.likelihood for m in harness_mopoe.spec.modalities)
    return tuple(getattr(harness_mopoe, "likelihoods", own))


def multivae_likelihoods(harness_mopoe: nn.Module) -> tuple[dict, dict]:
    """(decoders_dist, decoder_dist_params) that give MultiVae the harness MoPoE's likelihood per modality."""
    dists, params = {}, {}
    for m, kind in zip(harness_mopoe.modality_names, harness_likelihoods(harness_mopoe)):
        if kind not in LIKELIHOODS:
            raise ValueError(f"modality {m}: no MultiVae likelihood matches {kind!r}; valid: {', '.join(LIKELIHOODS)}")
        dists[m] = LIKELIHOODS[kind]
        if kind == "gaussian":
            params[m] = {"scale": 1.0}
        elif kind == "laplace":
            params[m] = {"scale": float(getattr(harness_mopoe.cfg, "laplace_scale", 1.0))}
    return dists, params


def peer_networks(harness_mopoe: nn.Module) -> tuple[dict, dict]:
    """MultiVae encoders and decoders wrapping the modules of a (freshly initialised) harness MoPoE, so that the
    two implementations train the same architecture: per modality the harness encoder and Gaussian head, and the
    harness decoder."""
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn.base_architectures import BaseDecoder, BaseEncoder

    class Encoder(BaseEncoder):
        def __init__(self, body: nn.Module, head: nn.Module):
            super().__init__()
            self.body, self.head = body, head

        def forward(self, x):
            mu, logvar = self.head(self.body(x))
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net

        def forward(self, z):
            return ModelOutput(reconstruction=self.net(z))

    experts = harness_mopoe.experts
    names = harness_mopoe.modality_names
    return ({m: Encoder(experts.encoders[m], experts.heads[m]) for m in names},
            {m: Decoder(harness_mopoe.decoders[m]) for m in names})


def build_multivae_mopoe(spec: BenchmarkSpec, harness_mopoe: nn.Module):
    """MultiVae's MoPoE with the harness MoPoE's networks, latent size, beta, likelihoods and reconstruction weights
    (MultiVae's ``rescale_factors`` multiply each modality's log-likelihood, as the harness's weights do)."""
    from multivae.models import MoPoE, MoPoEConfig

    cfg = harness_mopoe.cfg
    weights = dict(zip(harness_mopoe.modality_names, (float(w) for w in harness_mopoe.weights)))
    if cfg.prior_expert != "full":
        raise ValueError(f"MultiVae's MoPoE adds the prior expert to the full subset only (prior_expert=full); "
                         f"got {cfg.prior_expert!r}")
    dists, params = multivae_likelihoods(harness_mopoe)
    config = MoPoEConfig(n_modalities=len(spec.modalities), latent_dim=cfg.latent_dim, beta=cfg.beta,
                         input_dims={m.name: tuple(m.shape) for m in spec.modalities},
                         decoders_dist=dists, decoder_dist_params=params,
                         uses_likelihood_rescaling=any(w != 1.0 for w in weights.values()), rescale_factors=weights)
    encoders, decoders = peer_networks(harness_mopoe)
    return MoPoE(config, encoders=encoders, decoders=decoders)


def multivae_dataset(ds: MultimodalDataset):
    """The same tensors as a MultiVae dataset (complete samples only: MultiVae's MoPoE on a MultimodalBaseDataset
    trains on complete data, as the harness does at obs_ratio 1)."""
    from multivae.data.datasets.base import MultimodalBaseDataset

    if not bool(ds.mask.all()):
        raise ValueError("multivae_dataset needs a complete split (obs_ratio 1): some samples miss a modality")
    return MultimodalBaseDataset(data={m: ds.data[m].float() for m in ds.names}, labels=ds.labels)


@contextlib.contextmanager
def grey_level_bernoulli():
    """torch's Bernoulli refuses targets other than 0 and 1 while argument validation is on; the harness, like the
    MoPoE code it follows, uses -BCE-with-logits on grey levels in [0, 1]. With validation off MultiVae's
    ``Bernoulli(logits).log_prob(x)`` computes exactly that. The global default is restored afterwards."""
    dist = torch.distributions.Distribution
    before = dist._validate_args
    dist.set_default_validate_args(False)
    try:
        yield
    finally:
        dist.set_default_validate_args(before)


def train_multivae(model, train: MultimodalDataset, budget: PeerBudget, out_dir: str):
    """Train ``model`` with MultiVae's BaseTrainer: torch AdamW as ``budget`` says, shuffled batches,
    ``budget.epochs`` epochs on the CPU, no evaluation split. Returns the model of the last epoch, as the harness keeps.

    MultiVae keeps the epoch of best loss after ``model.start_keep_best_epoch``; setting that to the last epoch
    makes it keep every epoch's model in turn, i.e. the last one."""
    from multivae.trainers import BaseTrainer, BaseTrainerConfig

    config = BaseTrainerConfig(output_dir=out_dir, per_device_train_batch_size=budget.batch_size,
                               num_epochs=budget.epochs, learning_rate=budget.lr, optimizer_cls="AdamW",
                               optimizer_params={"betas": tuple(budget.betas), "amsgrad": budget.amsgrad,
                                                 "weight_decay": budget.weight_decay},
                               seed=budget.seed, no_cuda=True)
    model.start_keep_best_epoch = budget.epochs
    with grey_level_bernoulli():
        trainer = BaseTrainer(model, multivae_dataset(train), training_config=config)
        trainer.train()
    return trainer._best_model


class MultiVaeAdapter(nn.Module):
    """A trained MultiVae MoPoE behind the harness's method contract (``embed``, ``generate``), scored by the
    harness's metrics exactly as the harness's MoPoE is.

    The representations are those the harness's MoPoE gives: ``joint`` is the posterior mean of the subset of
    observed modalities (MultiVae's ``inference(...)["subsets"]``, which for the full set is the product with the
    prior expert, as in the harness), and a modality's is its unimodal posterior mean. ``generate`` is MultiVae's
    ``predict`` from the observed modalities other than the target, at the subset posterior mean
    (``return_mean=True``), mapped to data space as the harness does (the sigmoid of Bernoulli logits, the
    mean itself for Gaussian and Laplace).

    A batch must observe the same modalities in every row (the harness's evaluation batches do)."""

    def __init__(self, model, spec: BenchmarkSpec, likelihoods: tuple[str, ...] | None = None):
        super().__init__()
        self.model, self.spec = model, spec
        self.modality_names = spec.modality_names
        # the likelihood each decoder was trained with (harness_likelihoods of the nets' MoPoE); default: the data's
        kinds = likelihoods or tuple(m.likelihood for m in spec.modalities)
        if len(kinds) != len(self.modality_names):
            raise ValueError(f"likelihoods has {len(kinds)} entries, the benchmark has {len(self.modality_names)} "
                             "modalities")
        self.likelihoods = dict(zip(self.modality_names, kinds))

    def _observed(self, batch: dict) -> list[str]:
        mask = batch["mask"]
        if not bool((mask == mask[:1]).all()):
            raise ValueError("MultiVaeAdapter needs batches whose rows observe the same modalities")
        return [m for j, m in enumerate(self.modality_names) if bool(mask[0, j])]

    def _inputs(self, batch: dict):
        from multivae.data.datasets.base import MultimodalBaseDataset

        # unobserved rows hold NaN placeholders; zeros keep them out of MultiVae's arithmetic (they condition
        # nothing: only the subsets of observed modalities are read)
        return MultimodalBaseDataset(data=observed_inputs(batch, self.modality_names))

    @staticmethod
    def _key(mods) -> str:
        return "_".join(sorted(mods))  # MultiVae's subset naming (MoPoE.set_subsets)

    @torch.no_grad()
    def embed(self, batch: dict) -> dict[str, torch.Tensor]:
        observed = self._observed(batch)
        if not observed:
            raise ValueError("MultiVaeAdapter.embed: the batch observes no modality")
        self.model.eval()
        subsets = self.model.inference(self._inputs(batch))["subsets"]
        n = batch["mask"].shape[0]
        out = {"joint": subsets[self._key(observed)][0]}
        for m in self.modality_names:
            z = subsets[self._key([m])][0]
            out[m] = z if m in observed else torch.full((n, z.shape[1]), float("nan"), dtype=z.dtype)
        return out

    @torch.no_grad()
    def generate(self, batch: dict, target: str) -> torch.Tensor:
        sources = [m for m in self._observed(batch) if m != target]
        if not sources:
            raise ValueError(f"MultiVaeAdapter.generate: nothing observed besides the target {target!r}")
        out = self.model.predict(self._inputs(batch), cond_mod=sources, gen_mod=target, return_mean=True)
        return likelihood_mean(out[target], self.likelihoods[target])
