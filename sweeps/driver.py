"""The sweep driver: a tune phase per cell (Ray Tune + OptunaSearch + ASHA) and a final phase (every seed of the
best or default configuration at full budget), both scheduled by Ray with declared resources.

Resume needs no Tune state: the result store is the truth. Done runs are never trained again (trials included),
claims of dead processes are taken over, and each cell's Optuna study is reopened by its deterministic name with
only the missing trials left to run.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError, RunFailed
from bench.spec import compute_run_id, derive_seed
from bench.store import ResultStore, mask_url
from sweeps.plan import Cell, Plan, final_spec, run_status
from sweeps.space import apply_params, to_tune

log = logging.getLogger(__name__)


# --- one run inside a Ray worker ------------------------------------------------------------------------------
def execute_run(spec: dict, root: str, index_url: str | None, threads: int) -> dict:
    """Train one final run in this process; never raises for a failure of the run itself."""
    import torch

    from bench.run import run_one

    torch.set_num_threads(max(1, threads))
    store = ResultStore(root, index_url)
    t0 = time.perf_counter()
    try:
        out = run_one(spec, store)
        return {"run_id": out.run_id, "status": out.status, "wall_s": time.perf_counter() - t0, "error": ""}
    except RunFailed as e:
        return {"run_id": compute_run_id(spec), "status": "failed", "wall_s": time.perf_counter() - t0,
                "error": str(e.__cause__ or e)}
    except BenchError as e:  # claimed by another live driver
        return {"run_id": compute_run_id(spec), "status": "busy", "wall_s": 0.0, "error": str(e)}


def tune_trial(config: dict, base_cfg: dict, epochs: int, report_key: str, root: str, index_url: str | None,
               threads: int) -> None:
    """One Tune trial: the sampled parameters applied to the cell's configuration at the tuning budget; every
    epoch reports the validation metric, which ASHA may answer by stopping the trial (a SystemExit here)."""
    import torch
    from ray import tune

    from bench.run import resolve_spec, run_one

    torch.set_num_threads(max(1, threads))
    cfg = apply_params(base_cfg, {k: v for k, v in config.items()})
    cfg["phase"] = "tune"
    cfg["trainer"] = {**cfg["trainer"], "epochs": epochs}
    spec = resolve_spec(cfg)
    run_id = compute_run_id(spec)
    store = ResultStore(root, index_url)
    if store.is_done(run_id):  # a resumed sweep: replay the stored curve instead of training again
        rec = store.get(run_id)
        metric = {"val_probe": "probe_split_half", "val_loss": "loss"}[report_key]
        curve = rec[(rec["split"] == "val") & (rec["metric"] == metric)].sort_values("epoch")
        for r in curve.itertuples():
            tune.report({"epoch": int(r.epoch) + 1, report_key: float(r.value), "run_id": run_id})
        return

    last: dict = {}

    def progress(ev: dict) -> None:
        if ev["event"] != "epoch":
            return
        entry = {"epoch": ev["epoch"] + 1, report_key: ev[report_key], "run_id": run_id}
        if entry["epoch"] < epochs:
            tune.report(entry)
        else:  # ASHA stops every trial at max_t: report the last epoch only once the record is stored
            last.update(entry)

    try:
        run_one(spec, store, progress=progress)
    except SystemExit:
        if not store.is_done(run_id):
            store.mark(run_id, "pruned")
        raise
    tune.report(last)


def _prune_aware_search(space, metric, mode, study_name, storage, seed, max_t):
    from optuna.trial import TrialState
    from ray.tune.search.optuna import OptunaSearch

    class PruneAwareOptunaSearch(OptunaSearch):
        """Ray's OptunaSearch records trials that ASHA stopped as COMPLETE; record them as PRUNED, with their
        last value as an intermediate value, so the study says what happened (RAY_DEEPSPEED.md)."""

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
            if not error and result and int(result.get("epoch", max_t)) < max_t and trial_id in self._ot_trials:
                ot_trial = self._ot_trials[trial_id]
                value = result.get(metric)
                if value is not None and math.isfinite(value):
                    ot_trial.report(float(value), int(result["epoch"]))
                self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
                self._completed_trials.add(trial_id)
                return
            super().on_trial_complete(trial_id, result=result, error=error)

    return PruneAwareOptunaSearch(space=space, metric=metric, mode=mode, study_name=study_name, storage=storage,
                                  seed=seed)


def optuna_storage(url: str):
    import optuna

    try:
        return optuna.storages.RDBStorage(url)
    except Exception as e:
        raise BenchError(f"cannot open the Optuna storage {mask_url(url)}: {type(e).__name__}") from None


def tune_cell(cell: Cell, plan: Plan, root: Path, index_url: str | None, storage_url: str, fresh: bool,
              show) -> dict:
    """Run the missing trials of the cell's study; return the best trial's parameters ({} = defaults)."""
    import optuna
    from optuna.trial import TrialState
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    budget = plan.suite.tune
    storage = optuna_storage(storage_url)
    name = cell.study_name(plan.suite)
    if fresh:
        try:
            optuna.delete_study(study_name=name, storage=storage)
        except KeyError:
            pass
    direction = "maximize" if budget.mode == "max" else "minimize"
    study = optuna.create_study(study_name=name, storage=storage, direction=direction, load_if_exists=True)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        # left RUNNING by a killed driver: it can never finish, and it must not count against the budget
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    remaining = budget.n_trials - finished
    if remaining > 0:
        cpus, gpus = plan.suite.resources["cpu"], plan.suite.resources["gpu"]
        import ray

        total_cpu = int(ray.cluster_resources().get("CPU", 1))
        show(f"tuning {cell.key}: {remaining} of {budget.n_trials} trials left (study {name})")
        trainable = tune.with_resources(
            tune.with_parameters(tune_trial, base_cfg=cell.cfg, epochs=budget.epochs, report_key=budget.report_key,
                                 root=str(root), index_url=index_url, threads=int(cpus)),
            {"cpu": cpus, "gpu": gpus})
        searcher = _prune_aware_search(to_tune(cell.space), budget.report_key, budget.mode, name, storage,
                                       derive_seed(name, "optuna") % 2**31, budget.epochs)
        scheduler = ASHAScheduler(time_attr="epoch", max_t=budget.epochs, grace_period=budget.grace_period,
                                  reduction_factor=budget.reduction_factor)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(metric=budget.report_key, mode=budget.mode, search_alg=searcher,
                                        scheduler=scheduler, num_samples=remaining, reuse_actors=True,
                                        max_concurrent_trials=max(1, int(total_cpu // max(cpus, 1e-9)))),
            run_config=tune.RunConfig(name=name, storage_path=str(root / "tune"), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=plan.suite.max_retries)),
        )
        tuner.fit()
    study = optuna.load_study(study_name=name, storage=storage)
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        show(f"warning: no trial of {cell.key} completed; the final phase uses the default configuration")
        return {}
    return dict(study.best_trial.params)


# --- the final phase --------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    label: str
    run_id: str
    status: str
    error: str = ""
    wall_s: float = 0.0


@dataclass
class SweepResult:
    runs: list[RunResult] = field(default_factory=list)
    wall_s: float = 0.0
    specs: list[dict] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.runs)

    @property
    def ok(self) -> bool:
        return all(r.status in ("done", "cached") for r in self.runs)


def label(spec: dict) -> str:
    return (f"{spec['method']['name']} on {spec['benchmark']['name']} rho={spec['obs_ratio']:g} "
            f"seed={spec['seed']}")


def run_finals(specs: list[dict], plan: Plan, root: Path, index_url: str | None, display) -> list[RunResult]:
    import ray

    cpus, gpus = plan.suite.resources["cpu"], plan.suite.resources["gpu"]
    remote = ray.remote(execute_run).options(num_cpus=cpus, num_gpus=gpus, max_retries=plan.suite.max_retries)
    store = ResultStore(root, index_url)
    results: dict[str, RunResult] = {}
    todo = []
    for spec in specs:
        rid = compute_run_id(spec)
        if store.is_done(rid):
            results[rid] = RunResult(label(spec), rid, "cached")
        else:
            todo.append(spec)
    attempts: dict[str, int] = {}
    pending: dict[Any, dict] = {}

    def submit(spec: dict) -> None:
        rid = compute_run_id(spec)
        attempts[rid] = attempts.get(rid, 0) + 1
        pending[remote.remote(spec, str(root), index_url, int(max(cpus, 1)))] = spec

    for spec in todo:
        submit(spec)
    display.slots = max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus, 1e-9)))
    if gpus:
        display.slots = min(display.slots, max(1, int(ray.cluster_resources().get("GPU", 0) // gpus)))
    display.start(total=len(specs), done=len(results))
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        for ref in ready:
            spec = pending.pop(ref)
            rid = compute_run_id(spec)
            try:
                out = ray.get(ref)
            except Exception as e:  # the worker died (OOM, signal): the run's claim is stale and can be retried
                out = {"run_id": rid, "status": "failed", "error": f"worker lost: {type(e).__name__}", "wall_s": 0.0}
                store.mark(rid, "failed", error=out["error"])
            if out["status"] == "failed" and attempts[rid] <= plan.suite.max_retries:
                display.note(f"retrying {label(spec)} ({attempts[rid]}/{plan.suite.max_retries}): {out['error']}")
                submit(spec)
                continue
            results[rid] = RunResult(label(spec), rid, out["status"], out.get("error", ""), out.get("wall_s", 0.0))
            display.finished(results[rid])
        display.tick(pending=len(pending))
    display.stop()
    return [results[compute_run_id(s)] for s in specs if compute_run_id(s) in results]


def run_sweep(plan: Plan, root: Path, index_url: str | None = None, optuna_url: str | None = None,
              address: str | None = None, num_cpus: int | None = None, fresh: bool = False, display=None) -> SweepResult:
    from sweeps.progress import SweepDisplay
    from sweeps.ray_utils import start_ray, stop_ray

    display = display or SweepDisplay()
    root = Path(root).resolve()
    ResultStore(root, index_url)  # fail on a bad store before starting Ray
    optuna_url = optuna_url or f"sqlite:///{root / 'optuna.sqlite'}"
    if plan.tuned:
        optuna_storage(optuna_url)
    t0 = time.perf_counter()
    started = start_ray(address, num_cpus)
    try:
        specs = []
        for cell in plan.cells:
            cfg = cell.cfg
            if plan.tuned and cell.space:
                params = tune_cell(cell, plan, root, index_url, optuna_url, fresh, display.note)
                cfg = apply_params(cell.cfg, params)
            specs += [final_spec(cell, s, cfg) for s in plan.suite.seeds]
        runs = run_finals(specs, plan, root, index_url, display)
    finally:
        stop_ray(started)
    return SweepResult(runs, time.perf_counter() - t0, specs)


def dry_run_rows(plan: Plan, store: ResultStore) -> list[tuple[str, str, str]]:
    """(label, run_id, status) of every final run known now; tuned cells whose study is not finished are
    listed as awaiting tuning."""
    rows = []
    for cell in plan.cells:
        for seed in plan.suite.seeds:
            spec = final_spec(cell, seed)
            if plan.tuned and cell.space:
                rows.append((label(spec), "-", "after tuning"))
            else:
                rows.append((label(spec), compute_run_id(spec), run_status(store, spec)))
    return rows
