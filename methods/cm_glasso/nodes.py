"""CM-GLasso's encoder substitute and cross-attention node distillation (docs/methods.md §3.2) [reconstructed].

No pretrained vision-language model is available offline, so SigLIP 2 is replaced by small towers trained from
scratch that turn each modality into tokens of one width d:

* image [C, H, W]: three convolutions (stride 1, 2, 2) -> an (H/4) x (W/4) grid of patch tokens (a token is a 4x4
  pixel patch, which is what the dense segmentation head of §3.7 classifies);
* mask [H, W] (per-pixel classes as an input modality): one-hot, then the image tower;
* text [L]: token embedding + position + one convolution -> L tokens; or, with ``render_text``, the caption rendered
  into an image with a fixed font and read by the image modality's tower (``methods/cm_glasso/render.py``);
* vector [D]: an MLP -> ``vector_tokens`` tokens.

Every token gets a learned position and modality embedding. p node queries Q [p, d] attend over the tokens of the
*observed* modalities (one single-head cross-attention layer, unobserved tokens masked out):
A = softmax(Q W_q (T W_k)^T / sqrt(d)) [p, N], H = A T W_v [p, d], and the scalar node variable is
x_j = cos(H_j, Q_j). The per-modality variables x^m are the same computation over modality m's tokens alone.

Training (§3.2): cross-entropy of a linear classifier on x plus a CLIP-style symmetric InfoNCE between the
modalities' node vectors on the samples that observe both (the "alignment on paired data").

Spatial prior (§3.2): W_ij = mean over samples of sum_n min(A_in, A_jn), the overlap of two nodes' attention
maps, divided by its largest off-diagonal value so that it lies in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.data.contracts import Modality
from bench.nn.modules import fill_missing
from methods.cm_glasso.render import RenderedTextTokens


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


class ImageTokens(nn.Module):
    """[B, C, H, W] -> [B, h w, d] patch tokens on the grid (h, w) = ``grid`` (about H/4 x W/4)."""

    def __init__(self, channels: int, h: int, w: int, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden // 2, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(hidden // 2, hidden, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(hidden, dim, 4, 2, 1),
        )
        self.in_shape = (channels, h, w)
        self.grid = tuple(_conv_out(_conv_out(_conv_out(s, 3, 1, 1), 4, 2, 1), 4, 2, 1) for s in (h, w))
        self.n_tokens = self.grid[0] * self.grid[1]

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten(2).transpose(1, 2)


class MaskTokens(ImageTokens):
    def __init__(self, modality: Modality, dim: int, hidden: int):
        h, w = modality.shape
        self.n_classes = int(modality.n_classes)
        super().__init__(self.n_classes, h, w, dim, hidden)

    def forward(self, x: Tensor) -> Tensor:
        onehot = F.one_hot(x.clamp(min=0), self.n_classes).permute(0, 3, 1, 2).to(self.net[0].weight.dtype)
        return super().forward(onehot)


class TextTokens(nn.Module):
    def __init__(self, modality: Modality, dim: int, hidden: int):
        super().__init__()
        (self.n_tokens,) = modality.shape
        self.embed = nn.Embedding(int(modality.vocab_size), dim)
        self.conv = nn.Conv1d(dim, dim, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embed(x.clamp(min=0))
        return h + self.conv(F.relu(h).transpose(1, 2)).transpose(1, 2)


class VectorTokens(nn.Module):
    def __init__(self, modality: Modality, dim: int, hidden: int, n_tokens: int):
        super().__init__()
        (d_in,) = modality.shape
        self.n_tokens, self.dim = n_tokens, dim
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, n_tokens * dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).view(len(x), self.n_tokens, self.dim)


RENDER_SIZE = (32, 32)   # the rendered caption's size when the benchmark has no image modality to share a tower with


def build_tokenizers(modalities: tuple[Modality, ...], dim: int, hidden: int, vector_tokens: int,
                     render_text: bool = False) -> dict[str, nn.Module]:
    """One tokenizer per modality; with ``render_text`` every text modality is rendered into an image and read by
    one vision tower: the first image modality's (shared weights), else one grey tower of its own."""
    out = {m.name: build_tokenizer(m, dim, hidden, vector_tokens)
           for m in modalities if not (render_text and m.kind == "text")}
    texts = [m for m in modalities if render_text and m.kind == "text"]
    if texts:
        image = next((m.name for m in modalities if m.kind == "image"), None)
        tower = out[image] if image else ImageTokens(1, *RENDER_SIZE, dim, hidden)
        for m in texts:
            out[m.name] = RenderedTextTokens(tuple(m.vocab or ()) or tuple(map(str, range(m.vocab_size))), tower)
    return {m.name: out[m.name] for m in modalities}


