import logging
import multiprocessing as mp
import os
import re
import subprocess
import sys
import time

import pandas as pd
import pytest
import sqlalchemy as sa

from bench.errors import BenchError
from bench.records import SCHEMA_VERSION, make_rows
from bench.store import RUNS, ClaimLost, ResultStore, mask_url, node_name, owner_id, rebuild

SPEC = {"method": {"name": "mvae"}, "benchmark": {"name": "digits-ms"}, "obs_ratio": 0.5, "seed": 0, "suite": "t"}


def _rows(value=0.5):
    return make_rows(SPEC, "r1", "baseline", [{"metric": "probe_linear", "target": "joint", "value": value,
                                                "higher_is_better": True, "split": "test", "status": "done"}],
                     epoch=2, wall_s=1.0)


def test_put_get_round_trip_and_done(tmp_path):
    store = ResultStore(tmp_path)
    assert store.status("r1") is None and not store.is_done("r1")
    assert store.claim("r1")
    store.put("r1", SPEC, _rows())
    got = store.get("r1")
    assert got["value"].tolist() == [0.5] and got["schema_version"].iloc[0] == SCHEMA_VERSION
    assert store.is_done("r1") and store.status("r1") == "done"
    assert store.get_spec("r1") == SPEC
    assert not list(store.runs_dir.glob(".*tmp*"))  # no temporary file left behind
    assert not store.claim("r1")  # done runs are not claimed again
    assert store.claim("r1", force=True)


def test_claim_is_exclusive_and_failed_runs_are_reclaimable(tmp_path):
    store = ResultStore(tmp_path)
    assert store.claim("r2")
    assert not store.claim("r2")  # held by this live process
    store.mark("r2", "failed", error="boom")
    assert store.index_row("r2")["error"] == "boom"
    assert not store.is_done("r2")  # failed is never done
    assert store.claim("r2")


def test_a_claim_by_a_dead_process_is_stale(tmp_path):
    store = ResultStore(tmp_path)
    code = f"from bench.store import ResultStore; assert ResultStore({str(tmp_path)!r}).claim('r3')"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert store.index_row("r3")["status"] == "claimed"
    assert store.claim("r3")  # its owner pid is gone


def _claim(args):
    root, run_id = args
    return ResultStore(root).claim(run_id)


def test_concurrent_claims_have_one_winner(tmp_path):
    ResultStore(tmp_path)
    with mp.get_context("spawn").Pool(4) as pool:
        wins = pool.map(_claim, [(str(tmp_path), "r4")] * 8)
    # pool workers stay alive during map, so a claim never looks stale: exactly one of eight attempts wins
    assert sum(wins) == 1
    assert ResultStore(tmp_path).index_row("r4")["status"] == "claimed"


def test_unreadable_record_is_reported_and_skipped(tmp_path, caplog):
    store = ResultStore(tmp_path)
    store.claim("r1")
    store.put("r1", SPEC, _rows())
    (store.runs_dir / "broken.parquet").write_bytes(b"not a parquet file")
    with caplog.at_level(logging.WARNING):
        df = store.load()
    assert len(df) == 1 and df["run_id"].iloc[0] == "r1"
    assert any("broken.parquet" in r.message for r in caplog.records)


def test_load_of_an_empty_store_has_the_columns(tmp_path):
    df = ResultStore(tmp_path).load()
    assert isinstance(df, pd.DataFrame) and len(df) == 0 and "metric" in df.columns


@pytest.mark.parametrize("url", ["postgresql://alice:s3cret@db.example:5432/bench",
                                 "postgresql+psycopg2://bob:p%40ss@host/db"])
def test_password_is_masked(url):
    masked = mask_url(url)
    assert "s3cret" not in masked and "p%40ss" not in masked and "p@ss" not in masked and "***" in masked


def test_store_repr_and_errors_hide_the_password(tmp_path):
    with pytest.raises(BenchError) as e:
        ResultStore(tmp_path, "postgresql://alice:s3cret@127.0.0.1:1/nope")
    assert "s3cret" not in str(e.value) and "alice:***@127.0.0.1:1" in str(e.value)


# --- ownership: every write is a compare-and-swap on (run_id, owner) ------------------------------------------
DEAD = f"{node_name()}:999999999"  # a pid that cannot be running (above the kernel's pid_max)


