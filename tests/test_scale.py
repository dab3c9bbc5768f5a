"""Multi-worker trials (``trainer.workers``): data-parallel correctness against one worker, a 2-worker run inside a
sweep on a two-node Ray cluster, resume of a killed 2-worker run from its last checkpointed epoch, and bad input."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from bench.compose import compose
from bench.errors import BenchError
from bench.ray_local import start_local_ray, stop_local_ray
from bench.run import resolve_spec
from bench.spec import compute_run_id
from bench.store import ResultStore
from conftest import FAST, python

# measured: after one Adam step at lr 1e-2 the largest parameter difference between 2 workers x 32 and
# 1 worker x 64 is 1.5e-8 at ZeRO-0 and ZeRO-2 (float32 sums in another order); the bound leaves room for other
# CPUs and is still far below the 1e-2 that a step moves a parameter
TOLERANCE = 1e-6


# --- the per-worker slices of a global batch ------------------------------------------------------------------
def _batch(n):
    return {"data": {"x": torch.arange(n, dtype=torch.float32)[:, None]}, "mask": torch.ones(n, 1, dtype=torch.bool),
            "label": torch.arange(n)}


def test_a_global_batch_splits_into_contiguous_weighted_slices():
    from bench.train.loop import shard

    parts = [shard(_batch(64), r, 2) for r in range(2)]
    assert [p[0]["label"].tolist() for p in parts] == [list(range(32)), list(range(32, 64))]
    assert [p[1] for p in parts] == [1.0, 1.0]
    # an uneven last batch: the weights make the average of the workers' losses the mean over the whole batch
    parts = [shard(_batch(5), r, 2) for r in range(2)]
    assert [len(p[0]["label"]) for p in parts] == [2, 3]
    assert [p[1] for p in parts] == pytest.approx([2 * 2 / 5, 3 * 2 / 5])
    averaged = sum(w * b["label"].float().mean() for b, w in parts) / 2  # what DeepSpeed's all-reduce averages
    assert float(averaged) == pytest.approx(float(torch.arange(5.0).mean()))
    # fewer samples than workers: the empty worker still joins the all-reduce, at weight 0
    empty = shard(_batch(1), 0, 2)
    assert empty[1] == 0.0 and len(empty[0]["label"]) == 1


# --- data-parallel correctness --------------------------------------------------------------------------------
class Toy(torch.nn.Module):
    """A loss that is a plain mean over samples, with no sampling: data parallelism must reproduce it exactly."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
        self.batch_sizes = []

    def on_epoch_start(self, epoch, n_epochs):
        pass

    def loss(self, batch):
        x = batch["data"]["x"]
        self.batch_sizes.append(len(x))
        target = torch.sin(x[:, :4] * 3.0) + x[:, 4:] ** 2
        return {"loss": ((self.net(x) - target) ** 2).sum(1).mean()}

    def forward(self, batch):
        return self.loss(batch)


def _toy_data(n=64):
    from bench.data.contracts import Modality, MultimodalDataset

    g = torch.Generator().manual_seed(1)
    return MultimodalDataset.complete((Modality("x", "vector", (8,)),), {"x": torch.randn(n, 8, generator=g)},
                                      torch.zeros(n, dtype=torch.long))


def _trainer(stage, batch):
    return {"device": "cpu", "epochs": 1, "batch_size": batch, "lr": 1e-2, "weight_decay": 0.0,
            "gradient_clipping": 0.0, "zero_stage": stage, "precision": "fp32", "workers": 1}


def _one_step(stage, batch, data):
    from bench.train.loop import train

    model = Toy()
    train(model, data, None, _trainer(stage, batch), "dp-check", ckpt_dir=None)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, model.batch_sizes


def _dp_worker(config):
    import ray.train

    out = {stage: _one_step(stage, 64, _toy_data()) for stage in config["stages"]}
    if ray.train.get_context().get_world_rank() == 0:
        torch.save(out, config["path"])