def build_tokenizer(modality: Modality, dim: int, hidden: int, vector_tokens: int) -> nn.Module:
    if modality.kind == "image":
        c, h, w = modality.shape
        return ImageTokens(c, h, w, dim, hidden)
    if modality.kind == "mask":
        return MaskTokens(modality, dim, hidden)
    if modality.kind == "text":
        return TextTokens(modality, dim, hidden)
    return VectorTokens(modality, dim, hidden, vector_tokens)


class NodeDistiller(nn.Module):
    """Tokenizers for every modality and the p node queries with their cross-attention layer."""

    def __init__(self, modalities: tuple[Modality, ...], n_nodes: int, dim: int, hidden: int, vector_tokens: int,
                 render_text: bool = False):
        super().__init__()
        self.names = tuple(m.name for m in modalities)
        self.tokenizers = nn.ModuleDict(build_tokenizers(modalities, dim, hidden, vector_tokens, render_text))
        self.positions = nn.ParameterDict({
            m.name: nn.Parameter(0.02 * torch.randn(self.tokenizers[m.name].n_tokens, dim)) for m in modalities})
        self.kind_embed = nn.Parameter(0.02 * torch.randn(len(modalities), dim))
        self.queries = nn.Parameter(torch.randn(n_nodes, dim) / math.sqrt(dim))
        self.w_q = nn.Linear(dim, dim, bias=False)
        self.w_k = nn.Linear(dim, dim, bias=False)
        self.w_v = nn.Linear(dim, dim, bias=False)
        self.norm = nn.LayerNorm(dim)
        self.scale = 1.0 / math.sqrt(dim)

    def tokens(self, batch: dict) -> dict[str, Tensor]:
        """Per modality [B, N_m, d]; unobserved rows are computed from the zero fill and must be masked."""
        mask = batch["mask"]
        out = {}
        for j, m in enumerate(self.names):
            x = fill_missing(batch["data"][m], mask[:, j])
            if x.is_floating_point():
                x = x.to(self.queries.dtype)
            out[m] = self.norm(self.tokenizers[m](x) + self.positions[m] + self.kind_embed[j])
        return out

    def attend(self, tokens: Tensor, visible: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """tokens [B, N, d], visible [B, N] bool (every row has at least one) -> (x [B, p], logits [B, p, N],
        attention A [B, p, N])."""
        q = self.w_q(self.queries)                                              # [p, d]
        logits = torch.einsum("pd,bnd->bpn", q, self.w_k(tokens)) * self.scale
        masked = logits.masked_fill(~visible.unsqueeze(1), float("-inf"))
        attn = torch.softmax(masked, dim=-1)
        h = attn @ self.w_v(tokens)                                             # [B, p, d]
        x = F.cosine_similarity(h, self.queries.unsqueeze(0).expand_as(h), dim=-1)
        return x, logits, attn

    def forward(self, batch: dict) -> dict:
        """{"joint": x [B, p] over every observed modality, "attn": A [B, p, N], "per": {m: x^m [B, p]},
        "tokens": {m: [B, N_m, d]}}; x^m rows of unobserved modalities are meaningless (zero-fill input)."""
        toks = self.tokens(batch)
        mask = batch["mask"]
        all_tokens = torch.cat([toks[m] for m in self.names], 1)
        visible = torch.cat([mask[:, j: j + 1].expand(-1, toks[m].shape[1]) for j, m in enumerate(self.names)], 1)
        joint, _, attn = self.attend(all_tokens, visible)
        per = {}
        for m in self.names:
            ones = torch.ones(toks[m].shape[:2], dtype=torch.bool, device=mask.device)
            per[m] = self.attend(toks[m], ones)[0]
        return {"joint": joint, "attn": attn, "per": per, "tokens": toks}

    def patch_variables(self, tokens: Tensor) -> Tensor:
        """[B, N, d] tokens of one modality -> [B, N, p]: x_nj = cos(W_v t_n, Q_j), the value node j would take if
        its attention fell on patch n alone (A_j = one-hot at n), i.e. the node variables of a single patch (§3.7).

        Why not the attention logits (the other reading of §3.7, used in version 1): the logits are trained only to
        decide *where* a node looks, the values W_v t_n carry *what* it reads there; they are also nearly collinear
        (smallest/largest singular value 6e-4 against 2e-2), directions any shrinkage of the precision blurs. With the
        same fit, digits-seg mIoU was 0.09-0.11 on the logits and 0.27-0.28 on these
        (docs/cm_glasso-segmentation.md)."""
        return F.normalize(self.w_v(tokens), dim=-1) @ F.normalize(self.queries, dim=-1).t()


def standardise(x: Tensor, rows: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """x minus its batch mean, over its batch standard deviation, per node (statistics from ``rows`` only).

    Why: a node variable is a cosine whose value is mostly the node's own offset, common to every sample; the
    sample-to-sample part a classifier or a contrastive loss must see is a small fraction of it (measured std 0.2
    around offsets, and a linear head on raw x learned nothing in 5 epochs)."""
    ref = x if rows is None else x[rows]
    mu = ref.mean(0, keepdim=True)
    sd = ref.var(0, unbiased=False, keepdim=True).add(eps).sqrt()
    return (x - mu) / sd


def clip_alignment(per: dict[str, Tensor], mask: Tensor, names: tuple[str, ...], tau: float) -> Tensor:
    """Symmetric InfoNCE (CLIP) between every pair of modalities' node vectors (standardised over the rows that
    observe both, then L2-normalised); the mean over pairs with at least two such rows (0 if none)."""
    terms = []
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            both = mask[:, a] & mask[:, b]
            if int(both.sum()) < 2:
                continue
            za = F.normalize(standardise(per[names[a]][both].float()), dim=-1)
            zb = F.normalize(standardise(per[names[b]][both].float()), dim=-1)
            logits = za @ zb.t() / tau
            target = torch.arange(len(za), device=za.device)
            terms.append(0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)))
    if not terms:
        return next(iter(per.values())).new_zeros(()).float()
    return torch.stack(terms).mean()


def attention_overlap(attn: Tensor) -> Tensor:
    """[B, p, N] attention maps -> [p, p] sum over samples of sum_n min(A_in, A_jn) (divide by B for the mean).
    One node at a time: the broadcast [B, p, p, N] would need hundreds of MB for a batch of image tokens."""
    return torch.stack([torch.minimum(attn, attn[:, j: j + 1]).sum(-1).sum(0) for j in range(attn.shape[1])])


def spatial_prior(overlap_sum: Tensor, n: int) -> Tensor:
    """The §3.2 prior W from accumulated overlaps: the mean over n samples, divided by its largest off-diagonal
    entry (so W is in [0, 1]; the diagonal, a node with itself, is set to 1)."""
    w = overlap_sum / max(n, 1)
    p = w.shape[0]
    off = ~torch.eye(p, dtype=torch.bool, device=w.device)
    top = w[off].max() if p > 1 else w.new_tensor(1.0)
    w = w / top.clamp_min(torch.finfo(w.dtype).tiny)
    return w.masked_fill(~off, 1.0).clamp(0.0, 1.0)
