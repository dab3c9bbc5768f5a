"""PMRL: Principled Multimodal Representation Learning (Liu, Xia, Ng, Chua; arXiv 2507.17343, TPAMI 2026;
code Xiaohao-Liu/PMRL), METHODS.md §1.

Each instance i stacks its L2-normalised modality embeddings into Z_i [M x d]; full alignment is a rank-1 Gram
matrix, i.e. a maximal dominant singular value sigma_1 = sqrt(M). Objective, L = L_align + L_reg:

* L_align = mean_i CE(sigma_i / tau1, target 0): the singular values as logits, the largest as the class.
* L_reg = mean_i CE((v_i . v_j / tau2)_j, target i): a one-directional InfoNCE over the batch on the leading
  (right) singular vectors v_i in R^d.

[paper] L2-normalised embeddings, bias-free linear heads, the singular-value cross-entropy, the InfoNCE on the
leading vectors over the local batch, unit weights, tau1 = 0.05, tau2 = 0.1 (finetuning defaults).

[reconstructed]
* Encoders: one small from-scratch encoder per modality from ``bench.nn`` (not EVA-CLIP/BEATs/BERT), head to
  ``dim`` = 16; VAST's ITM term is dropped.
* The singular values come from ``eigh`` of the M x M Gram matrix in float32 (autocast off), which equals the thin
  SVD; v = Z^T u_1 / sigma_1.
* Sign canonicalisation: v is flipped so that sum_m z^m . v >= 0 (the official code leaves the sign arbitrary).
* Anti-alignment guard (Config ``guard``, default on, weight ``guard_weight`` = 0.1): + mu mean_i sum_m
  relu(-(z_i^m . v_i)), since rank 1 also admits anti-aligned rows.
* Optional warm-up (``warmup_epochs``): L_align only, no gradient through singular vectors.
* Missing modalities: an instance's matrix holds only its n_i observed rows. Unobserved rows are zeroed and their
  Gram rows replaced by distinct negative constants (sorted below every observed eigenvalue, no gradient), so
  L_align of instance i is the §1.4 formula with M replaced by n_i (its n_i singular values only; the structural
  zero singular values of empty rows are not logits). Mixed masks in one batch: L_align is averaged over the
  instances with n_i >= 2 (a one-modality instance has a single logit, hence no alignment term); L_reg runs over
  every instance with n_i >= 1 (a one-modality instance has v = its embedding); instances with nothing observed
  are left out of both.
* Gradient clipping: the method's default clip is 2.0 (§1.7), used when ``trainer.gradient_clipping`` is null.
* ``objective="gram"`` (registered on its own as ``pmrl_gram``): GRAM's volume contrastive loss (§1.11,
  ``methods/pmrl/gram.py``) replaces L_align + L_reg on the same encoders, so reports can set the dominant singular
  value against the product of all singular values (the volume).
* Representation: per-modality z^m (NaN where unobserved) and ``joint`` = the normalised mean of the observed z^m
  (Config ``joint="mean"``, the default since version 2), or the sign-canonicalised leading right singular vector v
  of the observed rows (``joint="leading"``, registered on its own as ``pmrl_leading``). The paper reads v as the
  instance's shared direction, but v is discontinuous in the embeddings: with two modalities it is the normalised
  sum when their cosine is positive and the normalised difference when it is negative. Measured with untrained
  encoders on digits-ms (5,032 training and 2,156 test tuples), seeds 0-3: the linear probe on v scored
  0.34-0.68, and on the normalised mean 0.69-0.76.
"""

from methods.pmrl.model import PMRL, PMRLGram, PMRLLeading, pmrl_loss, pmrl_terms

__all__ = ["PMRL", "PMRLGram", "PMRLLeading", "pmrl_loss", "pmrl_terms"]
