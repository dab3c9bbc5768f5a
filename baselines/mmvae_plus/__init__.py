"""MMVAE+ (Palumbo, Daunhawer, Vogt, "MMVAE+: Enhancing the Generative Quality of Multimodal VAEs without
Compromises", ICLR 2023; code epalu/mmvaeplus), docs/methods.md §5.

Model [paper]: a shared latent z (Dz) and a private latent w_m (Dw) per modality. Each encoder gives the factorised
posterior q(w_m | x_m) q(z | x_m), both Laplace, with scale softmax(logits) * D + 1e-6 (``vae_polymnist.py``
``Enc.forward``). Priors p(z) = p(w_m) = Laplace(0, 1) (frozen zero logits). A learned auxiliary prior
r_m(w_m) = Laplace(0, softmax(logits_m) * Dw) supplies w for cross-reconstructions. Joint shared posterior: the
mixture q(z | X) = (1/M) sum_m q(z | x_m). Decoders read [z, w_m].

Objective [paper: ``src/objectives.py``, the "looser" bound with the average over modalities outside the log]. For
each source r, K draws (w_r^k, z^k) ~ q(. | x_r); every target d is decoded from (z^k, w'_d) with w'_d = w_r^k if
d = r, else a fresh w'_d ~ r_d;

    lw_r^k = sum_d lambda_d log p(x_d | z^k, w'_d)
             + beta [log p(w_r^k) + log p(z^k) - log q_mix(z^k | X) - log q(w_r^k | x_r)],
    L = mean_batch (1/M) sum_r est_k(lw_r^k),

with est = mean over k ("elbo"), log-mean-exp ("iwae", the official ``m_elbo`` with K > 1) or the DReG surrogate
("dreg", the official ``m_dreg``; ``bench.nn.iwae``). The paper trains with dreg and K > 1; our default is
elbo with K = 1, which is the same objective at a K-th of the cost (all three coincide in value at K = 1).
With Dw = 0 the model is MMVAE (Shi et al. 2019) with the stratified ELBO.

Points that are ours [reconstructed]:

* Missing modalities (the harness's observation ratios): per sample, q_mix mixes only the observed modalities
  (uniform weights over them), the stratified sum over sources runs over the observed sources and is divided by
  their number, and only observed targets are reconstructed. With every modality observed this is the paper's
  objective. Unobserved inputs are zero-filled before the encoders and masked with ``torch.where``, so their
  values reach neither the loss nor the gradients.
* DReG detaches the posterior parameters inside every log q term (docs/methods.md §0.5, Tucker et al. 2019). The
  official ``_m_dreg`` builds detached copies but then scores with the non-detached parameters, which keeps the
  score-function term; we follow the estimator's definition. The surrogate's value is shifted to the IWAE bound
  (a detached constant) so the logged loss is comparable across estimators.
* Likelihoods: each modality's own (``Modality.likelihood``) by default; ``image_likelihood="laplace"`` gives
  images the paper's PolyMNIST Laplace likelihood with fixed scale ``laplace_scale`` = 0.75 [paper]. Encoders
  and decoders are the harness's shared networks (``bench.nn.modules``), not the paper's ResNets; w and z get
  separate feature extractors as in the official encoder (``shared_trunk=False``).
* Representation: ``joint`` is the mean of the mixture q(z | X_observed), i.e. the average of the observed
  modalities' z locations; ``<m>`` is modality m's z location and ``<m>_w`` its w location (the paper probes z,
  w and [w, z] per modality; ``test_functions.py``).
* Generation: cross-generation decodes z from the sources other than the target (``generate_z="component"``: the
  location of one observed source per sample, drawn uniformly, as one draw of the mixture's component;
  ``"mean"``: the mixture mean) with w_target at the location 0 of r_target [paper: the official code draws w
  from a zero-located prior; the location is our deterministic choice]. Unconditional samples draw z ~ p(z) and
  an independent w_m ~ p(w_m) per modality (the official ``generate`` reuses one draw for every modality).
"""

from baselines.mmvae_plus.model import MMVAEPlus

__all__ = ["MMVAEPlus"]