def _take_over(store, run_id, owner):
    """Another process took the run over (as claim() does after a stale claim)."""
    with store.engine.begin() as c:
        c.execute(sa.update(RUNS).where(RUNS.c.run_id == run_id).values(owner=owner, status="running",
                                                                         updated_at=time.time()))


def test_a_process_that_lost_its_claim_can_neither_mark_nor_put(tmp_path):
    store = ResultStore(tmp_path)
    assert store.claim("r1") and store.mark("r1", "running")
    other = f"{node_name()}:{os.getppid()}"  # a live process that is not this one
    _take_over(store, "r1", other)
    assert not store.owns("r1") and store.owns("r1", other)
    assert not store.mark("r1", "failed", error="late failure")  # never overwrites the new owner's row
    with pytest.raises(ClaimLost, match="not by"):
        store.put("r1", SPEC, _rows())
    assert not store.record_path("r1").exists() and not store.spec_path("r1").exists()
    assert not list(store.runs_dir.glob(".*tmp*"))
    row = store.index_row("r1")
    assert (row["owner"], row["status"], row["error"]) == (other, "running", None)
    store.put("r1", SPEC, _rows(), owner=other)  # the owner's own write goes through
    assert store.is_done("r1") and store.index_row("r1")["status"] == "done"


def test_claims_of_dead_owners_are_taken_at_once_in_both_owner_formats(tmp_path):
    store = ResultStore(tmp_path)
    me = owner_id()
    assert re.fullmatch(rf"{re.escape(node_name())}:{os.getpid()}\.\d+", me)  # node:pid.start
    reused = me.rpartition(".")[0] + ".1"  # this pid, but a process that started at another time
    for rid, owner in (("old", DEAD), ("reused", reused)):
        with store.engine.begin() as c:
            c.execute(sa.insert(RUNS).values(run_id=rid, status="running", owner=owner, updated_at=time.time()))
        assert store.claim_is_stale(owner, time.time()) and store.claim(rid), owner
    assert not store.claim_is_stale(me, time.time())


def test_done_means_a_readable_record_and_a_torn_one_is_trained_again(tmp_path):
    store = ResultStore(tmp_path)
    store.claim("r1")
    store.put("r1", SPEC, _rows())
    path = store.record_path("r1")
    path.write_bytes(path.read_bytes()[:-20])  # the footer torn off
    assert not store.is_done("r1") and store.status("r1") == "corrupt"
    assert store.record_problem("r1").startswith("unreadable")
    assert store.claim("r1")  # indexed done, but not done: claimable
    moved = store.quarantine("r1")
    assert moved.name.startswith("r1.parquet.corrupt-") and not path.exists()


def test_settle_marks_done_the_rows_left_behind_their_records_but_not_a_live_claim(tmp_path):
    store = ResultStore(tmp_path)
    for rid in ("r1", "r2"):
        store.claim(rid)
        store.put(rid, SPEC, _rows())
    _take_over(store, "r1", DEAD)        # died between the rename and the commit
    _take_over(store, "r2", owner_id())  # being retrained (--force) by a live process
    store.claim("r3")
    _take_over(store, "r3", DEAD)        # died before writing anything: no record, nothing to settle
    assert store.settle(["r1", "r2", "r3", "missing"]) == ["r1"]
    assert store.index_row("r1")["status"] == "done" and store.index_row("r2")["status"] == "running"
    assert store.index_row("r3")["status"] != "done"


def test_settle_reads_no_record_of_a_run_the_index_already_says_done(tmp_path, monkeypatch):
    import bench.store

    store = ResultStore(tmp_path)
    for rid in ("r1", "r2"):
        store.claim(rid)
        store.put(rid, SPEC, _rows())
    reads = []
    real = bench.store.record_problem
    monkeypatch.setattr(bench.store, "record_problem", lambda path: reads.append(path) or real(path))
    assert store.settle(["r1", "r2"]) == [] and reads == []


