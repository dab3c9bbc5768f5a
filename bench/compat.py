"""The private third-party APIs the project relies on, each behind one small function.

A private API (an underscored name, an undocumented attribute, a generated protobuf) can change in any release
without notice. Each shim here names the one it touches, the versions it was checked on, and what breaks if it
changes; every call site goes through the shim, and tests/test_compat.py checks each API still has the shape the
shim expects, so an upgrade that breaks one fails there by the shim's name instead of deep inside a run or a sweep.
Ray and Optuna carry an upper bound in pyproject.toml for the same reason.

Checked on deepspeed 0.19.8, ray 2.60.0, optuna 5.1.0. Third-party packages are imported inside the shims: this
module costs nothing to import, and the engine loads Ray, Optuna or DeepSpeed only where a run uses them.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

# --- DeepSpeed ------------------------------------------------------------------------------------------------


def skip_deepspeed_shm_op_build() -> None:
    """Makes DeepSpeed's torch backend build no shared-memory communication op.

    Touches ``deepspeed.comm.torch.build_shm_op``, a module-level function that ``TorchBackend.__init__`` calls at
    every process-group set-up; on CPU it compiles a C++ op (55-120 s, hidden, on first use) that one process never
    uses, and that gloo does without. The patch returns None, DeepSpeed's own answer when the op cannot be built,
    so results are unchanged. If DeepSpeed renames the function, the patch does nothing and the compile comes back
    (slow, not wrong)."""
    import deepspeed.comm.torch  # noqa: F401  (the module object is patched through sys.modules below)

    # `import deepspeed.comm.torch as m` would bind the real torch package: patch through sys.modules
    sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None


def set_deepspeed_checkpoint_loader(engine: Any, load: Callable[..., Any]) -> None:
    """Makes ``engine.load_checkpoint`` read every checkpoint file with ``load(path, map_location=None)``.

    Touches ``engine.checkpoint_engine`` (set by ``DeepSpeedEngine._configure_checkpointing``, not documented) and
    replaces its ``load`` method: DeepSpeed reads the model states and the optimizer shards through it, and its
    own (``TorchCheckpointEngine.load``) unpickles with ``weights_only=False``, which runs any code a file holds.
    If DeepSpeed renamed the attribute, an assignment would go unread and the resume would unpickle arbitrary
    objects again: an engine without it is refused instead."""
    checkpoint_engine = getattr(engine, "checkpoint_engine", None)
    if not callable(getattr(checkpoint_engine, "load", None)):
        raise RuntimeError(f"this DeepSpeed engine ({type(engine).__name__}) has no checkpoint_engine.load to "
                           "replace: bench.compat.set_deepspeed_checkpoint_loader needs updating for this release")
    checkpoint_engine.load = load


# --- Ray ----------------------------------------------------------------------------------------------------------


def ray_temp_dir_kwargs(temp_dir: str) -> dict[str, str]:
    """The ``ray.init`` keyword arguments that put a local Ray instance's session files under ``temp_dir``.

    Touches ``_temp_dir``, an underscored keyword that ``ray.init`` takes from its ``**kwargs``. The project
    passes a short folder of its own because Ray's unix sockets live under it (a ~107-character path limit) and
    the folder is removed when the instance stops. If Ray drops it, ``ray.init`` refuses the unknown keyword and
    no local Ray starts (sweeps, multi-worker runs, perf scale)."""
    return {"_temp_dir": temp_dir}


def actor_placement_group_ids() -> set[str]:
    """Hex ids of the placement groups in which an actor that is not DEAD lives, in the connected Ray.

    Touches ``ray._private.state.state._connect_and_get_accessor().get_actor_table(None, None)`` (a private
    module and method) and parses its rows as ``ray.core.generated.gcs_pb2.ActorTableData`` (generated protobuf
    with its ``DEAD`` state and ``placement_group_id`` field). Ray's public state API (``ray.util.state``) answers
    through the dashboard, which the local Ray of a sweep does not start. If this changes, the placement-group
    janitor of sweeps/ray_utils.py cannot find orphans and says so once: the CPUs of multi-worker trials that ASHA
    stopped stay held and later trials wait."""
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    used = set()
    for raw in state._connect_and_get_accessor().get_actor_table(None, None):
        actor = gcs_pb2.ActorTableData.FromString(raw)
        if actor.state != gcs_pb2.ActorTableData.DEAD and actor.placement_group_id:
            used.add(actor.placement_group_id.hex())
    return used


# --- Ray Tune's OptunaSearch and Optuna ---------------------------------------------------------------------------


def optuna_search_study(searcher: Any):
    """The ``optuna.Study`` behind a Ray Tune ``OptunaSearch`` (None until it has a search space).

    Touches ``OptunaSearch._ot_study``. The driver counts the study's trials of every driver before asking a new
    one, and tells it a trial that ASHA stopped as PRUNED; without it neither the shared trial budget nor the
    PRUNED state holds."""
    return searcher._ot_study


def optuna_search_trial(searcher: Any, trial_id: str):
    """The ``optuna.Trial`` that an ``OptunaSearch`` asked for Tune trial ``trial_id``, or None.

    Touches ``OptunaSearch._ot_trials`` (Tune trial id -> Optuna trial). The driver tags the trial with its owner
    and tells it PRUNED through it; see :func:`optuna_search_study` for what breaks."""
    return searcher._ot_trials.get(trial_id)


def mark_optuna_search_trial_told(searcher: Any, trial_id: str) -> None:
    """Records in an ``OptunaSearch`` that Tune trial ``trial_id`` has been told to the study already, so that the
    search's own completion handler leaves it alone.

    Touches ``OptunaSearch._completed_trials``, the set its ``on_trial_complete`` checks before telling the study.
    If it changes, OptunaSearch tells a trial the driver told PRUNED a second time and Optuna refuses (a finished
    trial cannot be told again): the tuning phase errors."""
    searcher._completed_trials.add(trial_id)


def optuna_trial_id(trial: Any) -> int:
    """The storage id of an Optuna trial (a ``Trial`` or a ``FrozenTrial``).

    Touches ``_trial_id`` of both classes. Storage methods (``set_trial_system_attr``, ``set_trial_state_values``)
    take this id; the public ``number`` counts within one study only. If it changes, a driver can neither tag its
    trials nor fail the trials a killed driver left RUNNING (they would count against the budget for good)."""
    return trial._trial_id


def tune_console_env() -> dict[str, str]:
    """Environment under which ``Tuner.fit`` prints nothing of its own at ``verbose=0``.

    Touches ``RAY_AIR_NEW_OUTPUT``, read by ``ray.tune.experimental.output.get_air_verbosity``: with "0" Tune uses
    its older reporter, which is silent at ``verbose=0``. The newer one prints, even at ``verbose=0``, a box per
    experiment and a ``tensorboard --logdir`` hint naming the driver's staging folder inside Ray's temporary
    session, deleted when the sweep ends; the sweep prints its own lines that name folders that outlive it. If Ray
    drops the variable, the box and the stale hint come back (noise, not wrong results)."""
    return {"RAY_AIR_NEW_OUTPUT": "0"}
