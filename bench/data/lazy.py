"""Modalities kept as the rows of a narrow source array (uint8 images, uint8 / int16 class masks) plus an index,
converted only for the rows a batch asks for.

A paper dataset's decoded arrays are memory-mapped from the decode cache (:mod:`bench.data.cache`); turning them into
whole float32 tensors costs four bytes per value for every row of every pairing copy. A :class:`LazyImages` instead
holds the source array (untouched: the memory map stays unread until rows are asked for), a LongTensor ``index`` of
the source rows making up the modality (the pairing tuples, a split's rows) and an optional boolean ``missing`` (the
rows the observation mask hides). Indexing it gathers those rows and converts them: ``x / 255`` in float32, exactly
:func:`bench.data.formats.base.to_float_images`'s values, with NaN in the missing rows. :class:`LazyInts` does the same
for integer modalities (token ids, segmentation masks), gathered as int64 with -1 in the missing rows.

``take`` (a subset), ``with_missing`` (an observation mask) and ``MultimodalDataset.subset`` / ``with_mask`` only
index the index: no pixel is read or copied. ``gather(idx, device)`` converts on the device: the narrow rows are
gathered into pinned memory, copied with ``non_blocking=True`` and converted there, so a batch crosses the bus at a
quarter of its float size.

Code written for whole tensors keeps working: torch functions (``torch.equal(x, y)``, ``torch.cat([x])``), tensor
methods (``x.mean()``, ``x.numpy()``), operators and ``np.asarray`` materialise the whole modality first. That costs
the float size of the whole modality, so the harness's own paths (training, evaluation, the classifiers) gather by
batch instead; :func:`rows` and :func:`chunks` are the helpers they use.
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Iterator

import numpy as np
import torch

#: rows converted at once when a whole modality is materialised: bounds the narrow temporary, not the output
CHUNK = 4096
MISSING_INT = -1  # an unobserved integer entry (bench.data.contracts re-exports it)


class LazyRows(ABC):
    """Rows ``source[index]`` of a narrow array, converted on access (see the module docstring).

    ``source``: an integer numpy array (an ``np.memmap`` included) [Nsrc, *shape], or any object with ``shape``,
    ``dtype`` and numpy fancy indexing by an int64 array (only ``source[rows]`` is ever read). ``index``: the source
    rows, LongTensor [N] (None: every row, in order). ``missing``: bool [N], the rows that read as the fill value.
    Subclasses set the output dtype, the fill value and the conversion."""

    dtype: ClassVar[torch.dtype]
    fill: ClassVar[float]
    _np_dtype: ClassVar[type]

    def __init__(self, source: Any, index: Any = None, missing: Any = None):
        self._check_source(source)
        n_src = int(source.shape[0])
        if index is None:
            index = torch.arange(n_src)
        index = torch.as_tensor(index)
        if index.ndim != 1 or index.dtype.is_floating_point or index.dtype == torch.bool:
            raise ValueError(f"{type(self).__name__}: index must be a 1-D integer tensor of source rows, got "
                             f"{index.dtype} of shape {tuple(index.shape)}")
        index = index.to(torch.long)
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= n_src):
            raise ValueError(f"{type(self).__name__}: index in [{int(index.min())}, {int(index.max())}] but the source "
                             f"has {n_src} rows (valid: 0 to {n_src - 1})")
        self._source, self.index = source, index
        self.missing = self._check_missing(missing, len(index))

    @classmethod
    def _view(cls, source: Any, index: torch.Tensor, missing: torch.Tensor | None, **attrs) -> "LazyRows":
        """A new view of an already checked source, index and mask (no check, nothing read)."""
        out = cls.__new__(cls)
        out._source, out.index, out.missing = source, index, missing
        out.__dict__.update(attrs)
        return out

    def _attrs(self) -> dict:
        """What a view copies besides source, index and missing (the image scale)."""
        return {}

    def _check_source(self, source: Any) -> None:
        shape, dtype = getattr(source, "shape", None), getattr(source, "dtype", None)
        if shape is None or dtype is None or len(shape) < 1:
            raise ValueError(f"{type(self).__name__}: source must be an array of rows [N, ...] (a numpy array or "
                             f"memory map), got {type(source).__name__}")
        if not np.issubdtype(np.dtype(dtype), np.integer):
            raise ValueError(f"{type(self).__name__}: source must hold integers (uint8 images, class or token ids), "
                             f"got dtype {dtype}")

    @staticmethod
    def _check_missing(missing: Any, n: int) -> torch.Tensor | None:
        if missing is None:
            return None
        missing = torch.as_tensor(missing)
        if missing.dtype != torch.bool or tuple(missing.shape) != (n,):
            raise ValueError(f"missing must be a bool tensor of shape ({n},) (one flag per row), got {missing.dtype} "
                             f"{tuple(missing.shape)}")
        return missing if bool(missing.any()) else None

    # --- what a tensor would say ---------------------------------------------------------------------------------
    @property
    def source(self) -> Any:
        return self._source

    @property
    def np_dtype(self) -> np.dtype:
        """The numpy dtype of the converted rows (float32 images, int64 ids)."""
        return np.dtype(self._np_dtype)

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self._source.shape[1:])

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.index), *self.row_shape))

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    def dim(self) -> int:
        return self.ndim

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    # answered without materialising: probes of these must not convert a whole dataset
    requires_grad = False
    is_cuda = False
    layout = torch.strided

    def is_floating_point(self) -> bool:
        return self.dtype.is_floating_point

    def numel(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        n_missing = 0 if self.missing is None else int(self.missing.sum())
        return (f"{type(self).__name__}(rows={len(self)}, row_shape={self.row_shape}, "
                f"source={tuple(self._source.shape)} {np.dtype(self._source.dtype)}, missing={n_missing})")

    # --- views: nothing read ---------------------------------------------------------------------------------------
    def take(self, idx: Any) -> "LazyRows":
        """The rows ``idx`` (int, slice, LongTensor, bool tensor, numpy array, list) as a new view."""
        index, missing, _ = self._select(idx)
        return self._view(self._source, index, self._check_missing(missing, len(index)), **self._attrs())

    def with_missing(self, missing: Any) -> "LazyRows":
        """A view where the rows flagged in ``missing`` (bool [N]) read as the fill value, besides those already
        missing: an observation mask hides entries, it never brings hidden ones back."""
        missing = self._check_missing(missing, len(self))
        if self.missing is not None:
            missing = self.missing if missing is None else missing | self.missing
        return self._view(self._source, self.index, missing, **self._attrs())

    # --- gathering -------------------------------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> torch.Tensor:
        """The rows ``key`` converted, on the CPU; a tuple key indexes the rows first, then the converted tensor."""
        if isinstance(key, tuple):
            if not key:
                return self.materialize()
            first, rest = key[0], key[1:]
            if first is Ellipsis or first is None:
                return self.materialize()[key]
            out = self[first]
            return out[rest] if _is_scalar_index(first) else out[(slice(None), *rest)]
        if key is Ellipsis or key is None:
            return self.materialize()[key]
        return self.gather(key)

    def gather(self, idx: Any, device: torch.device | str | None = None) -> torch.Tensor:
        """The rows ``idx`` converted, on ``device`` (default: CPU). On a CUDA device the narrow rows travel through
        pinned memory with ``non_blocking=True`` and are converted there; on the CPU this is ``self[idx]``."""
        index, missing, squeeze = self._select(idx)
        device = torch.device("cpu") if device is None else torch.device(device)
        if device.type == "cpu":
            out = torch.from_numpy(self._gather_cpu(index, missing))
        else:
            out = self._gather_device(index, missing, device)
        return out[0] if squeeze else out

    def materialize(self) -> torch.Tensor:
        """The whole modality as one tensor (the float size of every row: what lazy storage exists to avoid)."""
        return torch.from_numpy(self._gather_cpu(self.index, self.missing))

    def _gather_cpu(self, index: torch.Tensor, missing: torch.Tensor | None) -> np.ndarray:
        rows = index.numpy()
        out = np.empty((len(rows), *self.row_shape), dtype=self._np_dtype)
        if missing is None:
            for s in range(0, len(rows), CHUNK):
                self._convert(self._source[rows[s : s + CHUNK]], out[s : s + CHUNK])
            return out
        miss = missing.numpy()
        observed = np.flatnonzero(~miss)  # the hidden rows are never read
        for s in range(0, len(observed), CHUNK):
            pos = observed[s : s + CHUNK]
            part = np.empty((len(pos), *self.row_shape), dtype=self._np_dtype)
            self._convert(self._source[rows[pos]], part)
            out[pos] = part
        out[miss] = self.fill
        return out

    def _gather_device(self, index: torch.Tensor, missing: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        rows = index.numpy()
        pos = None if missing is None else np.flatnonzero(~missing.numpy())
        narrow = _host(np.ascontiguousarray(self._source[rows if pos is None else rows[pos]]), device)
        x = self._convert_torch(narrow.to(device, non_blocking=True))
        if pos is None:
            return x
        out = torch.full((len(rows), *self.row_shape), self.fill, dtype=self.dtype, device=device)
        out.index_copy_(0, _host(pos.astype(np.int64), device).to(device, non_blocking=True), x)
        return out

    @abstractmethod
    def _convert(self, narrow: np.ndarray, out: np.ndarray) -> None:
        """Write the source rows ``narrow``, converted to the output dtype, into ``out`` (reads on the host)."""

    @abstractmethod
    def _convert_torch(self, narrow: torch.Tensor) -> torch.Tensor:
        """The source rows ``narrow`` (already on the output device) converted to the output dtype."""

    def _select(self, key: Any) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        """(source rows, their missing flags or None, whether a single row was asked for) of a row key."""
        n = len(self)
        if _is_scalar_index(key):
            k = int(key)
            if not -n <= k < n:
                raise IndexError(f"row {k} is out of range for {type(self).__name__} of {n} rows")
            k %= n
            return self.index[k : k + 1], _part(self.missing, slice(k, k + 1)), True
        if isinstance(key, slice):
            return self.index[key], _part(self.missing, key), False
        if isinstance(key, (list, range)):
            key = torch.as_tensor(list(key), dtype=torch.long if len(key) == 0 else None)
        elif isinstance(key, np.ndarray):
            key = torch.from_numpy(np.ascontiguousarray(key))
        if not isinstance(key, torch.Tensor):
            raise TypeError(f"{type(self).__name__}: rows are selected by an int, slice, integer or bool tensor, "
                            f"numpy array or list, got {type(key).__name__}")
        key = key.cpu()
        if key.dtype == torch.bool:
            if tuple(key.shape) != (n,):
                raise IndexError(f"a boolean row mask must have shape ({n},), got {tuple(key.shape)}")
        elif key.dtype.is_floating_point or key.dtype.is_complex or key.ndim != 1:
            raise IndexError(f"rows are selected by a 1-D integer or bool index, got {key.dtype} of shape "
                             f"{tuple(key.shape)}")
        else:
            key = key.long()
        return self.index[key], _part(self.missing, key), False

    # --- whole-tensor code: materialise ---------------------------------------------------------------------------
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return func(*_materialized(args), **_materialized(kwargs or {}))

    def __array__(self, dtype=None, copy=None):
        out = self.materialize().numpy()
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getattr__(self, name: str):
        # a tensor method (x.mean(), x.numpy(), x.flatten(1)...) acts on the materialised tensor; private and dunder
        # names are refused so that copy, pickle and hasattr probes never materialise
        if name.startswith("_") or not hasattr(torch.Tensor, name):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self.materialize(), name)

    __hash__ = object.__hash__


def _binary(op):
    def method(self, other):
        return op(self.materialize(), _materialized(other))
    return method


def _reflected(op):
    def method(self, other):
        return op(_materialized(other), self.materialize())
    return method


for _name, _op in (("eq", operator.eq), ("ne", operator.ne), ("lt", operator.lt), ("le", operator.le),
                   ("gt", operator.gt), ("ge", operator.ge), ("add", operator.add), ("sub", operator.sub),
                   ("mul", operator.mul), ("truediv", operator.truediv), ("pow", operator.pow),
                   ("and", operator.and_), ("or", operator.or_)):
    setattr(LazyRows, f"__{_name}__", _binary(_op))
    if _name in ("add", "sub", "mul", "truediv", "pow", "and", "or"):
        setattr(LazyRows, f"__r{_name}__", _reflected(_op))
LazyRows.__neg__ = lambda self: -self.materialize()
LazyRows.__abs__ = lambda self: abs(self.materialize())
LazyRows.__invert__ = lambda self: ~self.materialize()


class LazyImages(LazyRows):
    """uint8 image rows read as float32 ``x / scale`` (``x / 255``: values in [0, 1]), NaN where missing."""

    dtype = torch.float32
    fill = float("nan")
    _np_dtype = np.float32

    def __init__(self, source: Any, index: Any = None, missing: Any = None, scale: float = 255.0):
        super().__init__(source, index, missing)
        if np.dtype(source.dtype) != np.uint8:
            raise ValueError(f"LazyImages: source must be uint8 (decoded images), got dtype {source.dtype}")
        if not float(scale) > 0:
            raise ValueError(f"LazyImages: scale must be > 0 (255 maps uint8 to [0, 1]), got {scale}")
        self.scale = float(scale)

    def _attrs(self) -> dict:
        return {"scale": self.scale}

    def _convert(self, narrow: np.ndarray, out: np.ndarray) -> None:
        # the ufunc of to_float_images: one float32 division per value, so the values are bit-identical
        np.divide(narrow, np.float32(self.scale), out=out, dtype=np.float32)

    def _convert_torch(self, narrow: torch.Tensor) -> torch.Tensor:
        # a 0-d tensor on the device, not a Python number: CUDA multiplies by the reciprocal of a scalar divisor,
        # which can differ from x / 255 in the last bit
        return narrow.to(torch.float32).div_(torch.full((), self.scale, dtype=torch.float32, device=narrow.device))


class LazyInts(LazyRows):
    """Integer rows (segmentation masks, token ids) stored narrow and read as int64, -1 where missing."""

    dtype = torch.long
    fill = MISSING_INT
    _np_dtype = np.int64

    def _convert(self, narrow: np.ndarray, out: np.ndarray) -> None:
        out[...] = narrow

    def _convert_torch(self, narrow: torch.Tensor) -> torch.Tensor:
        return narrow.to(torch.long)


# --- helpers ---------------------------------------------------------------------------------------------------
def is_lazy(t: Any) -> bool:
    return isinstance(t, LazyRows)


def rows(t: Any, idx: Any) -> Any:
    """The rows ``idx`` of a modality: a lazy view for a lazy modality (nothing read), ``t[idx]`` for a tensor."""
    return t.take(idx) if isinstance(t, LazyRows) else t[idx]


def gather(t: Any, idx: Any, device: torch.device | None = None) -> torch.Tensor:
    """The rows ``idx`` of a modality as a tensor on ``device`` (None: where ``t`` is, the CPU for a lazy one).
    A tensor is indexed then moved as ``bench.train.loop.to_device`` moves it."""
    if isinstance(t, LazyRows):
        return t.gather(idx, device)
    out = t[idx]
    return out if device is None else out.to(device, non_blocking=True)


def chunks(t: Any, size: int = CHUNK) -> Iterator[torch.Tensor]:
    """A modality's rows as consecutive tensors of at most ``size`` rows (whole tensors are sliced, not copied)."""
    for s in range(0, len(t), size):
        yield t[s : s + size]


