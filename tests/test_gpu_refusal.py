"""A trainer that asks for a GPU where none is visible is refused before anything is stored (issue 16), and
``device: auto`` is the explicit fallback whose resolved device and precision are what the spec and run_id say.
A GPU suite on a CPU machine still runs, on its CPU settings (docs/gpu.md)."""

import os
import sqlite3
import subprocess

import pytest
import torch

from bench.compose import compose
from bench.config import make_config
from bench.errors import BenchError
from bench.run import check_device, resolve_spec, run_one
from bench.spec import compute_run_id
from bench.store import ResultStore
from bench.train.config import TrainerConfig, device_problem, resolve_auto_device
from conftest import python

GPU_RUN = ["method=mvae", "benchmark=bc-3view", "trainer=gpu-zero2"]
TINY = ["trainer.epochs=1", "trainer.progress=false", "eval.metrics=[probe_linear]"]


def _no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def _index_rows(root) -> int:
    path = root / "index.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as c:
        tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return sum(c.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables)


def _stored_files(root) -> list:
    return [p for p in root.rglob("*") if p.is_file() and p.name != "index.sqlite"]


# --- the refusal ---------------------------------------------------------------------------------------------------
def test_gpu_zero2_without_a_gpu_exits_2_with_one_line_and_stores_nothing(tmp_path):
    results, log = tmp_path / "results", tmp_path / "trainings.log"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "MMRL_TRAINING_LOG": str(log)}
    p = subprocess.run([python(), "-m", "bench", "run", *GPU_RUN, "--results", str(results)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "device=cuda" in lines[0] and "no GPU is visible" in lines[0]
    assert "trainer=cpu" in lines[0] and "device=auto" in lines[0]  # what is valid instead
    assert "training" not in p.stdout  # refused before the run was announced, let alone trained
    assert not log.exists()  # no training started
    assert _index_rows(results) == 0 and _stored_files(results) == []


def test_run_one_refuses_before_the_claim(tmp_path, monkeypatch):
    _no_gpu(monkeypatch)
    spec = resolve_spec(compose([*GPU_RUN, *TINY]))
    store = ResultStore(tmp_path)
    with pytest.raises(BenchError, match="no GPU is visible"):
        run_one(spec, store)
    assert store.index_row(compute_run_id(spec)) is None
    assert not store.checkpoint_dir(compute_run_id(spec)).exists() and _stored_files(tmp_path) == []


def test_a_sweep_task_reports_the_refusal_as_its_error_and_writes_nothing(tmp_path, monkeypatch):
    from sweeps.driver import execute_run

    _no_gpu(monkeypatch)
    spec = resolve_spec(compose([*GPU_RUN, *TINY]))
    store = ResultStore(tmp_path)
    out = execute_run(spec, store.handle(), threads=1)
    assert out["status"] == "failed" and "no GPU is visible" in out["error"]
    assert _index_rows(tmp_path) == 0 and _stored_files(tmp_path) == []


def test_device_problem_names_what_is_missing():
    cuda = {"device": "cuda", "precision": "bf16", "zero_stage": 1, "workers": 1}
    assert device_problem({**cuda, "device": "cpu"}, gpus=0) is None
    assert device_problem(cuda, gpus=1) is None
    assert "no GPU is visible" in device_problem(cuda, gpus=0)
    two = device_problem({**cuda, "workers": 2}, gpus=1, where="in the Ray cluster")
    assert "only 1 GPU visible in the Ray cluster" in two and "trainer.workers=1" in two
    assert "precision=fp32" in device_problem(cuda, gpus=1, bf16_supported=False)
    assert device_problem({**cuda, "precision": "fp32"}, gpus=1, bf16_supported=False) is None


def test_check_device_counts_this_process_gpus(monkeypatch):
    _no_gpu(monkeypatch)
    check_device({"device": "cpu", "precision": "fp32", "workers": 1})
    with pytest.raises(BenchError, match="zero_stage=2"):
        check_device({"device": "cuda", "precision": "bf16", "zero_stage": 2, "workers": 1})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    with pytest.raises(BenchError, match="no bf16 support"):
        check_device({"device": "cuda", "precision": "bf16", "zero_stage": 2, "workers": 1})
    check_device({"device": "cuda", "precision": "fp32", "zero_stage": 2, "workers": 1})


def test_bf16_on_the_cpu_is_refused_as_a_config_error():
    with pytest.raises(ValueError, match="bf16 runs on a GPU only"):
        TrainerConfig(device="cpu", precision="bf16")
    with pytest.raises(BenchError, match="bf16 runs on a GPU only"):
        make_config(TrainerConfig, {"device": "cpu", "precision": "bf16"}, "trainer")


# --- device: auto, the explicit fallback ---------------------------------------------------------------------------
@pytest.mark.parametrize("cuda, device, precision", [(False, "cpu", "fp32"), (True, "cuda", "bf16")])
def test_auto_resolves_to_the_device_and_precision_that_will_run(cuda, device, precision):
    trainer = {"device": "auto", "precision": "bf16", "zero_stage": 2}
    assert resolve_auto_device(trainer, cuda) == {"device": device, "precision": precision, "zero_stage": 2}
    assert resolve_auto_device({"device": "cuda", "precision": "bf16"}, False)["device"] == "cuda"  # not auto


def test_auto_on_a_cpu_machine_is_recorded_as_cpu_fp32_and_is_the_cpu_trainers_run(monkeypatch):
    _no_gpu(monkeypatch)
    auto = resolve_spec(compose(["method=mvae", "benchmark=bc-3view", "trainer.device=auto"]))
    assert (auto["trainer"]["device"], auto["trainer"]["precision"]) == ("cpu", "fp32")
    cpu = resolve_spec(compose(["method=mvae", "benchmark=bc-3view"]))
    assert compute_run_id(auto) == compute_run_id(cpu)  # the same training, the same run
    gpu_auto = resolve_spec(compose([*GPU_RUN, "trainer.device=auto"]))
    assert (gpu_auto["trainer"]["device"], gpu_auto["trainer"]["precision"]) == ("cpu", "fp32")
    check_device(gpu_auto["trainer"])  # and it is not refused


def test_auto_on_a_gpu_machine_is_recorded_as_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    spec = resolve_spec(compose([*GPU_RUN, "trainer.device=auto"]))
    assert (spec["trainer"]["device"], spec["trainer"]["precision"]) == ("cuda", "bf16")
    assert compute_run_id(spec) == compute_run_id(resolve_spec(compose(GPU_RUN)))  # = trainer=gpu-zero2's run
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert compute_run_id(resolve_spec(compose([*GPU_RUN, "trainer.device=auto"]))) != compute_run_id(spec)


@pytest.mark.parametrize("trainer", ["cpu", "gpu-zero1", "gpu-zero2"])
def test_named_trainers_resolve_the_same_with_or_without_a_gpu(trainer, monkeypatch):
    """The trainer files name their device: whether this machine sees a GPU changes none of their run_ids."""
    ids = []
    for cuda in (False, True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        spec = resolve_spec(compose(["method=mvae", "benchmark=bc-3view", f"trainer={trainer}"]))
        ids.append(compute_run_id(spec))
        assert spec["trainer"]["device"] == ("cpu" if trainer == "cpu" else "cuda")
    assert ids[0] == ids[1]


# --- a GPU suite on a CPU machine ---------------------------------------------------------------------------------
def _gpu_suite(tmp_path):
    path = tmp_path / "gpu-suite.yaml"
    path.write_text("name: gpu-fallback\nmethods: [mvae]\nbenchmarks: [bc-3view]\nobs_ratios: [1.0]\nseeds: [0]\n"
                    "overrides: [trainer.epochs=1, trainer.progress=false, 'eval.metrics=[probe_linear]']\n"
                    "gpu:\n  overrides: [trainer=gpu-zero2]\n  resources: {cpu: 1, gpu: 1}\n"
                    "resources: {cpu: 1, gpu: 0}\nmax_retries: 0\n")
    return path


def test_a_gpu_suite_plans_its_cpu_settings_where_no_gpu_is_seen_and_they_run(tmp_path, monkeypatch, capsys):
    from bench.cli import main
    from sweeps.driver import execute_run
    from sweeps.plan import default_runs, make_plan
    from sweeps.suite import load_suite

    _no_gpu(monkeypatch)
    path = str(_gpu_suite(tmp_path))
    suite = load_suite(path)
    cpu_spec, = default_runs(make_plan(suite.for_device(False)))
    gpu_spec, = default_runs(make_plan(suite.for_device(True)))
    assert cpu_spec["trainer"]["device"] == "cpu" and gpu_spec["trainer"]["device"] == "cuda"
    results = tmp_path / "results"
    assert main(["sweep", "--suite", path, "--dry-run", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert compute_run_id(cpu_spec) in out and compute_run_id(gpu_spec) not in out
    # --gpu says the cluster has GPUs though this machine has none: planning is not refused (the run is, where
    # it would train without one)
    assert main(["sweep", "--suite", path, "--gpu", "--dry-run", "--results", str(results)]) == 0
    assert compute_run_id(gpu_spec) in capsys.readouterr().out
    # the CPU settings train as a sweep task would, without meeting the refusal
    out = execute_run(cpu_spec, ResultStore(results).handle(), threads=1)
    assert out["status"] == "done", out["error"]
