"""MVP: Multi-View Permutation of VAEs (Xin Gao & Jian Pu, "Deep Incomplete Multi-view Learning via Cyclic
Permutation of VAEs", ICLR 2025; code gaoxin492/MVP), docs/methods.md §7.1 and §11.2.

Each view's encoder gives a Gaussian; learned correspondence MLPs translate it into every other view's latent
space, giving an M x M matrix of Gaussians (row = source, column = target). Each column is reordered across the
observed rows by a random cyclic permutation (a derangement); every view is decoded from [c_v, z_v] (c_v = the
PoE of row v's common coordinates, z_v = the diagonal entry) in the original and the permuted matrix, and the
regulariser is the KL between the original and permuted entries and common parts. There is no KL to N(0, I), so
the model defines no unconditional ``sample``.

Provenance:

* [paper] (code ``model/vanilla_mvVAE_img.py``, ``model/ICMVLoss.py``, ``training/trainer_img.py``,
  ``main_img.py``, ``dataprovider/*``, ``evaluate/evaluation_MMNIST.py``): the latent matrix and the LeakyReLU
  correspondence MLPs (one for mu, one for logvar, per ordered pair); Sattolo cycles restricted to the observed
  views, unobserved views fixed; decoding [c_v, z_v]; the loss weights (reconstruction 2, permutation divergence
  5 divided by M, common divergence 2.5) and their masking by the source view; one branch and a one-sided KL
  for the first 200 of 500 epochs, then both branches and symmetrised KLs; Xavier-normal init; the representation
  is the PoE over observed views of their common parts ("aggregated_mu"); cross-view generation takes c from the
  observed views' common parts and z from the PoE of their translations into the target's column.
* [reconstructed] the permutations of the columns are drawn independently (the code picks distinct entries of a
  precomputed list) and a cycle's inverse is computed as a permutation of views (the code's ``argsort`` returns
  positions, which for incomplete samples point at the wrong views); the warm-up is a fraction of the epochs;
  the reconstruction error is the benchmark's NLL scaled to the code's L1 / squared error (:data:`RECON_SCALE`);
  ``generate`` uses means (the code samples) and a zero latent when no other view is observed; the redundant
  (mask + 1) / 2 row factor is dropped (rows are already masked); dimensions 32 / 16 and hidden widths
  (128, 256, 128) (the code's argparse default; PolyMNIST: 96 / 48 and (256, 1024, 256)). The optimiser of the
  code (AdamW lr 5e-4, weight decay 1e-5, gradient-norm clip 12) is trainer configuration, not part of the method.
"""

from baselines.mvp.model import MVP, random_cyclic_permutations

__all__ = ["MVP", "random_cyclic_permutations"]
