"""CM-GLasso as a registered method: node distillation trained by the engine, then the graph stage in fit_after."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.method import MultimodalMethod
from bench.nn.modules import fill_missing
from bench.registry import register_method
from methods.cm_glasso.classifier import VARIANTS, GaussianClassifier, class_statistics
from methods.cm_glasso.nodes import NodeDistiller, attention_overlap, clip_alignment, spatial_prior, standardise
from methods.cm_glasso.npn import Nonparanormal
from methods.cm_glasso.path import K_GRID, select_tailored, tailored_weights
from methods.cm_glasso.solver import JointGLassoResult, solve_joint_glasso

log = logging.getLogger(__name__)

NODE_MODES = ("auto", "learned", "inputs")
SELECTIONS = ("fixed", "ebic")
PRIOR_SAMPLES = 2000      # samples whose attention maps make the spatial prior (a mean; more adds little)
MIN_COMPLETE_PER_CLASS = 10


@dataclass
class GraphStage:
    """What fit_after learns: the NPN maps, the joint fit and its classifier (and the class ids it covers)."""

    npn: Nonparanormal
    result: JointGLassoResult
    classifier: GaussianClassifier
    classes: np.ndarray            # the label of each fitted class (all K for images; pixel classes present)
    lam_specific: float            # in the solver's units (sum over classes of n_k times alpha)
    lam_shared: float
    k: float
    prior: np.ndarray | None


@register_method("cm_glasso")
class CMGLasso(MultimodalMethod):
    """docs/methods.md §3: node variables from cross-attention over the modalities' tokens, NPN, tailored joint
    graphical lasso (shared Theta_0 + class-specific Delta_k) by batched ADMM, QDA with the class precisions."""

    kind = "method"
    version = 2   # 2: the segmentation head's patch features, class-balanced fit and equal priors (§3.7)

    @dataclass(frozen=True)
    class Config:
        # "learned": node distillation (§3.2); "inputs": the benchmark's own variables are the nodes (every
        # modality a vector); "auto": inputs when every modality is a vector of at most max_input_nodes in total
        nodes: str = "auto"
        max_input_nodes: int = 64
        n_nodes: int = 32          # p, the number of node queries
        dim: int = 64              # token width d
        hidden: int = 64
        vector_tokens: int = 4     # tokens per vector modality
        render_text: bool = False  # text visualisation: captions rendered with a fixed font, read by the vision tower
        tau: float = 0.1           # InfoNCE temperature
        align_weight: float = 0.1  # at 1 the InfoNCE stalled the cross-entropy (digits-ms: CE 1.6 vs 0.6 at 3 epochs)
        ce_weight: float = 1.0
        modality_ce: bool = True   # the cross-entropy also on each modality's own node vector (class-level alignment)
        # penalties per class in scikit-learn's alpha units: lam = alpha * N / K in the §3.5 objective; None for
        # lam_shared means K/2 * lam_specific (§3.5's default, between lam_specific and K lam_specific)
        lam_specific: float = 0.05
        lam_shared: float | None = None
        tailoring_k: float = 0.0   # steepness k of P = 1 - g_k(W); 0 = uniform penalty
        # "fixed": the lambdas and k above (what Optuna tunes); "ebic": (k, lambda) by eBIC on warm-started paths
        # (§3.4; lam_shared / lam_specific fixes their ratio). Measured: eBIC and lam_specific = 0.05 classify
        # equally well on digits-ms and mfeat6; on ggm-synth's structure eBIC is far better (edge F1 0.84 / 0.61
        # shared / specific against 0.50 / 0.10)
        select: str = "fixed"
        n_lambdas: int = 10
        ebic_gamma: float = 0.5
        classifier: str = "joint"  # "joint": Theta_0 + Delta_k; "shared": the Theta_0 + diag(Delta_k) ablation
        segment_head: bool = True  # fit the dense head when the benchmark has an image and a mask modality
        max_fit_samples: int = 20000
        max_fit_patches: int = 40000   # patches for the segmentation fit, shared equally among the pixel classes
        rtol: float = 1e-4

        def __post_init__(self) -> None:
            _check_config(self)   # at config time, so that a bad option fails before anything trains

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        vectors = all(m.kind == "vector" for m in spec.modalities)
        width = sum(m.shape[0] for m in spec.modalities) if vectors else 0
        if cfg.nodes == "inputs" and not vectors:
            raise ValueError("cm_glasso: nodes=inputs needs a benchmark whose modalities are all vectors")
        self.mode = "inputs" if cfg.nodes == "inputs" or (cfg.nodes == "auto" and vectors
                                                             and width <= cfg.max_input_nodes) else "learned"
        self.n_classes = spec.n_classes
        if self.mode == "learned":
            self.distiller = NodeDistiller(spec.modalities, cfg.n_nodes, cfg.dim, cfg.hidden, cfg.vector_tokens,
                                           cfg.render_text)
            self.p = cfg.n_nodes
        else:
            self.p = width
        self.head = nn.Linear(self.p, spec.n_classes)
        self.graph: GraphStage | None = None
        self.seg: GraphStage | None = None
        self.modality_npn: dict[str, Nonparanormal] = {}
        self.fit_info: dict = {}
        self._seg_modalities = _segmentation_pair(spec) if cfg.segment_head and self.mode == "learned" else None

    # --- node variables -------------------------------------------------------------------------------------
    def node_variables(self, batch: dict) -> dict:
        if self.mode == "inputs":
            mask = batch["mask"]
            parts = [fill_missing(batch["data"][m], mask[:, j]).to(self.head.weight.dtype)
                     for j, m in enumerate(self.modality_names)]
            return {"joint": torch.cat(parts, 1), "per": {}, "attn": None}
        return self.distiller(batch)

    def loss(self, batch: dict) -> dict[str, Tensor]:
        out = self.node_variables(batch)
        label, mask = batch["label"], batch["mask"]
        ce = F.cross_entropy(self.head(standardise(out["joint"].float())), label)
        terms = {"ce": ce.detach()}
        if self.mode == "learned" and len(self.modality_names) > 1 and self.cfg.modality_ce:
            # each modality's own node vector through the same head, on the rows that observe it
            per = [F.cross_entropy(self.head(standardise(out["per"][m][mask[:, j]].float())), label[mask[:, j]])
                   for j, m in enumerate(self.modality_names) if int(mask[:, j].sum()) >= 2]
            if per:
                terms["ce_modality"] = torch.stack(per).mean().detach()
                ce = (ce + torch.stack(per).mean()) / 2
        loss = self.cfg.ce_weight * ce
        if self.mode == "learned" and len(self.modality_names) > 1:
            align = clip_alignment(out["per"], mask, self.modality_names, self.cfg.tau)
            loss = loss + self.cfg.align_weight * align
            terms["align"] = align.detach()
        return {"loss": loss, **terms}

    def _transform(self, x: Tensor, observed: Tensor | None = None) -> Tensor:
        """x -> x~ (NPN fitted by fit_after; identity before). Unobserved inputs map to 0, the NPN median."""
        if self.graph is None:
            return x.float() if observed is None else torch.where(observed, x, torch.zeros_like(x)).float()
        z = torch.from_numpy(self.graph.npn.transform(x.detach().double().cpu().numpy())).to(x.device)
        if observed is not None:
            z = torch.where(observed, z, torch.zeros_like(z))
        return z.float()

    def _input_observed(self, mask: Tensor) -> Tensor:
        """[B, p] which input variables are observed (inputs mode: a variable belongs to one modality)."""
        return torch.cat([mask[:, j: j + 1].expand(-1, m.shape[0]) for j, m in enumerate(self.spec.modalities)], 1)

    @torch.no_grad()
    def embed(self, batch: dict) -> dict[str, Tensor]:
        out = self.node_variables(batch)
        mask = batch["mask"]
        if self.mode == "inputs":
            return {"joint": self._transform(out["joint"], self._input_observed(mask))}
        emb = {"joint": self._transform(out["joint"])}
        for j, m in enumerate(self.modality_names):
            x = out["per"][m]
            npn = self.modality_npn.get(m)
            z = x.float() if npn is None else \
                torch.from_numpy(npn.transform(x.double().cpu().numpy())).to(x.device).float()
            emb[m] = torch.where(mask[:, j: j + 1], z, torch.full_like(z, float("nan")))
        return emb

    # --- the graph stage ------------------------------------------------------------------------------------
    @torch.no_grad()
    def _collect(self, train) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """(x [N, p], labels [N], complete [N], spatial prior W or None) over the training split."""
        was = self.training
        self.eval()
        device = self.head.weight.device
        dtype = self.head.weight.dtype
        xs, overlap, seen = [], None, 0
        per: dict[str, list[Tensor]] = {m: [] for m in self.modality_names}
        for batch in train.batches(512):
            b = {"data": {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device))
                          for k, v in batch["data"].items()},
                 "mask": batch["mask"].to(device), "label": batch["label"].to(device)}
            out = self.node_variables(b)
            xs.append(out["joint"].double().cpu())
            for j, m in enumerate(out["per"]):
                per[m].append(out["per"][m][b["mask"][:, j]].double().cpu())
            if out["attn"] is not None and seen < PRIOR_SAMPLES:
                o = attention_overlap(out["attn"].double())
                overlap = o if overlap is None else overlap + o
                seen += len(batch["label"])
        self.train(was)
        # each modality's node vector has its own marginals (its own tokens only): its own NPN maps make the
        # per-modality representations comparable with each other (retrieval) and with the joint one
        self.modality_npn = {m: Nonparanormal.fit(torch.cat(v).numpy()) for m, v in per.items()
                             if v and sum(len(t) for t in v) >= 2}
        prior = spatial_prior(overlap, seen).cpu().numpy() if overlap is not None else None
        return torch.cat(xs).numpy(), train.labels.numpy(), train.mask.all(1).numpy(), prior

    def fit_after(self, train) -> None:
        """§3.3-§3.7 on the frozen node variables of the training split: NPN, class statistics, the tailored
        joint graphical lasso (lambdas from the config, or (k, lambda) by eBIC), QDA; then the dense head."""
        x, y, complete, prior = self._collect(train)
        rows = _fit_rows(y, complete, self.n_classes, self.mode == "inputs")
        rows = _cap(rows, self.cfg.max_fit_samples, seed=0)
        self.graph = self._fit_graph(x[rows], y[rows], prior, np.arange(self.n_classes))
        self.fit_info = _describe(self.graph)
        if self._seg_modalities is not None:
            self.seg = self._fit_segmentation(train)
            self.fit_info.update({f"seg_{k}": v for k, v in _describe(self.seg).items()})

    def _fit_graph(self, x: np.ndarray, y: np.ndarray, prior, classes: np.ndarray) -> GraphStage:
        npn = Nonparanormal.fit(x)
        xt = npn.transform(x)
        counts, means, S = class_statistics(xt, y, len(classes))
        k_cls = len(classes)
        unit = counts.sum() / k_cls        # alpha -> lambda: sum_k n_k alpha / K (scikit-learn's alpha per class)
        lam2 = self.cfg.lam_specific * unit
        lam1 = (self.cfg.lam_shared if self.cfg.lam_shared is not None else k_cls / 2 * self.cfg.lam_specific) * unit
        device = self.head.weight.device if self.head.weight.device.type == "cuda" else None
        if self.cfg.select == "ebic":
            sel = select_tailored(S, counts, prior, K_GRID, self.cfg.n_lambdas, shared_ratio=lam1 / lam2,
                                  gamma=self.cfg.ebic_gamma, rtol=self.cfg.rtol, device=device)
            result, lam2, lam1, k = sel.result, sel.lam_specific, sel.lam_shared, sel.k
        else:
            k = self.cfg.tailoring_k if prior is not None else 0.0
            weights = tailored_weights(prior, k) if prior is not None and k > 0 else None
            result = solve_joint_glasso(S, counts, lam1, lam2, weights, rtol=self.cfg.rtol, device=device)
        if not result.converged:
            log.warning("cm_glasso: the ADMM stopped at max_iter=%d without converging (r=%.3g > %.3g or "
                        "s=%.3g > %.3g); using its last iterate", result.n_iter, result.primal_residual,
                        result.eps_primal, result.dual_residual, result.eps_dual)
        clf = GaussianClassifier.from_result(result, means, counts, self.cfg.classifier)
        return GraphStage(npn, result, clf, classes, lam2, lam1, k, prior)

    # --- outputs of the graph stage -------------------------------------------------------------------------
    def _fitted(self, what: str) -> GraphStage:
        if self.graph is None:
            raise RuntimeError(f"cm_glasso: {what} needs the graph stage; call fit_after(train) first")
        return self.graph

    @torch.no_grad()
    def predict(self, batch: dict) -> Tensor:
        """[B, K] class scores of §3.7 (log pi_k + log N(x~; mu_k, Theta_k^-1) up to a constant)."""
        g = self._fitted("predict")
        x = self.node_variables(batch)["joint"]
        observed = self._input_observed(batch["mask"]) if self.mode == "inputs" else None
        return g.classifier.scores(self._transform(x, observed).double()).float()

    def structure(self) -> dict | None:
        """The learned graphs (§3.8): Theta_0 [p, p], Delta_k [K, p, p], Omega_k = Theta_k [K, p, p]; ``nodes``
        says whether the p nodes are the benchmark's variables (modality order) or learned node queries."""
        if self.graph is None:
            return None
        r = self.graph.result
        return {"theta0": r.theta0, "delta": r.delta, "precision": r.precision, "nodes": self.mode,
                "prior": self.graph.prior}

    # --- dense segmentation (§3.7, reconstructed) -----------------------------------------------------------
    # Reconstructed choices (docs/cm_glasso-segmentation.md has the measurements behind each):
    # * a patch's features are its node variables cos(W_v t_n, Q_j) (NodeDistiller.patch_variables), not the
    #   attention logits: the logits say where a node looks, the values what it reads;
    # * the Gaussians are fitted on a class-balanced sample of patches (at most max_fit_patches / C per pixel
    #   class): background is ~93 % of the patches, and with one penalty lambda for every class (in units of
    #   N / C) a digit class's Delta_k was penalised 100-200 times harder per sample than background's, its
    #   density too flat to win any patch (version 1: every pixel background, 0.08 mIoU);
    # * the decision uses equal priors: mean IoU weighs every class equally, and the balanced sample still holds
    #   4-6 times more background than any digit.
    def _patch_features(self, batch: dict) -> Tensor:
        image = self._seg_modalities[0]
        j = self.modality_names.index(image)
        x = fill_missing(batch["data"][image], batch["mask"][:, j]).to(self.head.weight.dtype)
        tok = self.distiller.tokenizers[image](x) + self.distiller.positions[image] + self.distiller.kind_embed[j]
        return self.distiller.patch_variables(self.distiller.norm(tok))          # [B, N, p]

    @torch.no_grad()
    def _fit_segmentation(self, train) -> GraphStage | None:
        image, target = self._seg_modalities
        ji, jt = self.modality_names.index(image), self.modality_names.index(target)
        grid = self.distiller.tokenizers[image].grid
        n_pix = self.spec.modality(target).n_classes
        keep = (train.mask[:, ji] & train.mask[:, jt]).nonzero().squeeze(1)
        if not len(keep):
            return None
        was = self.training
        self.eval()
        device, dtype = self.head.weight.device, self.head.weight.dtype
        feats, labels = [], []
        for batch in train.subset(keep).batches(256):
            b = {"data": {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device))
                          for k, v in batch["data"].items()}, "mask": batch["mask"].to(device)}
            feats.append(self._patch_features(b).reshape(-1, self.p).double().cpu())
            labels.append(patch_labels(batch["data"][target], n_pix, grid).reshape(-1))
        self.train(was)
        x, y = torch.cat(feats).numpy(), torch.cat(labels).numpy()
        present = np.array([c for c in range(n_pix) if (y == c).sum() >= 2])
        if len(present) < 2:
            return None
        rows = balanced_rows(y, present, max(self.cfg.max_fit_patches // len(present), 2), seed=1)
        stage = self._fit_graph(x[rows], np.searchsorted(present, y[rows]), None, present)
        return dataclasses.replace(stage, classifier=stage.classifier.with_equal_priors())

    @torch.no_grad()
    def segment(self, batch: dict) -> Tensor:
        """[B, H, W] per-pixel classes: QDA (equal priors) on every patch's node variables, the class scores
        upsampled bilinearly to pixels (log-densities: measured better than upsampling posteriors)."""
        if self._seg_modalities is None:
            raise RuntimeError("cm_glasso: segment needs a benchmark with an image and a mask modality")
        if self.seg is None:
            raise RuntimeError("cm_glasso: segment needs the dense head; call fit_after(train) first")
        image, target = self._seg_modalities
        h, w = self.spec.modality(target).shape
        feats = self._patch_features(batch)                                      # [B, N, p]
        b, n, p = feats.shape
        z = torch.from_numpy(self.seg.npn.transform(feats.reshape(-1, p).double().cpu().numpy())).to(feats.device)
        scores = self.seg.classifier.scores(z).float().reshape(b, *self.distiller.tokenizers[image].grid, -1)
        up = F.interpolate(scores.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=False)
        classes = torch.as_tensor(self.seg.classes, device=up.device)
        return classes[up.argmax(1)]


# --- helpers -----------------------------------------------------------------------------------------------------
def _check_config(cfg) -> None:
    if cfg.nodes not in NODE_MODES:
        raise ValueError(f"cm_glasso: nodes must be one of {', '.join(NODE_MODES)}, got {cfg.nodes!r}")
    if cfg.select not in SELECTIONS:
        raise ValueError(f"cm_glasso: select must be one of {', '.join(SELECTIONS)}, got {cfg.select!r}")
    if cfg.classifier not in VARIANTS:
        raise ValueError(f"cm_glasso: classifier must be one of {', '.join(VARIANTS)}, got {cfg.classifier!r}")
    if cfg.lam_specific <= 0 or (cfg.lam_shared is not None and cfg.lam_shared <= 0):
        raise ValueError(f"cm_glasso: lam_specific and lam_shared must be > 0, got {cfg.lam_specific}, "
                         f"{cfg.lam_shared}")
    if cfg.tailoring_k < 0:
        raise ValueError(f"cm_glasso: tailoring_k must be >= 0, got {cfg.tailoring_k}")
    if cfg.n_nodes < 2 or cfg.dim < 1:
        raise ValueError(f"cm_glasso: n_nodes must be >= 2 and dim >= 1, got {cfg.n_nodes}, {cfg.dim}")


def _segmentation_pair(spec) -> tuple[str, str] | None:
    images = [m.name for m in spec.modalities if m.kind == "image"]
    masks = [m.name for m in spec.modalities if m.kind == "mask"]
    return (images[0], masks[0]) if images and masks else None


def patch_labels(mask: Tensor, n_classes: int, grid: tuple[int, int]) -> Tensor:
    """[B, H, W] pixel classes -> [B, h, w] the majority class of each patch of the token grid."""
    onehot = F.one_hot(mask.clamp(min=0), n_classes).permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(onehot, grid).argmax(1)


def _fit_rows(y: np.ndarray, complete: np.ndarray, n_classes: int, need_complete: bool) -> np.ndarray:
    """The training rows of the graph stage: the complete ones (the test split is complete, so its node variables
    follow theirs) when every class has enough of them; in inputs mode only complete rows carry every variable."""
    full = np.flatnonzero(complete)
    counts = np.bincount(y[full], minlength=n_classes)
    if need_complete or counts.min() >= MIN_COMPLETE_PER_CLASS:
        return full
    return np.arange(len(y))


def balanced_rows(y: np.ndarray, classes: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted row indices holding at most ``per_class`` rows of each class in ``classes`` (all of a smaller
    class), drawn without replacement with a seeded generator."""
    gen = np.random.default_rng(seed)
    picks = []
    for c in classes:
        rows = np.flatnonzero(y == c)
        picks.append(rows if len(rows) <= per_class else gen.choice(rows, size=per_class, replace=False))
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)


def _cap(rows: np.ndarray, cap: int, seed: int) -> np.ndarray:
    if len(rows) <= cap:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, size=cap, replace=False))


def _describe(stage: GraphStage | None) -> dict:
    if stage is None:
        return {}
    r = stage.result
    p = r.theta0.shape[0]
    iu = np.triu_indices(p, 1)
    return {"n_iter": r.n_iter, "converged": r.converged, "lam_specific": float(stage.lam_specific),
            "lam_shared": float(stage.lam_shared), "k": float(stage.k), "shared_edges": int((r.theta0[iu] != 0).sum()),
            "specific_edges": int((r.delta[:, iu[0], iu[1]] != 0).sum())}
