"""Evaluation metrics: clustering, representation probes, retrieval and FID.

Each module holds plain functions on arrays; metric registration lives in :mod:`bench.eval.metrics`.
"""


class NotApplicable(Exception):
    """The method or benchmark cannot serve this metric; recorded as not applicable, never as zero."""
