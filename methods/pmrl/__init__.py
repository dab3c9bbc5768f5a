"""PMRL: Principled Multimodal Representation Learning (Liu, Xia, Ng, Chua; arXiv 2507.17343, TPAMI 2026;
code Xiaohao-Liu/PMRL), METHODS.md §1.

Each instance i stacks its L2-normalised modality embeddings into Z_i [M x d]; full alignment is a rank-1 Gram
matrix, i.e. a maximal dominant singular value sigma_1 = sqrt(M). Objective, L = L_align + L_reg:

* L_align = mean_i CE(sigma_i / tau1, target 0): the singular values as logits, the largest as the class.
* L_reg = mean_i CE((v_i . v_j / tau2)_j, target i): a one-directional InfoNCE over the batch on the leading
  (right) singular vectors v_i in R^d.

[paper] L2-normalised embeddings, bias-free linear heads, the singular-value cross-entropy, the InfoNCE on the
leading vectors over the local batch, unit weights, tau2 = 0.1. The paper's tau1 = 0.05 (fine-tuning default) is
what ``protocol=paper`` sets; the harness default differs (below).

[reconstructed]
* Encoders: one small from-scratch encoder per modality from ``bench.nn`` (not EVA-CLIP/BEATs/BERT), head to
  ``dim`` = 16; VAST's ITM term is dropped.
* The singular values come from ``eigh`` of the M x M Gram matrix in float32 (autocast off), which equals the thin
  SVD; v = Z^T u_1 / sigma_1.
* Sign canonicalisation: v is flipped so that sum_m z^m . v >= 0 (the official code leaves the sign arbitrary).
* Anti-alignment guard (Config ``guard``, default on, weight ``guard_weight`` = 3; not in the official code):
  + mu mean_i sum_m relu(-(z_i^m . v_i)), since rank 1 also admits anti-aligned rows.
* Sign and temperature (version 3; **differs from the paper**: tau1 = 0.5 instead of 0.05, and mu = 3 instead of
  METHODS.md §1.5's 0.1). With two modalities sigma = sqrt(1 +/- |c|) (c the paired cosine), so L_align depends
  on |c| only and pushes |c| up from whichever sign c has, with slope 1/(2 tau1) at c = 0. At random init each
  encoder's outputs share a common offset, so c has one sign for most instances, and that sign is a coin flip of
  the init (instance-paired digits-ms, seeds 0-5: mean initial c from -0.14 to +0.23; 81 % and 86 % of test pairs
  negative for seeds 0 and 3). On the anti-aligned side the guard equals sqrt((1 - c)/2) per instance, slope
  mu/(2 sqrt 2) at c = 0: it can undo an anti-aligned start only if mu * tau1 > sqrt(2). The official code needs
  none of this because it fine-tunes pretrained encoders whose paired embeddings already agree in sign. Measured
  (a plain Adam loop, lr 1e-3, clip 2.0, batch 128, instance-paired digits-ms, seeds 0 and 3, mean test cosine
  after 6 epochs): tau1 0.05 / mu 0.1 (the old defaults) -0.46 after 3 epochs, R@1 0.000; tau1 1 / mu 0.1
  -0.88 / -0.89; tau1 0.05 / mu 1 0.49 / 0.48 (the sign is fixed, but at tau1 = 0.05 L_align is satisfied, loss
  ~1e-2, once c ~ 0.4, and R@1 stays ~0.1); tau1 1 / mu 1 0.86 / 0.84, R@1 0.68 / 0.62; tau1 0.5 / mu 3 (the
  defaults) 0.88 after 10 epochs for seeds 0, 3 and 5, R@1 0.75-0.76, no test pair negative. Once aligned, the
  guard is exactly 0 for two modalities (both rows project positively on v), so the strong weight costs nothing
  there. The warm-up keeps the guard off; with ``warmup_epochs=1`` the defaults still recover the sign (seeds 0
  and 3: mean cosine 0.65 / 0.68 after 4 epochs).
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
