"""DCMEM: Disentangled Cross-Modal Representation Learning with Enhanced Mutual Supervision (Gao, Chen, Wang, Guo,
Liang; NeurIPS 2025, OpenReview sFyTsO2qO3), docs/methods.md §2 and §11.1. No paper body or code was available: the
objective is rebuilt on MEME (Joy et al., ICLR 2022; code thwjoy/meme).

Model: per modality m a shared latent z_m (Dz) and a private latent w_m (Dw), Gaussian posteriors
q(z_m | x_m) q(w_m | x_m), a decoder p(x_m | z_m, w_m) and p(w_m) = N(0, I). In direction s|t the prior of z_s is
t's shared encoder and the "classifier" q(t | z_s) is t's decoder. Objective to minimise (§2.3):

    J = -mean_b [ paired rows: (1/(n_b - 1)) sum_{s != t observed} L_{s|t} ;  rows observing s alone: L_s(s) ]
        + beta_IB sum_m (|R_m| / B) I^(z_m; w_m) + gamma L_NCE,

    L_{s|t} = r (log p(s | z_s, w_s) - log q(t | z_s) - KL(q(z_s|s) || q(z_t|t))) - KL(q(w_s|s) || p(w_s))
              + alpha log q^(t|s),   r = stopgrad(q(t | z_s) / q^(t|s)),
    log q^(t|s) = logmeanexp over z_s and K extra draws of log q(t | z_s^(k)),
    L_s(s) = log p(s | z_s, w_s) - [log q(z_s|s) - log p_anchor(z_s)] - KL(q(w_s|s) || p(w_s)),
    p_anchor(z_s) = mean over the other modalities' learnable pseudo-inputs u_t of q(z | u_t).

[paper] (abstract, poster, §11.1 summary): shared and private latents per modality; mutual supervision of the shared
representation by the other modality; an information-bottleneck trade-off with the last term
I(z_s; s | t) ~ KL(q(z_s|s) || q(z_t|t)), i.e. the conditional prior is the other modality's shared encoder; the
alignment I(z_s; z_t) as an in-batch cosine InfoNCE; the VampPrior-style anchor p_s(z_s) = (1/B) sum_i p(z_s | t_i)
for missing-modality data; the total "paired L_Bi + unpaired L_s + L_t".
[paper-adjacent] (MEME code): the bound with the detached ratio r and K = 10 extra draws, alpha = 10, learnable
pseudo-inputs, the single-sample KL estimate of the unpaired term, posterior std floored at 1e-3, lr 5e-4.

[reconstructed]
* q(t | z_s) decodes t from z_s and a private latent drawn from t's prior (``cls_private="prior"``; "posterior" uses
  q(w_t | t)), so all t-relevant content must pass through z_s.
* I(z_m; w_m) by minibatch-weighted sampling (``bench.nn.mi.mws_mutual_information``) with weights 1/B over the
  rows observing m (the method does not know the data set size), at the k = 0 draws.
* L_NCE on the shared *means* (cosine, temperature tau_a = 0.1). The §11.1 summary calls its weight alpha; here
  alpha stays MEME's weight of log q^(t|s) and the InfoNCE weight is gamma.
* Batches: the engine hands the method mixed, shuffled batches. The split into paired and unpaired parts is read
  from the mask, row by row (``split_rows``): a row with >= 2 observed modalities feeds the mutual-supervision
  terms of its observed ordered pairs, a row observing one modality feeds that modality's anchor ELBO. Summing
  both over the batch and dividing by its size weighs them in proportion to their counts, which is what MEME's
  interleaving of paired and unpaired batches does in expectation; no sampler is needed, and every draw uses the
  global torch RNG the engine seeds from the run id. At rho = 1 no row is unpaired, so the anchor is never used.
  The batch-level penalties are weighted by the share of rows they are computed on (MI of m: rows observing m;
  InfoNCE of (s, t): rows observing both), again as interleaving would weigh them.
* M > 2 modalities: ordered pairs; a row with n observed modalities averages each source's n - 1 directions
  (for two modalities: L_{s|t} + L_{t|s}); the anchor of m mixes the pseudo-inputs of all other modalities with
  equal weights; L_NCE is the mean over ordered pairs.
* Pseudo-inputs (``n_pseudo`` = 128, MEME's batch size) live in data space, initialised in the modality's range
  (MEME uses a real batch, which a method built before seeing data cannot); integer modalities (text, masks) and
  ``anchor_space="feature"`` put them in the encoder's feature space, initialised at features of random ids.
* Networks: the harness's shared encoders/decoders (``bench.nn.modules``), separate feature extractors for z and w
  (``shared_trunk=False``, as MMVAE+); each modality's own likelihood, or MEME's unit-scale Laplace for images
  (``image_likelihood="laplace"``). Objective terms are computed in float32 under bf16.
* Defaults at harness scale: Dz = 16 (as every harness method), Dw = 8, K = 10, alpha = 10, beta_IB = 0.5,
  gamma = 1.
* Representation: ``joint`` = the average of the observed modalities' shared means; ``<m>`` = m's shared mean;
  ``private:<m>`` = m's private mean (the "style"); NaN rows where m is unobserved.
* Generation: cross-modal z from the sources (``generate_z="sample"``: a draw from the posterior of one observed
  source per sample, §2.8; "mean": the average of their shared means; 0 where a sample has no source) and the
  target's w ~ N(0, I). Unconditional: z from the pooled anchor of all modalities' pseudo-inputs, w_m ~ N(0, I)
  per modality (MEME has no unconditional prior; at rho = 1 the pseudo-inputs keep their initial values).
"""

from methods.dcmem.model import DCMEM, direction_objective, importance_ratio, split_rows, unpaired_objective

__all__ = ["DCMEM", "direction_objective", "importance_ratio", "split_rows", "unpaired_objective"]
