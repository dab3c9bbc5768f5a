import logging
import multiprocessing as mp
import subprocess
import sys

import pandas as pd
import pytest

from bench.errors import BenchError
from bench.records import SCHEMA_VERSION, make_rows
from bench.store import ResultStore, mask_url

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