def materialized(t: Any) -> torch.Tensor:
    """A modality as one tensor (a lazy one converted whole)."""
    return t.materialize() if isinstance(t, LazyRows) else t


def _materialized(obj: Any) -> Any:
    if isinstance(obj, LazyRows):
        return obj.materialize()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialized(x) for x in obj)
    if isinstance(obj, dict):
        return {k: _materialized(v) for k, v in obj.items()}
    return obj


def _is_scalar_index(key: Any) -> bool:
    if isinstance(key, (bool, np.bool_)):
        return False
    if isinstance(key, (int, np.integer)):
        return True
    return isinstance(key, torch.Tensor) and key.ndim == 0 and key.dtype != torch.bool \
        and not key.dtype.is_floating_point


def _part(missing: torch.Tensor | None, key: Any) -> torch.Tensor | None:
    return None if missing is None else missing[key]


def _host(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A CPU tensor of ``a``, in pinned memory when it is bound for a CUDA device (so that ``non_blocking`` copies
    are asynchronous; torch's pinned allocator keeps the block until the copy is done)."""
    t = torch.from_numpy(a)
    return t.pin_memory() if device.type == "cuda" else t


def narrow_ints(t: torch.Tensor | np.ndarray) -> LazyInts:
    """Integer rows (token ids, class masks) as a :class:`LazyInts` over the narrowest integer type holding them:
    int64 token ids of a small vocabulary take 1/8 or 1/4 of the memory and read back identical."""
    a = t.numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    for dtype in (np.uint8, np.int16, np.int32, np.int64):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return LazyInts(np.ascontiguousarray(a, dtype=dtype))
    raise ValueError(f"narrow_ints: values in [{lo}, {hi}] do not fit in int64")