def _max_diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_two_workers_take_the_same_step_as_one_worker_with_the_global_batch(tmp_path):
    from ray import cloudpickle
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    data = _toy_data()
    reference, sizes = _one_step(0, 64, data)  # one worker, the global batch of 64
    assert sizes == [64]
    half, _ = _one_step(0, 64, data.subset(torch.arange(32)))
    initial = Toy().state_dict()
    # the comparison can tell: one step moves the parameters, and half the data moves them elsewhere
    assert _max_diff(reference, initial) > 1e-3 and _max_diff(half, reference) > 1000 * TOLERANCE

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    os.environ["RAY_AUTH_MODE"] = "disabled"  # no token file in the home folder for a throwaway instance
    temp = start_local_ray(2, object_store_mb=128)
    try:
        TorchTrainer(_dp_worker, train_loop_config={"stages": [0, 2], "path": str(tmp_path / "params.pt")},
                     scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
                     run_config=RunConfig(name="dp", storage_path=str(tmp_path / "ray"))).fit()
    finally:
        stop_local_ray(temp)
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    got = torch.load(tmp_path / "params.pt", weights_only=False)
    for stage in (0, 2):
        params, sizes = got[stage]
        assert sizes == [32], "each worker computed its loss on its own half of the global batch"
        diff = _max_diff(params, reference)
        print(f"ZeRO-{stage}: max |2 workers x 32 - 1 worker x 64| after one step = {diff:.3g}")
        assert diff <= TOLERANCE, (stage, diff)


# --- identity and bad input -----------------------------------------------------------------------------------
def test_workers_are_not_part_of_the_run_id_and_the_batch_must_divide():
    one = resolve_spec(compose(FAST))
    two = resolve_spec(compose(FAST + ["trainer.workers=2"]))
    assert two["trainer"]["workers"] == 2 and compute_run_id(one) == compute_run_id(two)
    assert compute_run_id(resolve_spec(compose(FAST + ["trainer.batch_size=64"]))) != compute_run_id(one)
    with pytest.raises(BenchError, match=r"trainer.batch_size=100 does not divide among trainer.workers=3"):
        resolve_spec(compose(FAST + ["trainer.workers=3", "trainer.batch_size=100"]))
    with pytest.raises(BenchError, match="trainer.workers must be at least 1"):
        resolve_spec(compose(FAST + ["trainer.workers=0"]))


