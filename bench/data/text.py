"""Dependency-free tokenisation for the embedded text modalities.

Word level follows the CUB-captions convention of docs/datasets.md §1.4: special tokens ``<exc>=0, <pad>=1, <eos>=2``,
sequences truncated to ``max_len - 1`` tokens, then ``<eos>``, then ``<pad>``; words below ``min_count`` map to
``<exc>``. Character level (MNIST-SVHN-Text style) uses a fixed alphabet with index 0 = space/padding.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

SPECIALS = ("<exc>", "<pad>", "<eos>")
EXC, PAD, EOS = 0, 1, 2
ALPHABET = " abcdefghijklmnopqrstuvwxyz0123456789.,-"
_WORD = re.compile(r"[a-z0-9]+|[.,!?;-]")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Vocabulary:
    itos: tuple[str, ...]

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> "Vocabulary":
        counts = Counter(w for t in texts for w in words(t))
        # sorted by (-count, word) so that the vocabulary does not depend on the order texts arrive in
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(SPECIALS + tuple(kept))

    def __len__(self) -> int:
        return len(self.itos)

    @property
    def stoi(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.itos)}

    def encode(self, texts: Sequence[str], max_len: int) -> torch.Tensor:
        stoi = self.stoi
        out = torch.full((len(texts), max_len), PAD, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [stoi.get(w, EXC) for w in words(t)][: max_len - 1] + [EOS]
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: torch.Tensor) -> list[str]:
        res = []
        for row in ids.tolist():
            toks = []
            for i in row:
                if i in (EOS, PAD) or i < 0:
                    break
                toks.append(self.itos[i])
            res.append(" ".join(toks))
        return res


def encode_chars(texts: Sequence[str], length: int, alphabet: str = ALPHABET) -> torch.Tensor:
    """Character ids [N, length]; unknown characters raise, since the embedded texts are generated."""
    index = {c: i for i, c in enumerate(alphabet)}
    out = torch.zeros(len(texts), length, dtype=torch.long)
    for i, t in enumerate(texts):
        if len(t) > length:
            raise ValueError(f"text {t!r} longer than {length}")
        out[i, : len(t)] = torch.tensor([index[c] for c in t])
    return out
