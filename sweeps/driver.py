"""The sweep driver: a tune phase per cell (Ray Tune + OptunaSearch + ASHA) and a final phase (every seed of the
best or default configuration at full budget), both scheduled by Ray with declared resources.

Resume needs no Tune state: the result store is the truth. Done runs are never trained again (trials included),
claims of dead processes are taken over, and each cell's Optuna study is reopened by its deterministic name with
only the missing trials left to run.

Several drivers (machines, people) can share one store and one Optuna storage (PostgreSQL): a run another driver's
live process holds is waited for, not trained again, and taken over when its claim goes stale (no heartbeat for the
claim timeout); a tuned cell's trial budget counts the trials of every driver, and only the RUNNING trials of
drivers that stopped heart-beating are failed.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.compat import (mark_optuna_search_trial_told, optuna_search_study, optuna_search_trial, optuna_trial_id,
                          tune_console_env)
from bench.errors import BenchError, RunFailed
from bench.records import VAL_HISTORY_KEY
from bench.spec import compute_run_id, derive_seed
from bench.store import (ClaimHeld, ClaimLost, ResultStore, advisory_lock, connection_lost, db_error, error_chain,
                         mask_url, owner_id, resolve_url, schema_lock)
from sweeps.plan import Cell, Plan, final_spec, run_status
from sweeps.space import apply_params, to_optuna

log = logging.getLogger(__name__)


class StoreUnavailable(BenchError):
    """The run index or the Optuna storage went away mid-sweep (server down, network cut): the sweep stops; the
    records written so far are safe and a rerun finishes the rest."""

    exit_code = 1  # not bad input: the same command is right once the database is back


def lost_database(e: BaseException) -> tuple[BaseException, bool] | None:
    """The database error behind ``e`` (raised here, in a Ray task or through Optuna, which wraps it) when it says
    the database could not be reached or the connection broke, and whether it came through Optuna; None for
    any other error, a bug in a query included, which keeps its traceback."""
    from optuna.exceptions import StorageInternalError

    err = connection_lost(e)
    if err is None:
        return None
    return err, any(isinstance(x, StorageInternalError) for x in error_chain(e))


def store_unavailable(e: BaseException, index_url: str, optuna_url: str) -> StoreUnavailable | None:
    """The one line a sweep ends with when ``e`` is a lost database, else None."""
    found = lost_database(e)
    if found is None:
        return None
    err, via_optuna = found
    what, url = ("the Optuna storage", optuna_url) if via_optuna else ("the store index", index_url)
    return StoreUnavailable(f"lost {what} {mask_url(url)}: {db_error(err, url)}; the finished runs are safe: rerun "
                            "the same command when the database is back")


# --- one run inside a Ray worker ------------------------------------------------------------------------------
def workers_of(spec: dict) -> int:
    return int(spec["trainer"].get("workers", 1))


def execute_run(spec: dict, store_kw: dict, threads: int, cpus_per_worker: float = 1.0) -> dict:
    """Train one final run in this process; never raises for a failure of the run itself."""
    import torch

    from bench.run import run_one

    torch.set_num_threads(max(1, threads))
    t0 = time.perf_counter()
    try:
        store = ResultStore(**store_kw)
        out = run_one(spec, store, cpus_per_worker=cpus_per_worker)
        return {"run_id": out.run_id, "status": out.status, "wall_s": time.perf_counter() - t0, "error": ""}
    except ClaimHeld as e:  # claimed by another driver's live process: the driver waits for it
        return {"run_id": compute_run_id(spec), "status": "busy", "wall_s": 0.0, "error": str(e)}
    except ClaimLost as e:  # this process stalled and another took the run over: wait for the new owner's result
        return {"run_id": compute_run_id(spec), "status": "lost", "wall_s": 0.0, "error": str(e)}
    except RunFailed as e:
        return {"run_id": compute_run_id(spec), "status": "failed", "wall_s": time.perf_counter() - t0,
                "error": str(e.__cause__ or e)}
    except BenchError as e:  # e.g. the store became unreachable from this node
        return {"run_id": compute_run_id(spec), "status": "failed", "wall_s": time.perf_counter() - t0,
                "error": str(e), "store_lost": lost_database(e) is not None}
    except Exception as e:
        found = lost_database(e)
        if found is None:
            raise
        # the index went away under this run: not a failure of the run; the driver checks whether it can still
        # reach the index itself, and stops the sweep if not
        return {"run_id": compute_run_id(spec), "status": "failed", "wall_s": time.perf_counter() - t0,
                "error": f"lost the store index: {db_error(found[0], store_kw['index_url'])}", "store_lost": True}


def tune_trial(config: dict, base_cfg: dict, epochs: int, report_key: str, store_kw: dict, threads: int,
               cpus_per_worker: float = 1.0) -> None:
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
    store = ResultStore(**store_kw)
    if store.is_done(run_id):  # a resumed sweep: replay the stored curve instead of training again
        _replay(store, run_id, report_key)
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

    while True:
        try:
            run_one(spec, store, progress=progress, cpus_per_worker=cpus_per_worker, tune_report_key=report_key)
            break
        except SystemExit:
            if not store.is_done(run_id):
                store.mark(run_id, "pruned")
            raise
        except (ClaimHeld, ClaimLost):
            # the same parameters in another driver's trial: its result is this trial's, once it is stored
            while store.held_by_other(run_id) and not store.is_done(run_id):
                time.sleep(store.heartbeat_s)
            if store.is_done(run_id):
                _replay(store, run_id, report_key)
                return
    if last:
        tune.report(last)
    else:  # a multi-worker trial: its workers reported the other epochs, the record holds the last
        _replay(store, run_id, report_key, only_last=True)


def guarded_tune_trial(config: dict, **kw) -> None:
    """:func:`tune_trial`, except that a trial that lost the store waits a few of the driver's polls before it
    fails: a driver that lost the store too stops the sweep in that time with one line (see :class:`StoreWatch`),
    where the trial's error would have printed Tune's traceback first. Lost from this node only, it fails."""
    try:
        tune_trial(config, **kw)
    except Exception as e:
        if lost_database(e) is None:
            raise
        time.sleep(3 * poll_interval(kw["store_kw"]["heartbeat_s"]))
        raise


def poll_interval(heartbeat_s: float) -> float:
    """How often a driver looks at the store: at the heartbeat's pace, within [0.5 s, 5 s]."""
    return max(0.5, min(5.0, heartbeat_s))


