"""mmrl-bench: a benchmarking harness for multimodal representation learning.

The engine (this package) knows no particular method or benchmark: they register themselves in
:mod:`bench.registry` and are found by name.
"""

__version__ = "0.1.0"
