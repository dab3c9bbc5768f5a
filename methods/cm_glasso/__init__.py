"""CM-GLasso: Cross-Modal Graphical Lasso (Fei Wang, Yutong Zhang, Xiong Wang; arXiv 2604.03953, Apr 2026),
docs/methods.md §3. No method text or code of the paper was available: only its abstract and a pipeline summary.

[paper] (abstract, summary): a unified vision-language encoder (SigLIP 2) with a text-visualisation strategy;
cross-attention distillation into semantic nodes; spatial-aware cross-modal priors as non-uniform penalty weights
(Tailored GLasso); a nonparanormal transform; a joint graphical lasso with a shared (invariant) structure and
class-specific parts solved by ADMM with eBIC-guided structure selection; generative classification and dense
segmentation from the class-wise graphs.

[paper-adjacent] the nonparanormal transform and its winsorisation (Liu, Lafferty & Wasserman 2009); the tailored
penalty P = 1 - g_k(W) and the k grid (Tailored GLasso, Lingjaerde et al. 2021); eBIC (Foygel & Drton 2010).

[reconstructed]
* Encoder substitute (:mod:`~methods.cm_glasso.nodes`): small from-scratch towers per modality turning images into
  4x4-pixel patch tokens, text into word tokens and vectors into a few tokens; no SigLIP 2. Text
  visualisation is an option (Config ``render_text``, off by default; :mod:`~methods.cm_glasso.render`): captions
  are drawn with Pillow's built-in bitmap font and read by the image modality's tower, so one vision tower
  encodes both. p learned node queries, one single-head cross-attention layer,
  node variable x_j = cos(H_j, Q_j); trained by cross-entropy of a linear classifier on x plus a CLIP-style InfoNCE
  between the modalities' node vectors on paired samples. On small all-vector benchmarks (ggm-synth, bc-3view) the
  benchmark's own variables are the nodes (Config ``nodes``).
* Spatial prior: the mean attention overlap of two nodes, sum_n min(A_in, A_jn), rescaled to [0, 1].
* The objective (:mod:`~methods.cm_glasso.solver`): Theta_k = Theta_0 + Delta_k with a zero-diagonal Theta_0,
  weighted l1 penalties lam_shared on Theta_0 and lam_specific on every Delta_k; the scaled ADMM with one batched
  eigendecomposition per iteration, an exact entry-wise (Theta_0, Delta) step, over-relaxation 1.8 and residual
  balancing on normalised residuals (the plain §3.6 rule is ``relax=1, balance="absolute"``).
* Penalty rescaling by the off-diagonal mean of P (k = 0 is then exactly the untailored problem); (k, lambda)
  chosen jointly by eBIC over a warm-started path instead of StARS.
* Classification: QDA with Omega_k (ablation: Theta_0 + diag(Delta_k)); segmentation: the same joint fit per pixel
  class (majority class of each 4x4 patch) on every patch's node variables cos(W_v t_n, Q_j), on a class-balanced
  sample of patches, QDA with equal priors per patch, class scores upsampled bilinearly (why each:
  ``docs/cm_glasso-segmentation.md``).
* The graph stage fits on the complete training rows when every class has at least 10 of them.
"""

from methods.cm_glasso import perf, perf_path  # noqa: F401  (register the solver benchmark: python -m bench perf glasso)
from methods.cm_glasso.model import CMGLasso
from methods.cm_glasso.solver import JointGLassoResult, graphical_lasso, solve_joint_glasso

__all__ = ["CMGLasso", "JointGLassoResult", "graphical_lasso", "solve_joint_glasso"]
