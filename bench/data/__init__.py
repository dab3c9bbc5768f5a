"""Data contracts: modalities, benchmarks, multimodal datasets with observation masks, and splits."""

from bench.data.contracts import Benchmark, BenchmarkSpec, Modality, MultimodalDataset
from bench.data.splits import apply_observation, load_splits, stratified_split

__all__ = [
    "Benchmark",
    "BenchmarkSpec",
    "Modality",
    "MultimodalDataset",
    "apply_observation",
    "load_splits",
    "stratified_split",
]