def test_a_damaged_sqlite_index_is_refused_with_the_way_out_and_rebuilt_from_the_records(tmp_path):
    store = ResultStore(tmp_path)
    for rid in ("r1", "r2"):
        store.claim(rid, meta={"method": "m", "benchmark": "b", "obs_ratio": 1.0, "seed": 0, "suite": "s"})
        store.put(rid, SPEC, _rows())
    store.claim("r3")  # in flight
    store.engine.dispose()
    (tmp_path / "index.sqlite").write_bytes(b"one line of garbage\n" * 3)
    with pytest.raises(BenchError, match="not a database.*bench store rebuild"):
        ResultStore(tmp_path)
    rebuilt, changed, moved = rebuild(tmp_path)
    assert moved is not None and moved.read_bytes().startswith(b"one line of garbage")
    assert sorted(changed["done"]) == ["r1", "r2"] and changed["unreadable"] == []
    index = rebuilt.index_frame().set_index("run_id")
    assert sorted(index.index) == ["r1", "r2"] and set(index["status"]) == {"done"}  # r3: not done
    assert index.loc["r1", "method"] == SPEC["method"]["name"]
    # a done row whose record is gone is dropped, so that the run is trained again
    store.record_path("r2").unlink()
    assert ResultStore(tmp_path).rebuild_index()["dropped"] == ["r2"]


def test_a_read_only_store_creates_nothing_and_refuses_writes(tmp_path):
    store = ResultStore(tmp_path, read_only=True)
    assert store.index_frame().empty and store.load().empty
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BenchError, match="read-only"):
        store.claim("r1")
    ResultStore(tmp_path).claim("r1")
    assert ResultStore(tmp_path, read_only=True).index_frame()["run_id"].tolist() == ["r1"]


def test_ls_runs_lists_corrupt_and_lost_runs(tmp_path, capsys):
    from bench.cli import main

    store = ResultStore(tmp_path)
    for rid in ("r1", "r2", "r3"):
        store.claim(rid)
        store.put(rid, SPEC, _rows())
    store.record_path("r2").write_bytes(b"torn")
    store.record_path("r3").unlink()
    assert main(["ls", "runs", "--results", str(tmp_path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "1 corrupt, 1 done, 1 lost" in out
    # claimed without meta: the method and benchmark come from each run's spec
    from bench.store import run_listing

    listed = {r["run_id"]: r for r in run_listing(ResultStore(tmp_path, read_only=True))}
    assert {listed[r]["method"] for r in ("r1", "r2")} == {SPEC["method"]["name"]}
    assert listed["r1"]["benchmark"] == SPEC["benchmark"]["name"] and listed["r1"]["seed"] == SPEC["seed"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_database_lost_outside_a_sweep_loop_ends_with_one_line_and_a_bug_keeps_its_traceback(tmp_path, capsys,
                                                                                             monkeypatch):
    pytest.importorskip("psycopg")
    import bench.cli
    from bench.cli import main

    url = f"postgresql://u:hunter2@127.0.0.1:{_free_port()}/index"   # nothing listens there
    assert main(["ls", "runs", "--results", str(tmp_path), "--store", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: lost the store index postgresql://u:***@127.0.0.1:") and "hunter2" not in err
    assert len(err.strip().splitlines()) == 1 and "rerun the same command" in err

    def broken_query(args):   # a bug in a query is not a lost database: its traceback stays
        raise sa.exc.ProgrammingError("SELECT nope", {}, Exception("column nope does not exist"))

    monkeypatch.setattr(bench.cli, "cmd_ls", broken_query)
    with pytest.raises(sa.exc.ProgrammingError):
        main(["ls", "runs", "--results", str(tmp_path)])


def test_rebuild_removes_the_temporary_files_of_killed_writers_but_not_of_live_ones(tmp_path):
    store = ResultStore(tmp_path, claim_timeout_s=60, heartbeat_s=1)
    store.claim("r1")
    store.put("r1", SPEC, _rows())
    killed = [store.runs_dir / ".r2.parquet.tmp-4242", store.runs_dir / ".r2.json.tmp-4242"]
    live = store.runs_dir / ".r3.parquet.tmp-4343"
    for f in (*killed, live):
        f.write_bytes(b"half a record")
    old = time.time() - 61
    for f in killed:
        os.utime(f, (old, old))
    changed = store.rebuild_index()
    assert sorted(changed["removed"]) == sorted(f.name for f in killed)
    assert live.exists() and not any(f.exists() for f in killed)
    assert changed["done"] == ["r1"] and store.is_done("r1")   # the finished run is untouched
