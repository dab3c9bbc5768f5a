"""The evaluation context handed to every metric: the trained method, the splits, and lazily computed,
memoised embeddings (so that five metrics on the joint representation embed the test set once)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.contracts import BenchmarkSpec, MultimodalDataset
from bench.eval import NotApplicable


@dataclass
class EvalContext:
    method: Any
    spec: BenchmarkSpec
    train: MultimodalDataset
    test: MultimodalDataset
    cfg: dict
    seed: int
    device: torch.device = torch.device("cpu")
    cache_dir: Path | None = None   # where evaluation artefacts shared across runs live (e.g. trained classifiers)
    benchmark_key: str = ""         # name, version and config of the benchmark: keys artefacts of its data
    full_train: MultimodalDataset | None = None  # the complete training split (evaluation classifiers learn on it)
    _cache: dict = field(default_factory=dict, repr=False)

    def memo(self, key: Any, compute):
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def embeddings(self, split: str) -> dict[str, np.ndarray]:
        return self.memo(("embed", split), lambda: self._embed(getattr(self, split)))

    def labels(self, split: str) -> np.ndarray:
        return getattr(self, split).labels.numpy()

    def _embed(self, ds: MultimodalDataset) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {}
        self.method.eval()
        dtype = next(self.method.parameters()).dtype
        with torch.no_grad():
            for batch in ds.batches(int(self.cfg.get("batch_size", 512))):
                b = {"data": {k: (v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device))
                              for k, v in batch["data"].items()},
                     "mask": batch["mask"].to(self.device), "label": batch["label"].to(self.device)}
                for k, v in self.method.embed(b).items():
                    parts.setdefault(k, []).append(v.float().cpu().numpy())
        return {k: np.concatenate(v) for k, v in parts.items()}

    def joint(self, split: str) -> np.ndarray:
        emb = self.embeddings(split)
        if "joint" not in emb:
            raise NotApplicable("the method gives no joint representation")
        return emb["joint"]

    def modality_embeddings(self, split: str) -> dict[str, np.ndarray]:
        emb = self.embeddings(split)
        per = {m: emb[m] for m in self.spec.modality_names if m in emb}
        if len(per) < 2:
            raise NotApplicable("needs per-modality embeddings of at least two modalities")
        return per
