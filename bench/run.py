"""One run end to end: resolve the spec, claim it, then train, evaluate and store it in this process
(:func:`bench.train.worker.execute`) or as a Ray Train job (:mod:`bench.train.distributed`) (docs/design.md "One run,
end to end")."""

from __future__ import annotations

import logging
import os
import shutil
import time
import traceback
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch

from bench.config import config_dict, make_config
from bench.data.splits import check_obs_ratio, PROTOCOLS
from bench.errors import BenchError, RunFailed
from bench.registry import BENCHMARKS, METHODS, METRICS
from bench.spec import RunSpec, compute_run_id
from bench.store import ClaimHeld, ClaimLost, ResultStore, connection_lost, owner_id
from bench.train.config import EvalConfig, TrainerConfig, device_problem, resolve_auto_device
from bench.train.tracking import tensorboard_dir
# seed_everything: re-exported for callers that seed as a run does (tests/test_peer_multivae.py)
from bench.train.worker import execute, seed_everything  # noqa: F401

log = logging.getLogger(__name__)


def _named(section: dict, what: str, registry) -> tuple[type, dict]:
    section = dict(section or {})
    name = section.pop("name", None)
    if not name:
        raise BenchError(f"no {what} given; valid: {', '.join(registry.names())}")
    cls = registry.get(name)
    cfg = make_config(cls.Config, section, f"{what} {name}")
    return cls, {"name": name, "version": int(cls.version), "config": config_dict(cfg)}


def resolve_spec(cfg: dict) -> dict:
    """A composed config (plain dict) -> the fully resolved, validated RunSpec dict. Raises BenchError."""
    allowed = {"method", "benchmark", "trainer", "eval", "obs_ratio", "missing", "seed", "suite", "phase", "debug",
               "results_dir", "index_url", "protocol"}
    unknown = set(cfg) - allowed
    if unknown:
        raise BenchError(f"unknown top-level option(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(allowed))}")
    method_cls, method = _named(cfg.get("method"), "method", METHODS)
    bench_cls, bench = _named(cfg.get("benchmark"), "benchmark", BENCHMARKS)
    trainer = config_dict(make_config(TrainerConfig, cfg.get("trainer"), "trainer"))
    if trainer["gradient_clipping"] is None:   # unset: the method's own default enters the spec (and the run_id)
        trainer["gradient_clipping"] = float(method_cls.default_gradient_clipping)
    if trainer["device"] == "auto":  # the explicit fallback: the spec (and run_id) records the device that trains
        trainer = resolve_auto_device(trainer, torch.cuda.is_available())
    ev = config_dict(make_config(EvalConfig, cfg.get("eval"), "eval"))
    for m in ev["metrics"] or []:
        METRICS.get(m)
    missing = cfg.get("missing", "paired")
    if missing not in PROTOCOLS:
        raise BenchError(f"unknown missing protocol {missing!r}; valid: {', '.join(PROTOCOLS)}")
    try:
        seed = int(cfg.get("seed", 0))
    except (TypeError, ValueError):
        raise BenchError(f"seed must be an integer, got {cfg.get('seed')!r}") from None
    spec = RunSpec(method=method, benchmark=bench, obs_ratio=check_obs_ratio(cfg.get("obs_ratio", 1.0)), seed=seed,
                   trainer=trainer, eval=ev, missing=missing, suite=str(cfg.get("suite", "adhoc")),
                   phase=_phase(cfg.get("phase", "final")), protocol=_protocol_label(cfg.get("protocol", "default")),
                   debug={k: v for k, v in (cfg.get("debug") or {}).items() if v is not None})
    return spec.to_dict()


def _protocol_label(protocol) -> str:
    # bench.compose turns the protocol group into its name; a mapping here means the config was not composed by it
    if not isinstance(protocol, str):
        raise BenchError(f"protocol must be a protocol's name, got {protocol!r}; compose the config with bench.compose")
    return protocol


def _phase(phase: str) -> str:
    if phase not in ("final", "tune"):
        raise BenchError(f"phase must be final or tune, got {phase!r}")
    return phase


@dataclass
class RunOutcome:
    run_id: str
    status: str          # "done" | "cached"
    record: pd.DataFrame
    wall_s: float = 0.0


