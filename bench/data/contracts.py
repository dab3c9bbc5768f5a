"""The contracts every benchmark honours and every method may rely on.

A :class:`MultimodalDataset` holds one tensor per modality (first dimension = samples), integer labels and a
boolean ``mask`` [N, M] saying which modalities of each sample are observed. Unobserved float entries hold NaN and
unobserved integer entries (token ids, segmentation masks) hold -1, so a model that ignores the mask fails loudly
instead of learning from fake zeros.

A modality of a paper dataset may instead be lazy (:mod:`bench.data.lazy`): uint8 rows memory-mapped from the decode
cache plus an index, converted only for the rows a batch gathers. :meth:`MultimodalDataset.subset` and
:meth:`~MultimodalDataset.with_mask` keep it lazy (the hidden rows read as NaN / -1 when gathered) and
:meth:`~MultimodalDataset.batch` gathers it, on the training device when asked.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Literal

import torch

from bench.data.lazy import MISSING_INT, LazyRows, gather, rows

ModalityKind = Literal["image", "text", "vector", "mask"]
Likelihood = Literal["bernoulli", "gaussian", "laplace", "categorical"]

_DEFAULT_LIKELIHOOD: dict[str, str] = {
    "image": "bernoulli",
    "vector": "gaussian",
    "text": "categorical",
    "mask": "categorical",
}


@dataclass(frozen=True)
class Modality:
    """One modality of a benchmark.

    ``shape`` excludes the sample dimension: images and masks are (C, H, W) / (H, W), vectors (D,), text (L,) of
    token ids in ``[0, vocab_size)``. ``n_classes`` is the number of per-pixel classes of a ``mask`` modality.
    ``likelihood`` is the natural decoder likelihood (images in [0, 1] default to Bernoulli).
    """

    name: str
    kind: ModalityKind
    shape: tuple[int, ...]
    vocab_size: int | None = None
    n_classes: int | None = None
    likelihood: str = ""
    vocab: tuple[str, ...] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in _DEFAULT_LIKELIHOOD:
            raise ValueError(f"modality {self.name!r}: kind {self.kind!r} not in {sorted(_DEFAULT_LIKELIHOOD)}")
        if self.kind == "text" and not self.vocab_size:
            raise ValueError(f"text modality {self.name!r} needs vocab_size")
        if self.kind == "mask" and not self.n_classes:
            raise ValueError(f"mask modality {self.name!r} needs n_classes")
        if not self.likelihood:
            object.__setattr__(self, "likelihood", _DEFAULT_LIKELIHOOD[self.kind])
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    @property
    def is_integer(self) -> bool:
        return self.kind in ("text", "mask")


# Default metric groups, one definition for every benchmark. A method that cannot serve one (no ``predict``, no
# ``segment``) reads n/a there, as the generative metrics do for methods that do not generate.
REPRESENTATION_METRICS = ("probe_linear", "probe_mlp", "kmeans_acc", "kmeans_nmi", "kmeans_ari")
PREDICTION_METRICS = ("predict_acc",)     # the method's own classifier (CM-GLasso's QDA), beside the probes
SEGMENTATION_METRICS = ("segment_miou",)  # benchmarks with a per-pixel mask modality


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    modalities: tuple[Modality, ...]
    n_classes: int
    tasks: tuple[str, ...] = ("representation",)
    default_metrics: tuple[str, ...] = ()

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    def modality(self, name: str) -> Modality:
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(f"benchmark {self.name!r} has no modality {name!r}; it has {self.modality_names}")


@dataclass
class MultimodalDataset:
    """Tensors (or lazy rows, :mod:`bench.data.lazy`) for every modality, integer labels [N] and the observation
    mask [N, M] (True = observed)."""

    modalities: tuple[Modality, ...]
    data: dict[str, "torch.Tensor | LazyRows"]
    labels: torch.Tensor
    mask: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.labels)
        names = [m.name for m in self.modalities]
        if set(self.data) != set(names):
            raise ValueError(f"data keys {sorted(self.data)} != modalities {names}")
        for m in self.modalities:
            t = self.data[m.name]
            if t.shape[0] != n or tuple(t.shape[1:]) != m.shape:
                raise ValueError(f"modality {m.name!r}: tensor shape {tuple(t.shape)} != ({n}, *{m.shape})")
        if self.mask.shape != (n, len(names)) or self.mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool of shape ({n}, {len(names)}), got {self.mask.dtype} {tuple(self.mask.shape)}")

    @classmethod
    def complete(cls, modalities, data, labels, extras=None) -> "MultimodalDataset":
        labels = torch.as_tensor(labels, dtype=torch.long)
        mask = torch.ones(len(labels), len(modalities), dtype=torch.bool)
        return cls(tuple(modalities), dict(data), labels, mask, dict(extras or {}))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    def subset(self, idx: torch.Tensor) -> "MultimodalDataset":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return MultimodalDataset(
            self.modalities,
            {k: rows(v, idx) for k, v in self.data.items()},
            self.labels[idx],
            self.mask[idx],
            {k: (v[idx] if isinstance(v, torch.Tensor) and len(v) == len(self) else v) for k, v in self.extras.items()},
        )

    def with_mask(self, mask: torch.Tensor) -> "MultimodalDataset":
        """A copy observing only ``mask``; unobserved entries are overwritten (NaN / -1), never left as data."""
        data = {}
        for j, m in enumerate(self.modalities):
            missing = ~mask[:, j]
            if isinstance(self.data[m.name], LazyRows):  # marked, not written: the rows stay unread
                data[m.name] = self.data[m.name].with_missing(missing)
                continue
            t = self.data[m.name].clone()
            if missing.any():
                if t.is_floating_point():
                    t[missing] = float("nan")
                else:
                    t[missing] = MISSING_INT
            data[m.name] = t
        return dataclasses.replace(self, data=data, mask=mask.clone())

    def batch(self, idx: torch.Tensor, device: torch.device | str | None = None) -> dict[str, Any]:
        """The samples ``idx`` as ``{"data": {name: Tensor}, "mask": [B, M], "label": [B]}``. With ``device``
        every tensor is on it, a lazy modality converted there (bench.data.lazy.LazyRows.gather); without, on the
        CPU as before."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        if device is not None:
            device = torch.device(device)
        move = (lambda t: t) if device is None else (lambda t: t.to(device, non_blocking=True))  # noqa: E731
        return {
            "data": {k: gather(v, idx, device) for k, v in self.data.items()},
            "mask": move(self.mask[idx]),
            "label": move(self.labels[idx]),
        }

    def index_batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                      drop_last: bool = False) -> Iterator[torch.Tensor]:
        """The sample indices of each batch, in the order :meth:`batches` gathers them."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for s in range(0, stop, batch_size):
            yield order[s : s + batch_size]

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                drop_last: bool = False, device: torch.device | str | None = None) -> Iterator[dict[str, Any]]:
        """Batches as dicts ``{"data": {name: Tensor}, "mask": [B, M], "label": [B]}`` (indexing, no collation),
        on ``device`` when given (see :meth:`batch`)."""
        for idx in self.index_batches(batch_size, shuffle, generator, drop_last):
            yield self.batch(idx, device)


class Benchmark(abc.ABC):
    """Base class of a registered benchmark.

    Subclasses set ``Config`` (a dataclass of build options, all with defaults), ``version`` (bump it when a
    change alters the data), and implement :meth:`spec` and :meth:`build`. ``build`` returns the *complete*
    (train, test) pair; observation masks and the validation split are applied by :func:`bench.data.load_splits`.
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    Config: ClassVar[type] = type("Config", (), {})

    def __init__(self, cfg: Any = None):
        self.cfg = cfg if cfg is not None else self.Config()

    @abc.abstractmethod
    def spec(self) -> BenchmarkSpec:
        """Modalities, number of classes, supported tasks and default metrics."""

    @abc.abstractmethod
    def build(self) -> tuple[MultimodalDataset, MultimodalDataset]:
        """The complete (train, test) datasets, deterministic for a given config."""