def store_watch(store: ResultStore, searcher):
    """A Tune callback that reads the store at each poll interval from the tuning loop, so that a lost database
    stops the sweep at once rather than at the next trial's end, and raises the one the searcher kept."""
    from ray.tune import Callback

    class StoreWatch(Callback):
        def __init__(self, store: ResultStore, searcher):
            self.store, self.searcher, self.last = store, searcher, 0.0

        def __getstate__(self):  # Tune saves its callbacks with the experiment: an engine does not pickle
            return {"store": None, "searcher": None, "last": 0.0}

        def on_step_begin(self, iteration, trials, **info):
            if getattr(self.searcher, "lost", None) is not None:
                raise self.searcher.lost
            if self.store is not None and time.monotonic() - self.last >= poll_interval(self.store.heartbeat_s):
                self.last = time.monotonic()
                self.store.live_drivers()  # raises when the index cannot be reached

    return StoreWatch(store, searcher)  # arguments, not a closure: cloudpickle would save a captured store


def _replay(store: ResultStore, run_id: str, report_key: str, only_last: bool = False) -> None:
    from ray import tune

    rec = store.get(run_id)
    metric = {key: m for m, key in VAL_HISTORY_KEY.items()}[report_key]
    curve = rec[(rec["split"] == "val") & (rec["metric"] == metric)].sort_values("epoch")
    rows = list(curve.itertuples())
    for r in rows[-1:] if only_last else rows:
        tune.report({"epoch": int(r.epoch) + 1, report_key: float(r.value), "run_id": run_id})