def run_one(spec: dict, store: ResultStore, force: bool = False,
            progress: Callable[[dict], None] | None = None, cpus_per_worker: float = 1.0,
            tune_report_key: str | None = None) -> RunOutcome:
    """Train and evaluate one resolved spec unless the store has it. Failures are recorded and re-raised as
    :class:`RunFailed`; nothing partial is written. A process whose claim was taken over while it stalled raises
    :class:`ClaimLost` and writes nothing (docs/store.md).

    With ``trainer.workers`` > 1 the run trains as a Ray Train job of that many workers (``cpus_per_worker``
    each) while this process holds the claim; ``tune_report_key`` says that it is a Tune trial, whose workers
    report each epoch to Tune."""
    run_id = compute_run_id(spec)
    if store.is_done(run_id) and not force:
        return RunOutcome(run_id, "cached", store.get(run_id))
    check_device(spec["trainer"])  # before the claim: a refused run leaves no index row, record or checkpoint
    meta = {"method": spec["method"]["name"], "benchmark": spec["benchmark"]["name"],
            "obs_ratio": spec["obs_ratio"], "seed": spec["seed"], "suite": spec.get("suite", "")}
    problem = store.record_problem(run_id)
    if problem not in (None, "missing"):
        # a torn or unreadable record is not done: say so, keep the file aside for inspection, train again
        log.warning("run %s: its record is %s; training it again", run_id, problem)
    if not store.claim(run_id, meta, force=force):
        row = store.index_row(run_id) or {}
        raise ClaimHeld(f"run {run_id} is being trained by another process ({row.get('owner', '?')}); "
                        "wait for it or use another results folder")
    store.quarantine(run_id)
    _log_training(run_id)
    t0 = time.perf_counter()
    if force:  # retrain from scratch, not from the finished run's last checkpoint, and draw its curves afresh
        shutil.rmtree(store.checkpoint_dir(run_id), ignore_errors=True)
        shutil.rmtree(tensorboard_dir(store.root, run_id), ignore_errors=True)
    try:
        if not store.mark(run_id, "running"):
            raise ClaimLost(f"run {run_id}: claim taken over before training started, now {store.holder(run_id)}")
        with store.heartbeat(run_id):
            if int(spec["trainer"].get("workers", 1)) > 1:
                from bench.train.distributed import run_distributed

                record = run_distributed(spec, run_id, store, cpus_per_worker=cpus_per_worker,
                                         tune_report_key=tune_report_key)
            else:
                record = execute(spec, run_id, store, progress)
    except KeyboardInterrupt:
        store.release(run_id)
        raise
    except ClaimLost:  # said once, by whoever called (the CLI's error line, the sweep's note)
        raise
    except Exception as e:
        if connection_lost(e) is not None:  # the index went away: not the run's failure, and nowhere to write it
            raise
        msg = f"{type(e).__name__}: {e}"
        if not store.mark(run_id, "failed", error=msg + "\n" + traceback.format_exc(limit=20)):
            # the claim was taken over while this process stalled: the run is the new owner's, and this late
            # failure must not overwrite its row (a "failed" row would let a third process start it again)
            raise ClaimLost(f"run {run_id} failed ({msg.splitlines()[0]}) after its claim was taken over by "
                            f"{store.holder(run_id)}; nothing written") from e
        raise RunFailed(f"run {run_id} failed: {msg}") from e
    return RunOutcome(run_id, "done", record, time.perf_counter() - t0)


def check_device(trainer: dict) -> None:
    """Refuse (BenchError, exit 2) a trainer whose device is not visible where the run trains: a device=cuda spec
    trained on the CPU would store a record whose identity claims a GPU run. Several workers count the GPUs of
    the Ray cluster they will be placed on (this process may hold none), one process its own."""
    if trainer.get("device") != "cuda":
        return
    workers, where = int(trainer.get("workers", 1)), ""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if workers > 1:
        import ray

        if ray.is_initialized():
            gpus, where = int(ray.cluster_resources().get("GPU", 0)), "in the Ray cluster"
    bf16 = gpus == 0 or workers > 1 or torch.cuda.is_bf16_supported()
    problem = device_problem(trainer, gpus, bf16_supported=bf16, where=where)
    if problem:
        raise BenchError(problem)


def _log_training(run_id: str) -> None:
    """One line per training started, appended to the file named by ``MMRL_TRAINING_LOG`` (unset: nothing): the
    audit trail that lets fault-injection tests (and operators) count trainings rather than record files."""
    path = os.environ.get("MMRL_TRAINING_LOG")
    if path:
        # one short write with O_APPEND: lines of concurrent processes do not interleave
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{run_id} {owner_id()}\n".encode())
        finally:
            os.close(fd)
