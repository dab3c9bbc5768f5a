"""Several sweep drivers sharing one PostgreSQL store: two started at the same moment on one Ray cluster train every
run exactly once; a driver SIGKILLed mid-sweep leaves claims that a driver on another node takes over once they
have been silent for the claim timeout, and finishes."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from bench.store import ResultStore
from conftest import python
from postgres_server import pg_url  # noqa: F401  (a fixture)

TINY = ["trainer.progress=false", "eval.metrics=[probe_linear]", "eval.probe_max_train=300"]
BENCHMARKS = [{"name": "digits-ms", "overrides": ["benchmark.variants=1"]}, {"name": "bc-3view"}]
TIMEOUT_S, HEARTBEAT_S = 20, 1


def write_suite(tmp_path: Path, name: str, epochs: int, seeds) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "methods": ["mvae"], "benchmarks": BENCHMARKS,
                                    "obs_ratios": [1.0, 0.5], "seeds": list(seeds), "max_retries": 0,
                                    "overrides": [*TINY, f"trainer.epochs={epochs}"]}))
    return path


def driver(tmp_path: Path, suite: Path, url: str, *args, node: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "MMRL_RESULTS": str(tmp_path / "results"), "RAY_AUTH_MODE": "disabled",
           "MMRL_CLAIM_TIMEOUT_S": str(TIMEOUT_S), "MMRL_HEARTBEAT_S": str(HEARTBEAT_S)}
    if node:
        env["MMRL_NODE_NAME"] = node
    return subprocess.Popen([python(), "-m", "bench", "sweep", "--suite", str(suite), "--store", url, *args],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def trained(output: str) -> int:
    m = re.search(r"(\d+) trained, (\d+) already done", " ".join(output.split()))
    assert m, output
    return int(m.group(1))


def index_of(tmp_path, url, suite: str):
    df = ResultStore(tmp_path / "results", url).index_frame()
    return df[df["suite"] == suite].set_index("run_id")


# -m slow: the default run covers its parts faster: two drivers on one PostgreSQL store (test_postgres_faults.py),
# a killed sweep resumed (test_faults.py), a silent claim taken over after the timeout (test_postgres.py)
@pytest.mark.slow
def test_two_drivers_then_a_killed_one_and_a_third_that_takes_over(tmp_path, pg_url):
    from ray.cluster_utils import Cluster

    os.environ["RAY_AUTH_MODE"] = "disabled"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    procs = []
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()

        # two drivers at the same moment, one cluster, one store: every run trained exactly once, none lost
        both = write_suite(tmp_path, "both", epochs=1, seeds=[0])
        procs = [driver(tmp_path, both, pg_url, "--address", cluster.address) for _ in range(2)]
        outs = [p.communicate(timeout=600)[0] for p in procs]
        for p, out in zip(procs, outs):
            assert p.returncode == 0, out
        assert sum(trained(o) for o in outs) == 4, outs
        index = index_of(tmp_path, pg_url, "both")
        assert len(index) == 4 and set(index["status"]) == {"done"}
        for rid in index.index:
            assert (tmp_path / "results" / "runs" / f"{rid}.parquet").exists()

        # a driver killed mid-sweep: some runs done, some held by its (now dead) processes
        killed_suite = write_suite(tmp_path, "killed", epochs=4, seeds=[0])
        victim = driver(tmp_path, killed_suite, pg_url, "--address", cluster.address)
        procs = [victim]
        deadline = time.time() + 420
        while True:
            assert victim.poll() is None, "the sweep ended before it could be killed"
            assert time.time() < deadline, "the sweep never got midway"
            idx = index_of(tmp_path, pg_url, "killed")
            if (idx["status"] == "done").sum() >= 1 and idx["status"].isin(["claimed", "running"]).sum() >= 1:
                break
            time.sleep(0.3)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        done_before = {rid: (tmp_path / "results" / "runs" / f"{rid}.parquet").stat().st_mtime_ns
                       for rid in index_of(tmp_path, pg_url, "killed").query("status == 'done'").index}
        # the third driver runs on "another node" (its own Ray): it cannot see that the killed driver's processes
        # are gone, only that their claims stop heart-beating
        third = driver(tmp_path, killed_suite, pg_url, "--cpus", "1", node="third-node")
        procs = [third]
        out = third.communicate(timeout=600)[0]
        assert third.returncode == 0, out
        after = index_of(tmp_path, pg_url, "killed")
        assert len(after) == 4 and set(after["status"]) == {"done"}, after
        taken = [rid for rid in after.index if rid not in done_before]
        assert taken, "the killed driver left nothing to take over"
        for rid in taken:  # trained by the third driver, after the claim had been silent for the timeout
            assert after.loc[rid, "owner"].startswith("third-node:"), after.loc[rid, "owner"]
        flat = " ".join(out.split())  # the console wraps long lines
        silences = [float(s) for s in re.findall(r"taking over .*? no heartbeat for (\d+) s", flat)]
        assert silences and min(silences) >= TIMEOUT_S, out
        for rid, mtime in done_before.items():  # nothing the killed driver finished was trained again
            assert (tmp_path / "results" / "runs" / f"{rid}.parquet").stat().st_mtime_ns == mtime
        assert trained(out) == len(taken)
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        cluster.shutdown()
