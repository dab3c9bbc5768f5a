"""``python -m bench perf``: the verbs come from the registry (bench.registry.PERF_VERBS), each with its own options,
from the engine (bench/perf/), the method that owns the code measured (methods/cm_glasso/perf.py) and sweeps
(sweeps/perf.py); the parser of the other commands loads none of them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import _perf_verbs, main
from bench.registry import PERF_VERBS, PerfVerb

ROOT = Path(__file__).resolve().parents[1]


def test_every_verb_is_registered_by_its_own_module():
    where = {name: verb.run.__module__ for name, verb in _perf_verbs().items()}
    assert where == {"train": "bench.perf.train", "data": "bench.perf.data", "scale": "bench.perf.scale",
                     "glasso": "methods.cm_glasso.perf", "sweep": "sweeps.perf"}


def test_building_the_parser_loads_no_verb():
    """Loading the verbs imports the methods (seconds): only ``perf`` itself may pay for that."""
    code = ("import sys; from bench.cli import build_parser; "
            "build_parser().parse_args(['perf', 'glasso', '--repeats', '2']); "
            "print(sorted(m for m in ('torch', 'methods', 'sweeps', 'bench.perf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_perf_help_lists_every_verb(capsys):
    with pytest.raises(SystemExit) as e:
        main(["perf", "--help"])
    assert e.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split()[0] for line in lines[lines.index(next(x for x in lines if x.startswith("verbs"))) + 1:]}
    assert listed == set(_perf_verbs().names())


def test_a_verb_gets_its_own_options_and_the_perf_folder(tmp_path, monkeypatch):
    seen = {}

    def add_arguments(parser):
        parser.add_argument("--size", type=int, default=1)

    def run(args, console, out_dir):
        seen.update(size=args.size, out_dir=out_dir)

    PERF_VERBS.names()  # the real verbs first, so that the stand-in is not overwritten by their loading
    monkeypatch.setitem(PERF_VERBS._items, "stand-in", PerfVerb("stand-in", "a test verb", add_arguments, run))
    monkeypatch.setenv("MMRL_RESULTS", str(tmp_path))
    assert main(["perf", "stand-in", "--size", "3"]) == 0
    assert seen == {"size": 3, "out_dir": tmp_path / "perf"}


def test_bad_verbs_and_options_exit_2(capsys):
    assert main(["perf", "glasso-solver"]) == 2
    assert "unknown perf verb 'glasso-solver'; did you mean 'glasso'?" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["perf", "glasso", "--runs", "3"])  # an option of another verb
    assert e.value.code == 2 and "unrecognized arguments: --runs 3" in capsys.readouterr().err


def test_perf_train_takes_method_and_benchmark_as_overrides():
    from bench.perf.train import split_overrides

    assert split_overrides(["method=dcmem", "method.k_samples=3", "benchmark=bc-3view", "trainer.lr=0.01"],
                           "mvae", "digits-ms") == ("dcmem", "bc-3view", ["method.k_samples=3", "trainer.lr=0.01"])
    assert split_overrides([], "mvae", "digits-ms") == ("mvae", "digits-ms", [])
    from bench.perf.train import shared_overrides

    # the baseline is timed at the same K, without the options it does not have
    assert shared_overrides(["method.k_samples=10", "method.beta_ib=2.0", "trainer.lr=0.01"], "mmvae_plus") == \
        ["method.k_samples=10", "trainer.lr=0.01"]
