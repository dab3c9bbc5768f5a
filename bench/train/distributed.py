"""Multi-worker runs: ``trainer.workers=N`` trains a run as a Ray Train ``TorchTrainer`` of N data-parallel workers.

* The process that calls :func:`run_distributed` (a sweep's trial, ``bench run``) holds the run's claim and its
  heartbeat and only waits: in a sweep it holds no CPU (docs/distributed.md: trial processes holding every CPU would
  wait forever for their workers).
* In each worker Ray Train has set the torch.distributed variables and created the process group (gloo on CPU,
  NCCL on GPU); ``deepspeed.initialize`` joins it with the trainer's ZeRO stage. :func:`bench.train.worker.execute` then
  runs as in one process, with the loop data parallel (bench/train/loop.py: the global batch split over the
  workers, losses and validation reduced).
* Rank 0 evaluates and writes the record; the other workers stop after training.
* Ray Train's run folder is the run's checkpoint folder: DeepSpeed's checkpoints are saved there and reported
  without a copy, and a new ``TorchTrainer`` of the same run (a killed trial started again, on any node that sees
  the results folder) gets the last one back, so it resumes from its last finished epoch.
* ``workers`` is not part of the run_id: 1 and N workers train the same run (the batch size is the global one).
"""

from __future__ import annotations

import os

import pandas as pd

from bench.ray_local import start_local_ray, stop_local_ray
from bench.store import ResultStore, owner_id
from bench.train.worker import execute


def worker_main(config: dict) -> None:
    """The function every Ray Train worker runs: :func:`bench.train.worker.execute`, as one process would."""
    store = ResultStore(**config["store"])
    execute(config["spec"], config["run_id"], store, progress=None, tune_report_key=config.get("tune_report_key"),
            owner=config["owner"])


def _use_gpu(trainer: dict, workers: int) -> bool:
    import ray

    device = trainer.get("device", "auto")
    if device == "cpu":
        return False
    if device == "cuda":
        return True
    return ray.cluster_resources().get("GPU", 0) >= workers


def _ensure_ray(workers: int, cpus_per_worker: float) -> str | None:
    """A local Ray for ``bench run`` outside a sweep; returns its temp folder when this call started it."""
    import ray

    if ray.is_initialized():
        return None
    # the user asked for this many workers: give Ray the CPUs to place them even on a smaller machine
    return start_local_ray(max(os.cpu_count() or 1, int(workers * max(cpus_per_worker, 1))))


def _worker_failure(e: BaseException) -> Exception:
    """The first failing worker's own error instead of Ray's multi-line summary (one clear line in the record)."""
    failures = getattr(e, "worker_failures", None) or {}
    if not failures:
        first = str(e).strip().splitlines()
        return RuntimeError(f"Ray Train failed: {first[0] if first else type(e).__name__}")
    rank, exc = min(failures.items())
    cause = getattr(exc, "cause", None)
    if cause is not None:
        lines = [ln for ln in str(cause).strip().splitlines() if ln.strip()]
        text = lines[0] if lines else ""
    else:  # a RayTaskError's own text is a traceback, which ends with the error
        cause = exc
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        text = lines[-1] if lines else ""
    return RuntimeError(f"worker {rank}: {type(cause).__name__}: {text}")


def run_distributed(spec: dict, run_id: str, store: ResultStore, cpus_per_worker: float = 1.0,
                    tune_report_key: str | None = None) -> pd.DataFrame:
    import ray
    import ray.train
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer_cfg = spec["trainer"]
    workers = int(trainer_cfg["workers"])
    started = _ensure_ray(workers, cpus_per_worker)
    try:
        use_gpu = _use_gpu(trainer_cfg, workers)
        resources = {"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
        callbacks = []
        if tune_report_key:
            from ray.tune.integration.ray_train import TuneReportCallback

            callbacks.append(TuneReportCallback())
        ckpt_dir = store.checkpoint_dir(run_id).resolve()
        ckpt_dir.parent.mkdir(parents=True, exist_ok=True)
        trainer = TorchTrainer(
            worker_main,
            # the claim is this process's: the workers check it each epoch and write the record under it
            train_loop_config={"spec": spec, "run_id": run_id, "store": store.handle(),
                               "tune_report_key": tune_report_key, "owner": owner_id()},
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources),
            run_config=RunConfig(name=ckpt_dir.name, storage_path=str(ckpt_dir.parent),
                                 checkpoint_config=CheckpointConfig(
                                     num_to_keep=max(1, int(trainer_cfg.get("keep_checkpoints", 1)))),
                                 # a failed run is the sweep's to retry (bounded, recorded), not Ray Train's
                                 failure_config=FailureConfig(max_failures=0), callbacks=callbacks),
        )
        try:
            trainer.fit()
        except ray.train.TrainingFailedError as e:
            raise _worker_failure(e) from None
    finally:
        stop_local_ray(started)
    record = store.get(run_id)
    if record is None:
        raise RuntimeError("the workers finished without rank 0 writing the record")
    return record
