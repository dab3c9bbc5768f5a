"""The result store shared through PostgreSQL: atomic claims under concurrency, heartbeats and the takeover of a
dead claim after the claim timeout, and bad database URLs refused in one line before anything trains.

The server is a throwaway one (tests/postgres_server.py); without one these tests skip, except under
MMRL_REQUIRE_POSTGRES=1 (CI), where they fail. The heartbeat tests also run on SQLite."""

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import pytest

from bench.errors import BenchError
from bench.store import RUNS, ResultStore, resolve_url
from conftest import python
from postgres_server import get_server, pg_url  # noqa: F401  (pg_url is a fixture)

N_RUNS, N_PROCS = 24, 4


def _claimer(root, url, order, start, done, out):
    store = ResultStore(root, url)
    start.wait()
    won = [rid for rid in order if store.claim(rid)]
    out.put(won)
    # stay alive until every process has tried: a claim whose owner is gone may rightly be taken over
    done.wait()


def _race(root, url, run_ids):
    ctx = mp.get_context("spawn")
    start, done, out = ctx.Barrier(N_PROCS), ctx.Event(), ctx.Queue()
    procs = []
    for k in range(N_PROCS):
        order = run_ids[k:] + run_ids[:k] if k % 2 else list(reversed(run_ids))  # collide in different orders
        procs.append(ctx.Process(target=_claimer, args=(root, url, order, start, done, out)))
    for p in procs:
        p.start()
    wins = [out.get(timeout=120) for _ in procs]
    done.set()
    for p in procs:
        p.join(timeout=60)
    return wins


def test_concurrent_claims_on_postgres_claim_each_run_exactly_once(tmp_path, pg_url):
    run_ids = [f"run{i:02d}" for i in range(N_RUNS)]
    wins = _race(str(tmp_path), pg_url, run_ids)
    flat = [rid for w in wins for rid in w]
    assert sorted(flat) == run_ids, "every run claimed, none twice"
    assert sum(1 for w in wins if w) >= 2, "the processes really competed"  # else the test proves nothing
    index = ResultStore(tmp_path, pg_url).index_frame()
    assert len(index) == N_RUNS and set(index["status"]) == {"claimed"}
    assert index.set_index("run_id")["owner"].nunique() == sum(1 for w in wins if w)


def test_concurrent_takeovers_of_stale_claims_take_each_run_exactly_once(tmp_path, pg_url):
    """The compare-and-swap path: claims by a node that stopped heart-beating long ago, raced for."""
    store = ResultStore(tmp_path, pg_url)
    run_ids = [f"stale{i:02d}" for i in range(N_RUNS)]
    with store.engine.begin() as c:
        c.execute(RUNS.insert(), [{"run_id": rid, "status": "running", "owner": "gone-node:1",
                                   "updated_at": time.time() - 10 * store.claim_timeout_s} for rid in run_ids])
    wins = _race(str(tmp_path), pg_url, run_ids)
    flat = [rid for w in wins for rid in w]
    assert sorted(flat) == run_ids
    assert "gone-node:1" not in set(store.index_frame()["owner"])


@pytest.fixture(params=["sqlite", "postgresql"])
def index_url(request, tmp_path):
    if request.param == "sqlite":
        return None
    return get_server().create_database()


HOLDER = """
import sys, time
from bench.store import ResultStore
store = ResultStore(sys.argv[1], sys.argv[2] or None, claim_timeout_s=2.0, heartbeat_s=0.25)
assert store.claim("r1")
with store.heartbeat("r1"):
    print("claimed", flush=True)
    time.sleep(600)
"""


