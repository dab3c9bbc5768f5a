"""MVAE (Wu & Goodman, NeurIPS 2018; code mhw32/multimodal-vae-public), docs/methods.md §4.

One shared latent z ~ N(0, I); a Gaussian expert per modality; the posterior of any subset S is the product of
the observed experts *and the prior expert*. Objective: ELBO of the observed set + ELBO of each single observed
modality (+ optional random subsets), each reconstructing only the modalities in the subset. Missing
modalities are dropped from the product.
"""

from baselines.mvae.model import MVAE

__all__ = ["MVAE"]
