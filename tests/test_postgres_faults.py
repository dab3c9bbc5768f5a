"""Faults injected into sweeps that share a PostgreSQL store: two drivers tuning one study at the same moment, and
the database going away in the middle of a sweep. Trainings are counted from the audit log that every training
start appends to (``MMRL_TRAINING_LOG``), not from record files, which a second training would overwrite."""

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from bench.errors import BenchError
from bench.store import ResultStore, mask_url
from conftest import python
from postgres_server import PASSWORD, pg_url, restartable_pg  # noqa: F401  (fixtures)

TINY = ["trainer.progress=false", "eval.metrics=[probe_linear]", "eval.probe_max_train=300"]
TIMEOUT_S, HEARTBEAT_S = 20, 1


def write_suite(tmp_path: Path, name: str, **kw) -> Path:
    suite = {"name": name, "methods": ["mvae"], "benchmarks": [{"name": "bc-3view"}], "obs_ratios": [1.0],
             "seeds": [0], "max_retries": 0, "overrides": [*TINY, "trainer.epochs=2"], **kw}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def driver(tmp_path: Path, suite: Path, url: str, *args) -> subprocess.Popen:
    """A sweep driver on its own single-CPU Ray, as on a machine of its own, logging every training it starts."""
    env = {**os.environ, "MMRL_RESULTS": str(tmp_path / "results"), "RAY_AUTH_MODE": "disabled",
           "MMRL_CLAIM_TIMEOUT_S": str(TIMEOUT_S), "MMRL_HEARTBEAT_S": str(HEARTBEAT_S),
           "MMRL_TRAINING_LOG": str(tmp_path / "trainings.log"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([python(), "-m", "bench", "sweep", "--suite", str(suite), "--store", url, "--cpus", "1",
                             *args], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def trainings(tmp_path: Path) -> Counter:
    """How often each run_id was trained."""
    log = tmp_path / "trainings.log"
    return Counter(line.split()[0] for line in log.read_text().splitlines()) if log.exists() else Counter()


def store_of(tmp_path: Path, url: str) -> ResultStore:
    (tmp_path / "results").mkdir(exist_ok=True)  # the driver may not have made it yet
    return ResultStore(tmp_path / "results", url, read_only=True)


def kill(procs) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_only_a_lost_connection_ends_a_sweep_with_the_one_line_and_it_names_the_storage_that_was_lost():
    import sqlalchemy as sa
    from optuna.exceptions import StorageInternalError

    from sweeps.driver import store_unavailable

    index, studies = "postgresql://u:pw1@db/index", "postgresql://u:pw2@db/optuna"
    refused = sa.exc.OperationalError("SELECT 1", {}, Exception("connection to server at db failed: refused"))
    line = str(store_unavailable(refused, index, studies))
    assert line.startswith("lost the store index postgresql://u:***@db/index: connection to server at db failed")
    assert "rerun the same command when the database is back" in line and "pw1" not in line
    try:  # Optuna wraps it: the Optuna storage is the one that went away
        raise StorageInternalError("An exception is raised during the commit.") from refused
    except StorageInternalError as e:
        assert str(store_unavailable(e, index, studies)).startswith("lost the Optuna storage postgresql://u:***@db/optuna")
    try:  # a store that cannot be opened in a Ray worker: BenchError(...) from None, the error in its context
        try:
            raise sa.exc.InterfaceError("UPDATE runs", {}, Exception("connection already closed"))
        except sa.exc.InterfaceError:
            raise BenchError("cannot open the store index") from None
    except BenchError as e:
        assert "connection already closed" in str(store_unavailable(e, index, studies))
    # a bug in a query, or any other error, keeps its traceback
    assert store_unavailable(sa.exc.ProgrammingError("SELEC", {}, Exception("syntax error")), index, studies) is None
    assert store_unavailable(ValueError("boom"), index, studies) is None


def test_two_drivers_asking_for_the_last_trial_of_a_study_at_once_get_it_once(pg_url, monkeypatch):
    import threading

    import optuna
    from ray import tune
    from ray.tune.search import Searcher

    from sweeps.driver import _prune_aware_search, optuna_storage

    storage = optuna_storage(pg_url)
    real = optuna.study.Study.get_trials

    def slow(self, *a, **kw):  # both read the count before either asks: 0.3 s between them instead of microseconds
        out = real(self, *a, **kw)
        time.sleep(0.3)
        return out

    monkeypatch.setattr(optuna.study.Study, "get_trials", slow)
    searchers = [_prune_aware_search({"x": tune.uniform(0.0, 1.0)}, "val_probe", "max", "race", storage, seed,
                                     max_t=2, n_trials=1) for seed in (1, 2)]
    barrier, answers = threading.Barrier(2), [None, None]

    def ask(i: int) -> None:
        barrier.wait()
        answers[i] = searchers[i].suggest(f"trial{i}")

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(optuna.load_study(study_name="race", storage=storage).trials) == 1
    assert sorted(a == Searcher.FINISHED for a in answers) == [False, True], answers


def test_two_drivers_tuning_one_study_at_once_spend_its_budget_once_and_train_each_final_run_once(tmp_path, pg_url):
    import optuna

    budget = 4
    suite = write_suite(tmp_path, "shared", seeds=[0, 1],
                        tune={"n_trials": budget, "epochs": 2, "grace_period": 1, "reduction_factor": 2},
                        search={"mvae": {"method.beta": {"loguniform": [0.05, 20.0]},
                                         "trainer.lr": {"loguniform": [1.0e-4, 3.0e-3]}}})
    procs = [driver(tmp_path, suite, pg_url) for _ in range(2)]
    try:
        outs = [p.communicate(timeout=400) for p in procs]
    finally:
        kill(procs)
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err

    (summary,) = optuna.get_all_study_summaries(pg_url)
    study = optuna.load_study(study_name=summary.study_name, storage=pg_url)
    states = Counter(t.state.name for t in study.trials)
    trials = [(t.number, t.state.name, t.system_attrs.get("mmrl_driver"), str(t.datetime_start),
               str(t.datetime_complete)) for t in study.trials]
    assert len(study.trials) == budget and set(states) <= {"COMPLETE", "PRUNED"}, (trials, outs)
    drivers = {t.system_attrs.get("mmrl_driver") for t in study.trials}
    assert len(drivers) == 2, f"one driver ran every trial: the two never tuned at the same time ({drivers})"

    store = store_of(tmp_path, pg_url)
    counts = trainings(tmp_path)
    phases = {rid: store.get_spec(rid)["phase"] for rid in counts if store.is_done(rid)}
    finals = [rid for rid, phase in phases.items() if phase == "final"]
    assert len(finals) == 2, phases  # both drivers settled on the same best configuration: one run per seed
    assert all(n == 1 for n in counts.values()), counts  # no trial and no final run trained twice
    tuned = {rid for rid, n in counts.items() if rid not in finals}
    assert len(tuned) <= budget and set(tuned) <= set(store.index_frame()["run_id"])


def outage_and_rerun(tmp_path: Path, server, url: str, suite: Path, midway) -> tuple[set, ResultStore]:
    """Starts the sweep, stops the server once ``midway(index)`` holds, checks that the driver ends with one line,
    starts the server and reruns the sweep to its end; returns the runs done before the outage, and the store."""
    first = driver(tmp_path, suite, url)
    try:
        deadline = time.time() + 240
        while True:
            assert first.poll() is None, "the sweep ended before the outage: " + "".join(first.communicate())
            assert time.time() < deadline, "the sweep never got midway"
            index = store_of(tmp_path, url).index_frame()
            if midway(index):
                break
            time.sleep(0.2)
        server.stop()
        done_before = set(index.loc[index["status"] == "done", "run_id"])
        stopped = time.time()
        out, err = first.communicate(timeout=120)
        took = time.time() - stopped
    finally:
        kill([first])
    assert first.returncode not in (0, None), out + err
    assert took < 60, f"the driver took {took:.0f} s to notice that the database was gone"
    assert "Traceback" not in out + err, out + err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: "), err
    line = lines[-1]
    assert [ln for ln in lines if ln.startswith("error")] == [line], err
    # besides the one line, at most the driver's heartbeat retries and the Optuna storage's own warnings
    assert all("heartbeat failed" in ln or not ln.startswith(("ERROR", "WARNING", "error")) for ln in lines[:-1]), err
    assert mask_url(url) in line and PASSWORD not in out + err, line
    assert "rerun the same command when the database is back" in line, line

    server.start()
    second = driver(tmp_path, suite, url)
    try:
        out, err = second.communicate(timeout=300)
    finally:
        kill([second])
    assert second.returncode == 0, out + err
    return done_before, store_of(tmp_path, url)


def running_and_done(index) -> bool:
    return (index["status"] == "done").any() and (index["status"] == "running").any()


def test_the_database_going_away_mid_sweep_stops_it_with_one_line_and_a_rerun_loses_nothing(tmp_path,
                                                                                           restartable_pg):
    server, url = restartable_pg
    suite = write_suite(tmp_path, "outage", obs_ratios=[1.0, 0.5], seeds=[0, 1],
                        overrides=[*TINY, "trainer.epochs=3"])
    done_before, store = outage_and_rerun(tmp_path, server, url, suite, running_and_done)
    index = store.index_frame().set_index("run_id")
    assert len(index) == 4 and set(index["status"]) == {"done"}, index[["status", "owner"]]
    for rid in index.index:  # every record readable, and its run's
        rec = store.get(rid)
        assert rec is not None and set(rec["run_id"]) == {rid}
    counts = trainings(tmp_path)
    assert set(counts) == set(index.index), counts
    for rid in done_before:  # nothing finished before the outage was trained again
        assert counts[rid] == 1, (rid, counts)
    assert max(counts.values()) <= 2, counts  # at most the run cut short by the outage, once more


@pytest.mark.slow
def test_the_database_going_away_while_tuning_stops_the_sweep_with_one_line_and_a_rerun_loses_nothing(
        tmp_path, restartable_pg):
    import optuna

    server, url = restartable_pg
    budget = 4
    suite = write_suite(tmp_path, "tune-outage", tune={"n_trials": budget, "epochs": 3, "grace_period": 1},
                        search={"mvae": {"method.beta": {"loguniform": [0.05, 20.0]}}})
    done_before, store = outage_and_rerun(tmp_path, server, url, suite, running_and_done)
    (summary,) = optuna.get_all_study_summaries(url)
    study = optuna.load_study(study_name=summary.study_name, storage=url)
    states = Counter(t.state.name for t in study.trials)
    # the trial the outage cut short is failed by the rerun, which runs one in its place
    assert states["COMPLETE"] + states["PRUNED"] == budget and states["RUNNING"] == 0, states
    counts = trainings(tmp_path)
    finals = [rid for rid in counts if store.is_done(rid) and store.get_spec(rid)["phase"] == "final"]
    assert len(finals) == 1 and counts[finals[0]] == 1, counts
    for rid in done_before:  # trials finished before the outage were replayed, not trained again
        assert counts[rid] == 1, (rid, counts)
    assert max(counts.values()) <= 2, counts