def _prune_aware_search(space, metric, mode, study_name, storage, seed, max_t, n_trials):
    from optuna.trial import TrialState
    from ray.tune.search import Searcher
    from ray.tune.search.optuna import OptunaSearch

    class PruneAwareOptunaSearch(OptunaSearch):
        """Ray's OptunaSearch records trials that ASHA stopped as COMPLETE; record them as PRUNED, with their
        last value as an intermediate value, so the study says what happened (docs/distributed.md).

        The budget is the study's, not this driver's: a second driver on the same study stops asking once
        finished plus running trials of all drivers reach it. Each trial is tagged with its driver so that only
        a dead driver's RUNNING trials are failed."""

        lost: BaseException | None = None  # a lost database, for StoreWatch to end the sweep with

        def suggest(self, trial_id: str):
            if self.lost is not None:  # asked again: Tune waits for a trial here when none is running
                raise self.lost
            return self._guard(self._suggest, trial_id)

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
            if self.lost is None:
                self._guard(self._on_trial_complete, trial_id, result=result, error=error)

        def _guard(self, fn, *args, **kw):
            """Tune would log a lost database here with a traceback and call the trial errored: keep it instead,
            and ask for nothing more (None: no trial now); StoreWatch raises it at Tune's next step."""
            try:
                return fn(*args, **kw)
            except Exception as e:
                if lost_database(e) is None:
                    raise
                self.lost = e
                return None

        def _suggest(self, trial_id: str):
            # count, ask and tag under one lock of all drivers: two that both see one trial left would otherwise
            # both ask it, and a driver starting up could fail a trial asked but not yet tagged as another's
            with study_lock(storage.url, study_name):
                study = optuna_search_study(self)
                if study is not None:
                    taken = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                                     TrialState.RUNNING))
                    if len(taken) >= n_trials:
                        return Searcher.FINISHED
                out = super().suggest(trial_id)
                asked = optuna_search_trial(self, trial_id)
                if asked is not None:
                    storage.set_trial_system_attr(optuna_trial_id(asked), "mmrl_driver", owner_id())
            return out

        def _on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
            ot_trial = optuna_search_trial(self, trial_id)
            if not error and result and int(result.get("epoch", max_t)) < max_t and ot_trial is not None:
                value = result.get(metric)
                if value is not None and math.isfinite(value):
                    ot_trial.report(float(value), int(result["epoch"]))
                optuna_search_study(self).tell(ot_trial, state=TrialState.PRUNED)
                mark_optuna_search_trial_told(self, trial_id)
                return
            super().on_trial_complete(trial_id, result=result, error=error)

    return PruneAwareOptunaSearch(space=space, metric=metric, mode=mode, study_name=study_name, storage=storage,
                                  seed=seed)


def optuna_storage(url: str):
    import optuna

    resolved = resolve_url(url)  # BenchError naming the driver package to install
    kwargs = {}
    if resolved.startswith("postgresql"):
        kwargs = {"connect_args": {"connect_timeout": 10}}
    try:
        with schema_lock(resolved):
            return optuna.storages.RDBStorage(resolved, engine_kwargs=kwargs)
    except BenchError:
        raise
    except Exception as e:
        raise BenchError(f"cannot open the Optuna storage {mask_url(url)}: {db_error(e, url)}") from None


def study_lock(url: str, study_name: str):
    """The study's advisory lock across drivers (PostgreSQL; nothing on SQLite, one machine: drivers that share a
    study are meant to share a PostgreSQL storage)."""
    return advisory_lock(url, derive_seed(study_name, "study lock"))  # 63 bits: a PostgreSQL bigint