def test_a_heartbeat_keeps_a_claim_and_a_dead_claim_is_taken_over_after_the_timeout(tmp_path, index_url):
    # the holder says it runs on another node, so that only its heartbeat can tell whether it is alive (on this
    # node a gone pid is seen at once)
    env = {**os.environ, "MMRL_NODE_NAME": "another-node"}
    holder = subprocess.Popen([python(), "-c", HOLDER, str(tmp_path), index_url or ""], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        store = ResultStore(tmp_path, index_url, claim_timeout_s=2.0, heartbeat_s=0.25)
        first = store.index_row("r1")["updated_at"]
        time.sleep(3.0)  # longer than the timeout: only the heartbeat keeps the claim
        assert not store.claim("r1")
        assert store.index_row("r1")["updated_at"] > first
        assert store.index_row("r1")["owner"].startswith("another-node:")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    killed = time.time()
    assert not store.claim("r1"), "a silent claim is kept until the timeout"
    while not store.claim("r1"):
        assert time.time() - killed < 10, "the dead claim was never taken over"
        time.sleep(0.1)
    waited = time.time() - killed
    assert 2.0 - 0.25 - 0.1 <= waited < 5.0, waited
    assert store.index_row("r1")["owner"] != "another-node"


def test_a_claim_taken_over_is_reported_lost_by_its_old_holder(tmp_path, index_url):
    store = ResultStore(tmp_path, index_url, claim_timeout_s=1.0, heartbeat_s=0.2)
    assert store.claim("r1")
    with store.heartbeat("r1") as hb:
        with store.engine.begin() as c:  # another process took it over while this one stalled
            c.execute(RUNS.update().where(RUNS.c.run_id == "r1").values(owner="elsewhere:7"))
        time.sleep(0.6)
    assert hb.lost


def test_bad_timeouts_are_refused(tmp_path):
    with pytest.raises(BenchError, match="at least twice the heartbeat"):
        ResultStore(tmp_path, claim_timeout_s=1.0, heartbeat_s=1.0)


# --- bad database URLs, through the CLI -----------------------------------------------------------------------
TINY_SUITE = """name: t
methods: [mvae]
benchmarks: [{name: digits-ms, overrides: [benchmark.variants=1]}]
obs_ratios: [1.0]
seeds: [0]
overrides: [trainer.progress=false, trainer.epochs=1, "eval.metrics=[probe_linear]"]
"""


def _sweep(tmp_path, *args, env=None):
    (tmp_path / "suite.yaml").write_text(TINY_SUITE)
    env = {**os.environ, "MMRL_RESULTS": str(tmp_path / "results"), "RAY_AUTH_MODE": "disabled", **(env or {})}
    t0 = time.time()
    out = subprocess.run([python(), "-m", "bench", "sweep", "--suite", str(tmp_path / "suite.yaml"), *args],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    return out, time.time() - t0


def _assert_one_line_exit_2(out, elapsed, tmp_path, *expect):
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    for e in expect:
        assert e in lines[0], lines[0]
    assert "training" not in out.stdout and elapsed < 60
    assert not list((tmp_path / "results").glob("runs/*.parquet"))


def test_wrong_credentials_are_one_masked_line_and_exit_2(tmp_path):
    server = get_server()
    bad = server.url(password="not-the-password")
    out, elapsed = _sweep(tmp_path, "--store", bad)
    _assert_one_line_exit_2(out, elapsed, tmp_path, "cannot open the store index", "bench:***@127.0.0.1",
                            "password authentication failed")
    assert "not-the-password" not in out.stderr + out.stdout


def test_an_unreachable_database_is_one_masked_line_and_exit_2(tmp_path):
    out, elapsed = _sweep(tmp_path, "--store", "postgresql://alice:hunter2@127.0.0.1:1/bench")
    _assert_one_line_exit_2(out, elapsed, tmp_path, "cannot open the store index", "alice:***@127.0.0.1:1",
                            "refused")
    assert "hunter2" not in out.stderr + out.stdout


def test_a_bad_optuna_storage_is_refused_too(tmp_path):
    out, elapsed = _sweep(tmp_path, "--optuna-storage", "postgresql://alice:hunter2@127.0.0.1:1/optuna")
    _assert_one_line_exit_2(out, elapsed, tmp_path, "cannot open the Optuna storage", "alice:***@")
    assert "hunter2" not in out.stderr + out.stdout


def test_a_postgresql_url_without_a_driver_names_the_package(tmp_path):
    # sys.modules[name] = None makes an import of it fail, as if the package were absent
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['psycopg'] = None\nsys.modules['psycopg2'] = None\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out, elapsed = _sweep(tmp_path, "--store", "postgresql://alice:hunter2@db.example/bench", env=env)
    _assert_one_line_exit_2(out, elapsed, tmp_path, "pip install 'psycopg[binary]'", "psycopg2-binary")
    assert "hunter2" not in out.stderr
    out, elapsed = _sweep(tmp_path, "--store", "postgresql+psycopg2://alice:hunter2@db.example/bench", env=env)
    _assert_one_line_exit_2(out, elapsed, tmp_path, "needs the psycopg2 driver", "pip install psycopg2-binary")


def test_a_plain_postgresql_url_uses_the_installed_driver(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    assert resolve_url("postgresql://u:p@h/db").startswith("postgresql+psycopg://")
