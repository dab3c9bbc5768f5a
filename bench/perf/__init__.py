"""``python -m bench perf VERB``: performance benchmarks, each measured against a baseline in the same process and
reported as a ratio (shared machines vary by about 15 % from one run to the next, so absolute numbers from
different runs are not comparable; docs/performance.md).

One module per verb, each registering itself in :data:`bench.registry.PERF_VERBS` with its options and the function
that measures and prints: :mod:`~bench.perf.train` (engine loop against a bare PyTorch loop),
:mod:`~bench.perf.data` (the paper-dataset readers, first against cached load) and :mod:`~bench.perf.scale` (one
worker against N data-parallel workers); :mod:`~bench.perf.common` holds what they share. Verbs that measure code
outside the engine live with that code and register the same way: ``glasso`` in :mod:`methods.cm_glasso.perf`,
``sweep`` in :mod:`sweeps.perf`. Importing this package registers the engine's verbs.
"""

from bench.perf import data, scale, train  # noqa: F401
