"""Text visualisation (docs/methods.md §3.2, CM-GLasso's option for text) [reconstructed]: a caption is rendered into an
image with a fixed font and read by the same vision tower as the image modality, so that one tower encodes every
modality and the node queries attend over patches of both.

The font is Pillow's built-in bitmap font (``ImageFont.load_default_imagefont``): no font file, no download, the
same pixels for a given Pillow version. Each vocabulary entry is rendered once into a glyph cell; a caption is its
tokens' cells laid out on a near-square grid, resized to the vision tower's input size (area averaging) and
repeated over its channels. Special tokens (``<pad>``, ``<eos>``, ...) render blank, so padding draws nothing.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor, nn

MAX_CELL_WIDTH = 64   # px: longer words are cut, so one rare long word cannot shrink every other glyph


def _special(token: str) -> bool:
    return len(token) >= 2 and token.startswith("<") and token.endswith(">")


def glyph_table(vocab: tuple[str, ...]) -> Tensor:
    """[V, h, w] float in [0, 1]: each vocabulary entry drawn in white on black in a cell of one common size."""
    font = ImageFont.load_default_imagefont()
    shown = ["" if _special(t) else str(t) for t in vocab]
    boxes = [font.getbbox(t) if t else (0, 0, 0, 0) for t in shown]
    h = max([b[3] for b in boxes] + [font.getbbox("Ag")[3]]) + 2
    w = min(max([b[2] for b in boxes] + [1]) + 2, MAX_CELL_WIDTH)
    cells = np.zeros((len(vocab), h, w), dtype=np.float32)
    for i, text in enumerate(shown):
        if text:
            img = Image.new("L", (w, h), 0)
            ImageDraw.Draw(img).text((1, 1), text, fill=255, font=font)
            cells[i] = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(cells)


def grid_shape(n_tokens: int, cell_h: int, cell_w: int) -> tuple[int, int]:
    """(rows, cols) of a near-square page of ``n_tokens`` cells."""
    cols = max(1, math.ceil(math.sqrt(n_tokens * cell_h / cell_w)))
    return math.ceil(n_tokens / cols), cols


def render(ids: Tensor, glyphs: Tensor, size: tuple[int, int]) -> Tensor:
    """Token ids [B, L] (negative = missing, drawn blank) -> grey images [B, 1, H, W] with (H, W) = ``size``."""
    b, length = ids.shape
    _, h, w = glyphs.shape
    rows, cols = grid_shape(length, h, w)
    cells = glyphs[ids.clamp(min=0)] * (ids >= 0)[..., None, None].to(glyphs.dtype)       # [B, L, h, w]
    cells = torch.cat([cells, cells.new_zeros(b, rows * cols - length, h, w)], 1)
    page = cells.view(b, rows, cols, h, w).permute(0, 1, 3, 2, 4).reshape(b, 1, rows * h, cols * w)
    return F.interpolate(page, size=size, mode="area")


class RenderedTextTokens(nn.Module):
    """Text [B, L] -> the shared vision tower's patch tokens of the rendered caption (``tower``: an image tokenizer
    with attributes ``in_shape`` = (C, H, W), ``grid`` and ``n_tokens``)."""

    def __init__(self, vocab: tuple[str, ...], tower: nn.Module):
        super().__init__()
        self.tower = tower
        self.register_buffer("glyphs", glyph_table(vocab), persistent=False)
        self.grid, self.n_tokens = tower.grid, tower.n_tokens

    def forward(self, x: Tensor) -> Tensor:
        c, h, w = self.tower.in_shape
        img = render(x, self.glyphs, (h, w)).to(self.tower.net[0].weight.dtype)
        return self.tower(img.expand(-1, c, -1, -1))