def wait_for_other_drivers(study, store: ResultStore, show) -> None:
    """Waits until no live driver but this one has a trial RUNNING on the study: the best trial is known only
    then, and drivers that read it earlier would each train the finals of another configuration."""
    from optuna.trial import TrialState

    said = False
    while True:
        running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if t.system_attrs.get("mmrl_driver") != owner_id()
                   and store.driver_alive(t.system_attrs.get("mmrl_driver"))]
        if not running:
            return
        if not said:
            show(f"waiting for {len(running)} trial(s) of study {study.study_name} that other drivers run")
            said = True
        time.sleep(poll_interval(store.heartbeat_s))


def tune_cell(cell: Cell, plan: Plan, root: Path, store: ResultStore, storage_url: str, fresh: bool,
              show) -> dict:
    """Run the missing trials of the cell's study; return the best trial's parameters ({} = defaults)."""
    import optuna
    from optuna.trial import TrialState
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep's own lines say which study and what is left
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
    with study_lock(storage.url, name):  # a trial asked but not yet tagged is a live driver's
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            # left RUNNING by a killed driver: it can never finish, and it must not count against the budget; a
            # live driver's trial (another person's sweep on the same study) is left to finish
            if not store.driver_alive(t.system_attrs.get("mmrl_driver")):
                storage.set_trial_state_values(optuna_trial_id(t), TrialState.FAIL)
    taken = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                         TrialState.RUNNING)))
    remaining = budget.n_trials - taken
    if remaining > 0:
        cpus, gpus = plan.suite.resources["cpu"], plan.suite.resources["gpu"]
        import ray

        total_cpu = int(ray.cluster_resources().get("CPU", 1))
        workers = int(cell.cfg.get("trainer", {}).get("workers", 1))
        show(f"tuning {cell.key}: {remaining} of {budget.n_trials} trials left (study {name})")
        fn = tune.with_parameters(guarded_tune_trial, base_cfg=cell.cfg, epochs=budget.epochs,
                                  report_key=budget.report_key, store_kw=store.handle(), threads=int(cpus),
                                  cpus_per_worker=cpus)
        # a multi-worker trial's own process only waits for its Ray Train workers: it holds no CPU, or trial
        # processes holding every CPU would wait forever for their workers (docs/distributed.md)
        trainable = tune.with_resources(fn, {"cpu": cpus, "gpu": gpus} if workers == 1
                                        else {"CPU": 0, "memory": 64 * 2**20})
        # alone on the study, the sampler's seed is the study's (the same suite asks the same trials); beside
        # another live driver, its own, or both would ask the same parameters
        alone = not [d for d in store.live_drivers() if d != owner_id()]
        seed = derive_seed(name, "optuna" if alone else f"optuna/{owner_id()}") % 2**31
        searcher = _prune_aware_search(to_optuna(cell.space), budget.report_key, budget.mode, name, storage,
                                       seed, budget.epochs, budget.n_trials)
        scheduler = ASHAScheduler(time_attr="epoch", max_t=budget.epochs, grace_period=budget.grace_period,
                                  reduction_factor=budget.reduction_factor)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(metric=budget.report_key, mode=budget.mode, search_alg=searcher,
                                        scheduler=scheduler, num_samples=remaining, reuse_actors=True,
                                        max_concurrent_trials=max(1, int(total_cpu // max(cpus * workers, 1e-9)))),
            run_config=tune.RunConfig(name=name, storage_path=str(root / "tune"), verbose=0,
                                      callbacks=[store_watch(store, searcher)],
                                      failure_config=tune.FailureConfig(max_failures=plan.suite.max_retries)),
        )
        os.environ.update(tune_console_env())  # the driver process only; the sweep's own lines say where to look
        if workers > 1:
            from sweeps.ray_utils import PlacementGroupJanitor

            with PlacementGroupJanitor():
                tuner.fit()
        else:
            tuner.fit()
        show(f"trials of {cell.key} in {root / 'tune' / name}")
    study = optuna.load_study(study_name=name, storage=storage)
    wait_for_other_drivers(study, store, show)
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
    workers: int = 1  # data-parallel workers of the attempt this driver ran (1 for a cached run)


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


def _note_takeover(store: ResultStore, rid: str, spec: dict, display) -> None:
    row = store.index_row(rid)
    if row and row["status"] in ("claimed", "running") and row["owner"] != owner_id():
        age = time.time() - float(row["updated_at"] or 0.0)
        why = (f"no heartbeat for {age:.0f} s" if age > store.claim_timeout_s else "its process is gone")
        display.note(f"taking over {label(spec)} from {row['owner']}: {why}")


def run_finals(specs: list[dict], plan: Plan, store: ResultStore, display) -> list[RunResult]:
    """Train every spec not done yet, each as a Ray task. A run that another driver's live process holds is
    waited for (polling the store), then counted as done, or taken over once its claim is stale."""
    import ray

    cpus, gpus = plan.suite.resources["cpu"], plan.suite.resources["gpu"]
    total_cpu = ray.cluster_resources().get("CPU", 1)
    single = ray.remote(execute_run).options(num_cpus=cpus, num_gpus=gpus, max_retries=plan.suite.max_retries)
    # a multi-worker run's task only waits for its Ray Train workers, which hold the CPUs: it holds none, and
    # at most as many run at once as the cluster has CPUs for, so that waiting tasks cannot starve the workers
    multi = ray.remote(execute_run).options(num_cpus=0, num_gpus=0, memory=64 * 2**20, max_retries=0)
    poll_s = poll_interval(store.heartbeat_s)
    results: dict[str, RunResult] = {}
    queue: list[dict] = []
    waiting: dict[str, dict] = {}
    attempts: dict[str, int] = {}
    pending: dict[Any, dict] = {}
    for spec in specs:
        rid = compute_run_id(spec)
        problem = store.record_problem(rid)
        if problem is None:
            results[rid] = RunResult(label(spec), rid, "cached")
        else:
            if problem != "missing":  # reported, never silently skipped: the run is trained again
                display.note(f"the record of {label(spec)} ({rid}) is {problem}; training it again")
            queue.append(spec)

    store.settle(list(results))  # rows left behind their records by a crash at the last moment say done again

    def multi_slots(spec: dict) -> int:
        return max(1, int(total_cpu // max(cpus * workers_of(spec), 1e-9)))

    def finish(spec: dict, result: RunResult) -> None:
        results[result.run_id] = result
        display.finished(result)

    display.slots = max(1, int(total_cpu // max(cpus, 1e-9)))
    if gpus:
        display.slots = min(display.slots, max(1, int(ray.cluster_resources().get("GPU", 0) // gpus)))
    display.start(total=len(specs), done=len(results))
    last_poll = 0.0
    while queue or pending or waiting:
        deferred = []
        while queue:
            spec = queue.pop(0)
            rid = compute_run_id(spec)
            if store.is_done(rid):
                finish(spec, RunResult(label(spec), rid, "cached"))
                continue
            holder = store.held_by_other(rid)
            if holder:
                if rid not in waiting:
                    display.note(f"waiting for {label(spec)}: another process holds it ({holder})")
                waiting[rid] = spec
                continue
            _note_takeover(store, rid, spec, display)
            if workers_of(spec) > 1:
                running_multi = sum(workers_of(s) > 1 for s in pending.values())
                if running_multi >= multi_slots(spec):
                    deferred.append(spec)
                    continue
                remote = multi
            else:
                remote = single
            attempts[rid] = attempts.get(rid, 0) + 1
            pending[remote.remote(spec, store.handle(), int(max(cpus, 1)), cpus)] = spec
        queue = deferred
        ready = []
        if pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        else:
            time.sleep(min(poll_s, 1.0))
        for ref in ready:
            spec = pending.pop(ref)
            rid = compute_run_id(spec)
            try:
                out = ray.get(ref)
            except Exception as e:  # the worker died (OOM, signal): its claim goes stale and can be retried
                out = {"run_id": rid, "status": "failed", "error": f"worker lost: {type(e).__name__}", "wall_s": 0.0}
                store.fail_if_stale(rid, out["error"])
            if out.get("store_lost"):
                store.live_drivers()  # raises when the driver cannot reach the index either
            if out["status"] in ("busy", "lost"):
                if out["status"] == "lost":
                    display.note(out["error"])
                waiting[rid] = spec
                continue
            if out["status"] == "failed" and attempts[rid] <= plan.suite.max_retries:
                display.note(f"retrying {label(spec)} ({attempts[rid]}/{plan.suite.max_retries}): {out['error']}")
                queue.insert(0, spec)
                continue
            finish(spec, RunResult(label(spec), rid, out["status"], out.get("error", ""), out.get("wall_s", 0.0),
                                   workers_of(spec)))
        if time.monotonic() - last_poll >= poll_s:
            last_poll = time.monotonic()
            store.live_drivers()  # a lost index stops the sweep now, not when the runs in flight end
            for rid, spec in list(waiting.items()):
                if store.is_done(rid):
                    del waiting[rid]
                    finish(spec, RunResult(label(spec), rid, "cached"))
                elif store.held_by_other(rid) is None:
                    del waiting[rid]
                    row = store.index_row(rid) or {}
                    if row.get("status") == "failed" and rid not in attempts:
                        # another driver trained it and it failed there: report it rather than train it again
                        finish(spec, RunResult(label(spec), rid, "failed", f"failed in another driver: "
                                               f"{(row.get('error') or '').splitlines()[0] if row.get('error') else ''}"))
                    else:  # free again, or its owner stopped heart-beating: take it
                        queue.append(spec)
        display.tick(pending=len(pending) + len(waiting))
    display.stop()
    return [results[compute_run_id(s)] for s in specs if compute_run_id(s) in results]


def run_sweep(plan: Plan, root: Path, index_url: str | None = None, optuna_url: str | None = None,
              address: str | None = None, num_cpus: int | None = None, fresh: bool = False, display=None) -> SweepResult:
    """``index_url`` (``--store``): the run index; a non-SQLite one also holds the Optuna studies unless
    ``optuna_url`` names another storage, so one PostgreSQL URL shares everything between drivers."""
    from sweeps.progress import SweepDisplay
    from sweeps.ray_utils import start_ray, stop_ray

    display = display or SweepDisplay()
    root = Path(root).resolve()
    store = ResultStore(root, index_url)  # fail on a bad store before starting Ray
    if optuna_url is None:
        optuna_url = index_url if index_url and not index_url.startswith("sqlite") else f"sqlite:///{root / 'optuna.sqlite'}"
        if plan.tuned:
            optuna_storage(optuna_url)
    else:
        optuna_storage(optuna_url)  # given explicitly: a bad URL is bad input even when nothing is tuned
    t0 = time.perf_counter()
    started = start_ray(address, num_cpus)
    store_log = logging.getLogger("bench.store")
    level = store_log.level
    try:
        with store.driver_heartbeat():
            try:
                specs = []
                for cell in plan.cells:
                    cfg = cell.cfg
                    if plan.tuned and cell.space:
                        params = tune_cell(cell, plan, root, store, optuna_url, fresh, display.note)
                        cfg = apply_params(cell.cfg, params)
                    specs += [final_spec(cell, s, cfg) for s in plan.suite.seeds]
                runs = run_finals(specs, plan, store, display)
            except Exception as e:
                lost = store_unavailable(e, store.index_url, optuna_url)
                if lost is None:
                    raise
                display.stop()
                # the line below says it all: the heartbeat's retries and the failed unregistration would only
                # repeat it (the row of this driver goes stale by itself)
                store_log.setLevel(logging.ERROR)
                raise lost from None
    finally:
        store_log.setLevel(level)
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
