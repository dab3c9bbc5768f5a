"""An Optuna tune phase over each seed method's own search space (``sweeps/conf/search/<method>.yaml``): one sweep,
one small cell per method, and each study's trials hold every parameter of that space, with distinct values."""

import optuna
import pytest
import yaml

from sweeps.space import SEARCH_DIR
from test_sweep import sweep, write_suite

SEED_METHODS = ("pmrl", "dcmem", "cm_glasso")


def test_tune_phase_searches_each_seed_methods_space(tmp_path):
    suite = write_suite(tmp_path, methods=list(SEED_METHODS),
                        benchmarks=[{"name": "bc-3view", "overrides": ["trainer.batch_size=64"]}],
                        tune={"n_trials": 3, "epochs": 2, "grace_period": 1, "reduction_factor": 2})
    out = sweep(["--suite", str(suite), "--cpus", "2"], tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    storage = f"sqlite:///{tmp_path / 'results' / 'optuna.sqlite'}"
    studies = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    assert len(studies) == len(SEED_METHODS)
    for method in SEED_METHODS:
        (name,) = [n for n in studies if n.split(".")[1] == method]   # <suite>.<method>.<benchmark>.rho<r>.<hash>
        space = yaml.safe_load((SEARCH_DIR / f"{method}.yaml").read_text())
        trials = optuna.load_study(study_name=name, storage=storage).trials
        assert len(trials) == 3
        expected = {k.replace(".", "__") for k in space}
        for t in trials:
            assert set(t.params) == expected, (method, t.params)
        for key in expected:   # searched, not fixed: the three trials did not all draw the same value
            assert len({t.params[key] for t in trials}) > 1, (method, key)
