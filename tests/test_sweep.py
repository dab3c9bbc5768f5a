"""Sweeps end to end through Ray: the plan, resume after SIGKILL, a two-node cluster, tuning with ASHA, failures
and bad input. Every test starts (and stops) its own Ray with the CPUs it means to use."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from bench.errors import BenchError
from bench.store import ResultStore
from conftest import python
from sweeps.plan import make_plan
from sweeps.suite import load_suite

TINY = ["trainer.progress=false", "trainer.epochs=2", "eval.metrics=[probe_linear,kmeans_acc]",
        "eval.probe_max_train=500"]


def write_suite(tmp_path: Path, **kw) -> Path:
    suite = {"name": "t", "methods": ["mvae"], "benchmarks": [{"name": "digits-ms", "overrides": ["benchmark.variants=1"]}],
             "obs_ratios": [1.0], "seeds": [0], "overrides": TINY, "max_retries": 0, **kw}
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def sweep(args, tmp_path, timeout=600, **popen):
    env = {**os.environ, "MMRL_RESULTS": str(tmp_path / "results"), "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([python(), "-m", "bench", "sweep", *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=timeout, **popen)


def records(tmp_path) -> dict[str, float]:
    return {p.stem: p.stat().st_mtime_ns for p in (tmp_path / "results" / "runs").glob("*.parquet")}


def test_plan_lists_unregistered_methods_as_missing(tmp_path):
    plan = make_plan(load_suite(str(write_suite(tmp_path, methods=["mvae", "not_yet_a_method"]))))
    assert plan.missing_methods == ["not_yet_a_method"] and [c.method for c in plan.cells] == ["mvae"]


def test_quick_suite_plans_every_registered_method():
    plan = make_plan(load_suite("quick"))
    cells = {(c.method, c.benchmark, c.obs_ratio) for c in plan.cells}
    from bench.registry import METHODS

    every = {"untrained", "mvae", "mmvae_plus", "mopoe", "mvp", "pmrl", "dcmem", "cm_glasso"}
    registered = [m for m in sorted(every) if m in METHODS]
    assert len(cells) == len(registered) * 4 * 2
    assert set(plan.missing_methods) | set(registered) == every


def test_sweep_records_every_run_then_resumes_with_nothing_to_do(tmp_path):
    suite = write_suite(tmp_path, benchmarks=[{"name": "digits-ms", "overrides": ["benchmark.variants=1"]},
                                              {"name": "bc-3view"}], obs_ratios=[1.0, 0.5])
    first = sweep(["--suite", str(suite), "--cpus", "2"], tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(records(tmp_path)) == 4
    dry = sweep(["--suite", str(suite), "--dry-run"], tmp_path)
    assert dry.returncode == 0 and "4 done" in dry.stdout
    before = records(tmp_path)
    again = sweep(["--suite", str(suite), "--cpus", "2"], tmp_path)
    assert again.returncode == 0 and "0 trained, 4 already done" in again.stdout.replace("\n", " ")
    assert records(tmp_path) == before  # nothing trained twice


@pytest.mark.slow  # the default run kills a sweep in tests/test_faults.py, which also counts the trainings
def test_kill_midway_and_resume_trains_every_run_exactly_once(tmp_path):
    suite = write_suite(tmp_path, benchmarks=[{"name": "digits-ms", "overrides": ["benchmark.variants=1"]},
                                              {"name": "bc-3view"}, {"name": "mfeat6"}], obs_ratios=[1.0, 0.5],
                        seeds=[0])
    env = {**os.environ, "MMRL_RESULTS": str(tmp_path / "results"), "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen([python(), "-m", "bench", "sweep", "--suite", str(suite), "--cpus", "2"], env=env,
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and (tmp_path / "results" / "runs").exists() is False or len(records(tmp_path)) < 1:
        assert proc.poll() is None, "the sweep ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
    proc.wait()
    before = records(tmp_path)
    assert 1 <= len(before) < 6, "kill landed midway"
    resumed = sweep(["--suite", str(suite), "--cpus", "2"], tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = records(tmp_path)
    assert len(after) == 6  # nothing lost
    assert all(after[k] == v for k, v in before.items())  # nothing trained again
    index = ResultStore(tmp_path / "results").index_frame()
    assert (index["status"] == "done").sum() == 6


def test_sweep_on_a_two_node_cluster_through_address(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    os.environ["RAY_AUTH_MODE"] = "disabled"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        suite = write_suite(tmp_path, obs_ratios=[1.0, 0.5])
        out = sweep(["--suite", str(suite), "--address", cluster.address], tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        assert len(records(tmp_path)) == 2
        assert ray.is_initialized() is False  # the sweep ran in its own process and left the cluster up
    finally:
        cluster.shutdown()


def test_tuning_budget_prunes_with_asha_and_the_final_phase_uses_the_best(tmp_path):
    import optuna

    suite = write_suite(tmp_path, tune={"n_trials": 6, "epochs": 4, "grace_period": 1, "reduction_factor": 2},
                        search={"mvae": {"method.beta": {"loguniform": [0.05, 20.0]},
                                         "trainer.lr": {"loguniform": [1.0e-4, 3.0e-3]}}})
    out = sweep(["--suite", str(suite), "--cpus", "1"], tmp_path)  # one trial at a time: ASHA is deterministic
    assert out.returncode == 0, out.stdout + out.stderr
    storage = f"sqlite:///{tmp_path / 'results' / 'optuna.sqlite'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    states = [t.state.name for t in study.trials]
    assert len(states) == 6 and states.count("PRUNED") >= 1 and states.count("COMPLETE") >= 1, states
    index = ResultStore(tmp_path / "results").index_frame()
    assert (index["status"] == "pruned").sum() == states.count("PRUNED")
    store = ResultStore(tmp_path / "results")
    finals = [s for s in (store.get_spec(p.stem) for p in store.runs_dir.glob("*.parquet")) if s["phase"] == "final"]
    assert len(finals) == 1
    best = study.best_trial.params
    assert finals[0]["method"]["config"]["beta"] == pytest.approx(best["method__beta"])
    assert finals[0]["trainer"]["lr"] == pytest.approx(best["trainer__lr"])
    assert finals[0]["trainer"]["epochs"] == 2  # the final budget, not the tuning one
    # the sweep's own report has the study: its trial counts by state
    tuning = next((tmp_path / "results" / "report").glob("*/tuning.md")).read_text()
    assert study.study_name in tuning, tuning
    assert f"| {states.count('COMPLETE')} | {states.count('PRUNED')} |" in tuning, tuning
    # the console names only folders that outlive the sweep, and no warning per cell about the space
    said = out.stdout + out.stderr
    assert "unresolved search space" not in said and "session_" not in said, said
    assert f"tensorboard --logdir {tmp_path / 'results'}" in said and "studies: optuna-dashboard sqlite:///" in said
    trial_events = list((tmp_path / "results" / "tune" / study.study_name).glob("*/events.out.tfevents.*"))
    assert len(trial_events) == 6, trial_events


def test_search_space_becomes_the_distributions_ray_would_have_made():
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from sweeps.space import to_optuna

    space = {"method.beta": {"uniform": [0.25, 2.0]}, "trainer.lr": {"loguniform": [1e-4, 3e-3]},
             "method.latent_dim": {"choice": [8, 16]}, "method.hidden": {"int": [64, 256]}}
    ray_domains = {"method__beta": tune.uniform(0.25, 2.0), "trainer__lr": tune.loguniform(1e-4, 3e-3),
                   "method__latent_dim": tune.choice([8, 16]), "method__hidden": tune.randint(64, 257)}
    assert to_optuna(space) == OptunaSearch.convert_search_space(ray_domains)


def test_a_crashing_run_is_recorded_failed_and_the_others_complete(tmp_path):
    suite = write_suite(tmp_path, benchmarks=[{"name": "digits-ms", "overrides": ["benchmark.variants=1"]},
                                              {"name": "bc-3view", "overrides": ["debug.raise_at_step=0"]}],
                        max_retries=1)
    out = sweep(["--suite", str(suite), "--cpus", "2"], tmp_path)
    assert out.returncode == 1
    assert "mvae on bc-3view" in out.stderr and "failed" in out.stderr
    assert "retrying mvae on bc-3view" in out.stdout  # bounded retries, then recorded failed
    assert len(records(tmp_path)) == 1
    index = ResultStore(tmp_path / "results").index_frame().set_index("benchmark")
    assert index.loc["bc-3view", "status"] == "failed" and "injected failure" in index.loc["bc-3view", "error"]
    assert index.loc["digits-ms", "status"] == "done"


@pytest.mark.parametrize("args, expect", [
    (["--suite", "quik"], "unknown suite 'quik'; did you mean 'quick'?"),
    (["--address", "127.0.0.1:1"], "cannot reach a Ray cluster at 127.0.0.1:1"),
    (["--suite", "quick", "method.nope=1"], "unknown option 'method.nope'; valid: method.dim, method.hidden"),
])
def test_bad_input_is_one_line_and_exit_2_before_training(args, expect, tmp_path):
    t0 = time.time()
    out = sweep(args, tmp_path, timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], out.stderr
    assert time.time() - t0 < 60
    assert not (tmp_path / "results" / "runs").exists() or not records(tmp_path)


def test_a_search_space_naming_a_missing_parameter_is_refused(tmp_path):
    suite = write_suite(tmp_path, tune={"n_trials": 2, "epochs": 2},
                        search={"mvae": {"method.gamma": {"uniform": [0.0, 1.0]}}})
    with pytest.raises(BenchError, match="names 'method.gamma', which mvae's configuration does not have"):
        make_plan(load_suite(str(suite)))
    out = sweep(["--suite", str(suite)], tmp_path, timeout=120)
    assert out.returncode == 2 and "method.gamma" in out.stderr and len(out.stderr.strip().splitlines()) == 1
