"""The one place objects are built from config sections, and the one results-folder default."""

from pathlib import Path

import pytest

from bench.build import benchmark_from, method_from
from bench.errors import BenchError
from bench.store import results_dir


def test_benchmark_from_takes_a_composed_section_and_refuses_unknown_options():
    b = benchmark_from("ggm-synth", {"name": "ggm-synth", "p": 7})  # a composed section carries its name
    assert b.cfg.p == 7
    with pytest.raises(BenchError, match=r"unknown benchmark option\(s\) nope; valid: .*\bp\b"):
        benchmark_from("ggm-synth", {"nope": 1})


def test_method_from_builds_for_the_benchmark_spec():
    bspec = benchmark_from("digits-ms").spec()
    m = method_from("mvae", bspec, {"name": "mvae", "latent_dim": 5})
    assert type(m).__name__ == "MVAE" and m.spec == bspec and m.cfg.latent_dim == 5
    with pytest.raises(BenchError, match="unknown method option"):
        method_from("mvae", bspec, {"latent": 3})


def test_results_dir_precedence(monkeypatch):
    monkeypatch.delenv("MMRL_RESULTS", raising=False)
    assert results_dir() == Path("results")
    monkeypatch.setenv("MMRL_RESULTS", "/tmp/env-results")
    assert results_dir() == Path("/tmp/env-results")
    assert results_dir(None, "cfg-results") == Path("cfg-results")
    assert results_dir("arg-results", "cfg-results") == Path("arg-results")
