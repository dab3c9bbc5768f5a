"""PMRL: Principled Multimodal Representation Learning (Liu, Xia, Ng, Chua; arXiv 2507.17343, TPAMI 2026;
code Xiaohao-Liu/PMRL), docs/methods.md §1.

Each instance i stacks its L2-normalised modality embeddings into Z_i [M x d]; full alignment is a rank-1 Gram
matrix, i.e. a maximal dominant singular value sigma_1 = sqrt(M). Objective, L = L_align + L_reg:

* L_align = mean_i CE(sigma_i / tau1, target 0): the singular values as logits, the largest as the class.
* L_reg = mean_i CE((v_i . v_j / tau2)_j, target i): a one-directional InfoNCE over the batch on the leading
  (right) singular vectors v_i in R^d.

[paper] L2-normalised embeddings, bias-free linear heads, the singular-value cross-entropy, the InfoNCE on the
leading vectors over the local batch, unit weights. The paper's tau1 = 0.05 and tau2 = 0.1 (fine-tuning defaults)
are what ``protocol=paper`` sets; the harness defaults differ (below).

[reconstructed]
* Encoders: one small from-scratch encoder per modality from ``bench.nn`` (not EVA-CLIP/BEATs/BERT), head to
  ``dim`` = 16; VAST's ITM term is dropped.
* The singular values come from ``eigh`` of the M x M Gram matrix in float32 (autocast off), which equals the thin
  SVD; v = Z^T u_1 / sigma_1.
* Sign canonicalisation: v is flipped so that sum_m z^m . v >= 0 (the official code leaves the sign arbitrary).
* Anti-alignment guard (Config ``guard``, default on, weight ``guard_weight`` = 3; not in the official code):
  + mu mean_i sum_m relu(-(z_i^m . v_i)), since rank 1 also admits anti-aligned rows.
* Sign and temperatures (version 3; **differs from the paper**: tau1 = 0.5 and tau2 = 0.5 instead of 0.05 and 0.1,
  and mu = 3 instead of the 0.1 of PMRL versions 1-2). The official code needs none of this because it fine-tunes
  pretrained encoders whose paired embeddings already agree in sign and class; from scratch, the old defaults failed
  on the instance-paired digits-ms control, where m2 is a restyled copy of m1.
  Sign. With two modalities sigma = sqrt(1 +/- |c|) (c the paired cosine), so L_align depends on |c| only and pushes
  |c| up from whichever sign c has, with slope 1/(2 tau1) at c = 0. At random init each encoder's outputs share a
  common offset, so c has one sign for most instances, and that sign is a coin flip of the init (seeds 0-5 of a
  plain loop: mean initial test c from -0.14 to +0.23; 81 % and 86 % of the pairs negative for seeds 0 and 3). On
  the anti-aligned side the guard equals sqrt((1 - c)/2) per instance, slope mu/(2 sqrt 2) at c = 0: it outpulls
  L_align near c = 0 whatever the init when mu * tau1 > sqrt(2), the margin the defaults take. A weaker guard wins
  only sometimes: in tests/test_pmrl.py's setting mu = 0.1 with the other defaults ends at c = -0.95. Once aligned
  the guard is exactly 0 for two modalities (both rows project positively on v), so the strong weight costs nothing
  there. The warm-up keeps the guard off; with ``warmup_epochs=1`` the sign still recovers (plain loop, tau2 0.1,
  seeds 0 and 3: mean c 0.65 / 0.68 after 4 epochs).
  tau1. At 0.05, L_align is satisfied (loss ~2e-3) once |c| ~ 0.5 and stops pulling the views together: a plain loop
  (tau2 0.1, 10 epochs, seeds 0, 3, 5) with mu = 3 fixes the sign but stalls at mean c 0.48-0.50, R@1 0.11-0.13;
  with tau1 = 0.5 the same loop reaches c 0.88, R@1 0.75-0.76. At 0.5 the gap sigma_1 - sigma_2 still carries weight
  at |c| = 0.9.
  tau2. At 0.1, L_reg over a batch of 16-d embeddings is solved early (0.10-0.12 nats after 10 plain-loop epochs, of
  log 128 = 4.85) and from then on weighs the nearest negatives most (a small temperature concentrates the InfoNCE
  gradient on the hardest negatives: Wang & Liu, CVPR 2021), here same-class digits: the validation probe falls as
  training goes on (brief run, 10 epochs: 0.79 after epoch 1, 0.53 after epoch 10 with the old defaults; 0.77 to
  0.605 with tau1 0.5, mu 3, tau2 0.1). At tau2 = 0.5 it rises (0.815 to 0.857).
  Measured through the harness (digits-ms-inst, 10 epochs, batch 128, Adam 1e-3, clip 2.0, the sanity suite's eval;
  test R@1 m1->m2 / m2->m1): old defaults, seeds 5 and 11 (inits anti-aligned, mean c -0.22, -0.45): R@1 0.000 /
  0.000, R@5 0.000, class P@10 0.03, probe 0.37; old defaults, seeds 0-3 (inits positive): R@1 0.11-0.14 /
  0.11-0.15, class P@10 0.42-0.44, probe 0.63-0.66; tau1 0.5, mu 3, tau2 0.1, seeds 0-3 and 6: R@1 0.72-0.76 /
  0.73-0.78, class P@10 0.72-0.75, probe 0.67-0.74; the defaults, seeds 0-3 and 7 (inits of seeds 2 and 7 negative:
  -0.02, -0.44): R@1 0.69-0.72 / 0.73-0.75, R@5 0.92-0.93 / 0.92-0.94, class P@10 0.88-0.90, probe 0.88-0.89. The
  untrained floor (v2, random 16-d heads, seed 0) reads 0.80; on class-paired digits-ms the defaults' probe is 0.985
  (old 0.47, floor 0.85) and on mfeat6 0.953 (old 0.89), below its floor of 0.967.
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
