"""MoPoE-VAE (Sutter, Daunhawer, Vogt; ICLR 2021; code thomassutter/MoPoE), docs/methods.md §6.

One shared latent z ~ N(0, I) and a Gaussian expert per modality. The posterior is a uniform mixture over the
2^M - 1 non-empty subsets S of the modalities, each component the product of the experts in S. Objective:
reconstruct every observed modality from one draw of the mixture per sample (the batch is partitioned across the
components) minus beta times the mean of the component KLs to N(0, I).

Provenance:

* [paper] (code ``utils/BaseMMVae.py``, ``utils/utils.py``, ``run_epochs.py``, ``divergence_measures/mm_div.py``):
  the powerset without the empty set; the N(0, I) expert joins only the full set (``poe_fusion``); uniform mixture
  weights; the KL of the mixture replaced by the mean of the subset KLs (``calc_group_divergence_moe``); one
  mixture sample per batch element by partitioning the batch (``mixture_component_selection``); the
  representation is the subset-posterior mean (``eval_metrics/representation.py``), so ``joint`` is the subset
  posterior of the observed set and each modality's embedding its unimodal posterior.
* [reconstructed] missing modalities: a sample's components are the subsets of its *observed* set, uniformly
  weighted, and only observed modalities are reconstructed; the partition is stratified over a random ranking of
  the batch so that it works with per-sample weights (:func:`bench.nn.subsets.select_components`);
  ``generate`` decodes the posterior *mean* (the code samples) and falls back to the prior mean when no other
  modality is observed. Defaults follow the harness (latent 16, beta 1; the PolyMNIST script uses 512 and 2.5).
"""

from baselines.mopoe.model import MoPoE

__all__ = ["MoPoE"]