def test_cli_refuses_a_batch_that_does_not_divide_in_one_line(tmp_path):
    env = {**os.environ, "MMRL_RESULTS": str(tmp_path / "results")}
    out = subprocess.run([python(), "-m", "bench", "run", *FAST, "trainer.workers=3", "trainer.batch_size=128"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not divide among trainer.workers=3" in lines[0], out.stderr


# --- a 2-worker run in a sweep on a two-node cluster, killed and resumed ----------------------------------------
SUITE_OVERRIDES = ["trainer.progress=false", "eval.metrics=[probe_linear]", "eval.probe_max_train=300",
                   "trainer.workers=2", "trainer.keep_checkpoints=10"]


def _suite(tmp_path: Path, epochs: int) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({
        "name": "scale", "methods": ["mvae"], "benchmarks": [{"name": "digits-ms", "overrides": ["benchmark.variants=1"]}],
        "obs_ratios": [1.0], "seeds": [0], "max_retries": 0,
        "overrides": [*SUITE_OVERRIDES, f"trainer.epochs={epochs}"]}))
    return path


def _sweep(tmp_path, suite, address, **popen):
    env = {**os.environ, "MMRL_RESULTS": str(tmp_path / "results"), "RAY_AUTH_MODE": "disabled"}
    return subprocess.Popen([python(), "-m", "bench", "sweep", "--suite", str(suite), "--address", address],
                            env=env, cwd=tmp_path, start_new_session=True, text=True, **popen)


@pytest.fixture
def two_nodes():
    from ray.cluster_utils import Cluster

    os.environ["RAY_AUTH_MODE"] = "disabled"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


# -m slow (55 s): the default run keeps the single-worker kill-and-resume (tests/test_faults.py) and the two-worker step
@pytest.mark.slow
def test_a_two_worker_run_in_a_sweep_is_killed_then_resumes_from_its_last_epoch(tmp_path, two_nodes):
    """One CPU per node: the two workers of the run are on different nodes."""
    suite = _suite(tmp_path, epochs=5)
    log = open(tmp_path / "first.log", "w")
    proc = _sweep(tmp_path, suite, two_nodes.address, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 400
        while not list((tmp_path / "results" / "checkpoints").glob("*/epoch_0001")):  # two epochs checkpointed
            assert proc.poll() is None, "the sweep ended before it could be killed: " + (tmp_path / "first.log").read_text()
            assert time.time() < deadline, "no checkpoint of epoch 2"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver; Ray then ends its trial and the trial's workers
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(1.0)  # let a save in flight at the kill land, so that the mtimes below are final
    (ckpt,) = (tmp_path / "results" / "checkpoints").iterdir()
    run_id = ckpt.name
    assert not (tmp_path / "results" / "runs" / f"{run_id}.parquet").exists(), "killed mid-training"
    kept = {p.name: p.stat().st_mtime_ns for p in ckpt.glob("epoch_*")}
    assert "epoch_0000" in kept and "epoch_0004" not in kept

    again = _sweep(tmp_path, suite, two_nodes.address, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = again.communicate(timeout=500)[0]
    assert again.returncode == 0, out
    record = ResultStore(tmp_path / "results").get(run_id)
    assert set(record["workers"]) == {2}
    epochs = sorted(set(record[record["metric"] == "loss"]["epoch"]))
    assert epochs == [0, 1, 2, 3, 4], "the history of the epochs before the kill came back with the checkpoint"
    for name, mtime in kept.items():  # resumed after them: none of the epochs checkpointed before was trained again
        assert (ckpt / name).stat().st_mtime_ns == mtime, name
    assert (ckpt / "epoch_0004").exists()


# -m slow (37 s): the default run keeps the two-node sweep (tests/test_sweep.py) and the two-worker step
@pytest.mark.slow
def test_a_two_worker_run_in_a_sweep_on_two_nodes_records_two_workers(tmp_path, two_nodes):
    suite = _suite(tmp_path, epochs=1)
    proc = _sweep(tmp_path, suite, two_nodes.address, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = proc.communicate(timeout=500)[0]
    assert proc.returncode == 0, out
    (path,) = (tmp_path / "results" / "runs").glob("*.parquet")
    record = ResultStore(tmp_path / "results").get(path.stem)
    assert set(record["workers"]) == {2} and len(record) > 1
    assert f"mvae on digits-ms rho=1 seed=0 on 2 workers  ({path.stem})" in out, out  # the run's console line


@pytest.mark.slow
def test_a_tuned_cell_of_two_worker_trials_prunes_frees_their_cpus_and_finishes(tmp_path):
    """A trial that ASHA stops dies with its Ray Train controller; its workers' CPUs must come back (the
    placement-group janitor), or the next trial and the final run wait forever."""
    import optuna

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tw", "methods": ["mvae"], "benchmarks": [{"name": "digits-ms", "overrides": ["benchmark.variants=1"]}],
        "obs_ratios": [1.0], "seeds": [0], "max_retries": 0,
        "tune": {"n_trials": 3, "epochs": 2, "grace_period": 1, "reduction_factor": 2},
        "search": {"mvae": {"trainer.lr": {"loguniform": [1.0e-4, 3.0e-3]}}},
        "overrides": [*SUITE_OVERRIDES, "trainer.epochs=1"]}))
    env = {**os.environ, "MMRL_RESULTS": str(tmp_path / "results"), "RAY_AUTH_MODE": "disabled"}
    out = subprocess.run([python(), "-m", "bench", "sweep", "--suite", str(path), "--cpus", "2"], env=env,
                         cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    storage = f"sqlite:///{tmp_path / 'results' / 'optuna.sqlite'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    states = [t.state.name for t in optuna.load_study(study_name=summary.study_name, storage=storage).trials]
    assert len(states) == 3 and "PRUNED" in states and "COMPLETE" in states, states
    store = ResultStore(tmp_path / "results")
    finals = [p.stem for p in store.runs_dir.glob("*.parquet") if store.get_spec(p.stem)["phase"] == "final"]
    assert len(finals) == 1 and set(store.get(finals[0])["workers"]) == {2}


class _NotATensor:
    pass


def test_deepspeed_checkpoints_are_loaded_weights_only(tmp_path):
    """The multi-worker resume swaps DeepSpeed's unpickling loader for torch.load(weights_only=True)."""
    import pickle

    import torch

    from bench.train.loop import _weights_only_load

    torch.save({"w": torch.ones(2), "epoch": 3}, tmp_path / "ok.pt")
    assert _weights_only_load(tmp_path / "ok.pt")["epoch"] == 3
    torch.save({"evil": _NotATensor()}, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError):
        _weights_only_load(tmp_path / "evil.pt")
