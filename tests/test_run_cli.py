"""End-to-end runs through DeepSpeed: caching, determinism, failures, resume, and the CLI's bad-input lines."""

import subprocess

import pandas as pd
import pytest

from bench.compose import compose
from bench.errors import BenchError, RunFailed
from bench.run import resolve_spec, run_one
from bench.spec import compute_run_id
from bench.store import ResultStore
from conftest import FAST, python


def _spec(*extra):
    return resolve_spec(compose(FAST + list(extra)))


def _test_metrics(record: pd.DataFrame) -> dict:
    test = record[record["split"] == "test"]
    return {(r.metric, r.target): r.value for r in test.itertuples()}


def test_same_seed_same_machine_gives_identical_metrics(tmp_path):
    spec = _spec("obs_ratio=0.5")
    a = run_one(spec, ResultStore(tmp_path / "a"))
    b = run_one(spec, ResultStore(tmp_path / "b"))
    assert a.status == b.status == "done"
    ma, mb = _test_metrics(a.record), _test_metrics(b.record)
    assert ma == mb and len(ma) >= 3
    losses = lambda r: r[r["metric"] == "loss"]["value"].tolist()  # noqa: E731
    assert losses(a.record) == losses(b.record)
    c = run_one(_spec("obs_ratio=0.5", "seed=1"), ResultStore(tmp_path / "c"))
    assert _test_metrics(c.record) != ma  # and the seed matters


def test_second_run_is_served_from_the_store(tmp_path):
    store = ResultStore(tmp_path)
    spec = _spec()
    first = run_one(spec, store)
    again = run_one(spec, store)
    assert first.status == "done" and again.status == "cached"
    assert _test_metrics(again.record) == _test_metrics(first.record)


def test_injected_nan_is_recorded_failed_without_a_record_and_a_clean_rerun_succeeds(tmp_path):
    store = ResultStore(tmp_path)
    spec = _spec("debug.nan_at_step=3")
    run_id = compute_run_id(spec)
    with pytest.raises(RunFailed, match="NonFiniteLoss"):
        run_one(spec, store)
    row = store.index_row(run_id)
    assert row["status"] == "failed" and "NonFiniteLoss" in row["error"]
    assert store.get(run_id) is None and not list(store.runs_dir.glob("*.parquet"))
    # debug keys are not part of the identity: the clean spec is the same run, and it can be retried
    clean = _spec()
    assert compute_run_id(clean) == run_id
    assert run_one(clean, store).status == "done"
    assert store.index_row(run_id)["status"] == "done"


def test_resume_from_a_checkpoint_gives_the_uninterrupted_numbers(tmp_path):
    # the run dies in epoch 2 (step 12 of 9 per epoch); epoch 1's checkpoint is then the starting point
    crashed = ResultStore(tmp_path / "crashed")
    with pytest.raises(RunFailed):
        run_one(_spec("debug.raise_at_step=12"), crashed)
    assert list(crashed.checkpoint_dir(compute_run_id(_spec())).glob("epoch_*.pt"))
    resumed = run_one(_spec(), crashed)
    straight = run_one(_spec(), ResultStore(tmp_path / "straight"))
    assert _test_metrics(resumed.record) == _test_metrics(straight.record)


def test_bad_configuration_is_refused_before_training():
    with pytest.raises(BenchError, match="unknown method mvae option"):
        _spec("+method.nope=1")
    with pytest.raises(BenchError, match="obs_ratio"):
        _spec("obs_ratio=1.5")
    with pytest.raises(BenchError, match="did you mean 'digits-ms'"):
        compose(["benchmark=digits_ms"])
    with pytest.raises(BenchError, match="trainer.device"):
        _spec("trainer.device=tpu")


def _cli(args, env, cwd):
    return subprocess.run([python(), "-m", "bench", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("args, expect", [
    (["run", "method=mvea"], "unknown method 'mvea'; did you mean 'mvae'?"),
    (["run", "benchmark=digits-mz"], "did you mean 'digits-ms'?"),
    (["run", "obs_ratio=0"], "obs_ratio must be in (0, 1]"),
    (["run", "obs_ratio=1.01"], "obs_ratio must be in (0, 1]"),
    (["run", "obs_ratio=half"], "obs_ratio must be a number"),
    (["run", "trainer.epochs=0"], "trainer.epochs"),
    (["run", "trainer.epoch=3"], "unknown option 'trainer.epoch'; valid: trainer.amsgrad, trainer.batch_size"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, expect, cli_env, tmp_path):
    out = _cli(args, cli_env, tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], out.stderr
    assert not (tmp_path / "results" / "runs").exists() or not list((tmp_path / "results" / "runs").iterdir())


def test_cli_trains_once_then_reports_the_stored_result(cli_env, tmp_path):
    fast = [a for a in FAST if "progress" not in a and not a.startswith("eval.metrics=")]
    args = ["run", "method=mvae", "obs_ratio=0.5", "seed=0", *fast, "eval.metrics=[probe_linear,w2_profile]"]
    first = _cli(args, cli_env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "training mvae on digits-ms" in first.stdout and "probe_linear" in first.stdout
    assert " worker" not in first.stdout  # one process: nothing to say
    # figure data: in the record, named under the table, not 42 rows of it
    (path,) = (tmp_path / "results" / "runs").glob("*.parquet")
    assert (pd.read_parquet(path)["metric"] == "w2_profile").sum() == 42
    assert "paired:q" not in first.stdout
    assert "figure data in the record and the report: w2_profile" in " ".join(first.stdout.split())
    # DeepSpeed's line about the accelerator we chose for it (bench/train/deepspeed_setup.py)
    assert "accelerator" not in (first.stdout + first.stderr).lower(), first.stdout + first.stderr
    second = _cli(args, cli_env, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "already done" in second.stdout and "epoch 1/2" not in second.stdout
    assert "probe_linear" in second.stdout
    forced = _cli(args + ["--force"], cli_env, tmp_path)
    assert forced.returncode == 0 and "epoch 1/2" in forced.stdout
    assert len(list((tmp_path / "results" / "runs").glob("*.parquet"))) == 1


def test_cli_failed_run_exits_nonzero_and_leaves_no_record(cli_env, tmp_path):
    out = _cli(["run", *FAST, "debug.nan_at_step=0"], cli_env, tmp_path)
    assert out.returncode == 1
    assert "failed" in out.stderr and "NonFiniteLoss" in out.stderr
    assert not list((tmp_path / "results" / "runs").glob("*.parquet"))


def test_cli_ls_lists_the_registries(cli_env, tmp_path):
    out = _cli(["ls"], cli_env, tmp_path)
    assert out.returncode == 0
    for name in ("mvae", "digits-ms", "mfeat6", "ggm-synth", "kmeans_acc", "retrieval_r1"):
        assert name in out.stdout
