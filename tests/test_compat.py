"""One test per shim of bench/compat.py: the private API it touches is still there, with the shape the shim
expects, in the installed DeepSpeed, Ray and Optuna. An upgrade that breaks one fails here, by the shim's name.
No Ray instance is started: the Ray shims are checked on their parts (tests/test_sweep.py runs them for real)."""

from __future__ import annotations

import inspect
import pickle
import re
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from bench import compat


# --- DeepSpeed ------------------------------------------------------------------------------------------------

def test_skip_deepspeed_shm_op_build_replaces_the_function_torch_backend_calls(monkeypatch):
    from bench.train.deepspeed_setup import import_deepspeed

    monkeypatch.setenv("DS_ACCELERATOR", "cpu")  # only for a first import in this process; restored afterwards
    import_deepspeed(use_cuda=False)  # the call site of the shim
    module = sys.modules["deepspeed.comm.torch"]
    # the patch works because TorchBackend looks the function up in its module at every set-up
    assert "build_shm_op" in module.TorchBackend.__init__.__code__.co_names, (
        "deepspeed.comm.torch.TorchBackend no longer calls build_shm_op: update "
        "bench.compat.skip_deepspeed_shm_op_build")
    assert module.build_shm_op.__module__ == "bench.compat", "import_deepspeed left DeepSpeed's build_shm_op in place"
    assert module.build_shm_op() is None


def _weights_only(path, map_location=None):
    return torch.load(path, map_location=map_location, weights_only=True)


def test_set_deepspeed_checkpoint_loader_replaces_the_load_deepspeed_reads_through():
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine
    from deepspeed.runtime.engine import DeepSpeedEngine

    assert "checkpoint_engine" in DeepSpeedEngine._configure_checkpointing.__code__.co_names, (
        "DeepSpeedEngine no longer sets checkpoint_engine: update bench.compat.set_deepspeed_checkpoint_loader")
    assert list(inspect.signature(TorchCheckpointEngine.load).parameters) == ["self", "path", "map_location"], (
        "CheckpointEngine.load(path, map_location) changed: update bench.compat.set_deepspeed_checkpoint_loader")
    engine = SimpleNamespace(checkpoint_engine=TorchCheckpointEngine())
    compat.set_deepspeed_checkpoint_loader(engine, _weights_only)
    assert engine.checkpoint_engine.load is _weights_only
    with pytest.raises(RuntimeError, match="no checkpoint_engine.load to replace"):
        compat.set_deepspeed_checkpoint_loader(SimpleNamespace(), _weights_only)


class _NotATensor:
    pass


@pytest.mark.slow  # a DeepSpeed engine: about 5 s of process-group and engine set-up on CPU
def test_every_file_a_deepspeed_resume_reads_goes_through_the_replaced_loader(tmp_path):
    from bench.train.deepspeed_setup import ds_config, ensure_dist_env, import_deepspeed

    deepspeed = import_deepspeed(use_cuda=False)
    ensure_dist_env()
    model = torch.nn.Linear(3, 2)
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                      config=ds_config({"batch_size": 4, "lr": 1e-3}, use_cuda=False))
    engine.save_checkpoint(str(tmp_path), tag="t", client_state={"epoch": 3})
    read = []

    def load(path, map_location=None):
        read.append(path)
        return _weights_only(path, map_location)

    compat.set_deepspeed_checkpoint_loader(engine, load)
    _, client = engine.load_checkpoint(str(tmp_path), tag="t", load_module_strict=True)
    assert client["epoch"] == 3
    assert {p.name for p in (tmp_path / "t").glob("*.pt")} <= {str(p).rsplit("/", 1)[-1] for p in read}
    torch.save({"module": _NotATensor()}, read[0])  # what the replaced loader exists to refuse
    with pytest.raises(pickle.UnpicklingError):
        engine.load_checkpoint(str(tmp_path), tag="t", load_module_strict=True)


# --- Ray ----------------------------------------------------------------------------------------------------------

def test_ray_init_still_reads_the_temp_dir_keyword():
    import ray

    assert compat.ray_temp_dir_kwargs("/tmp/x") == {"_temp_dir": "/tmp/x"}
    assert re.search(r"""kwargs\.pop\(\s*["']_temp_dir["']""", inspect.getsource(ray.init)), (
        "ray.init no longer takes _temp_dir from its keyword arguments: update bench.compat.ray_temp_dir_kwargs")


def test_actor_placement_group_ids_reads_the_gcs_actor_table(monkeypatch):
    import ray
    from ray._private.state import GlobalState, state
    from ray._raylet import GlobalStateAccessor
    from ray.core.generated import gcs_pb2

    assert callable(getattr(GlobalState, "_connect_and_get_accessor", None)), (
        "ray._private.state.GlobalState._connect_and_get_accessor is gone: update "
        "bench.compat.actor_placement_group_ids")
    assert list(inspect.signature(GlobalStateAccessor.get_actor_table).parameters) == [
        "self", "job_id", "actor_state_name"], "GlobalStateAccessor.get_actor_table(job_id, actor_state_name) changed"
    # three actors as the GCS serialises them: the shim keeps the placement group of the live one only
    held, freed = ray.PlacementGroupID.from_random(), ray.PlacementGroupID.from_random()
    rows = [gcs_pb2.ActorTableData(state=gcs_pb2.ActorTableData.ALIVE, placement_group_id=held.binary()),
            gcs_pb2.ActorTableData(state=gcs_pb2.ActorTableData.DEAD, placement_group_id=freed.binary()),
            gcs_pb2.ActorTableData(state=gcs_pb2.ActorTableData.ALIVE)]
    asked = []

    class Accessor:
        def get_actor_table(self, job_id, actor_state_name):
            asked.append((job_id, actor_state_name))
            return [r.SerializeToString() for r in rows]

    monkeypatch.setattr(state, "_connect_and_get_accessor", lambda: Accessor())
    assert compat.actor_placement_group_ids() == {held.hex()}
    assert asked == [(None, None)]


# --- Ray Tune's OptunaSearch and Optuna ---------------------------------------------------------------------------

@pytest.fixture
def searcher():
    """Ray Tune's OptunaSearch on an in-memory study, two Tune trials ("t1", "t2") asked."""
    from optuna.distributions import FloatDistribution
    from ray.tune.search.optuna import OptunaSearch

    search = OptunaSearch(space={"x": FloatDistribution(0.0, 1.0)}, metric="score", mode="max", seed=0)
    search.suggest("t1")
    search.suggest("t2")
    return search


def test_optuna_search_study_is_the_study_the_search_asks_from(searcher):
    import optuna

    study = compat.optuna_search_study(searcher)
    assert isinstance(study, optuna.Study), (
        "OptunaSearch._ot_study is not an optuna.Study: update bench.compat.optuna_search_study")
    assert [t.state.name for t in study.get_trials(deepcopy=False)] == ["RUNNING", "RUNNING"]


def test_optuna_search_trial_is_the_trial_asked_for_a_tune_trial(searcher):
    import optuna

    trial = compat.optuna_search_trial(searcher, "t1")
    assert isinstance(trial, optuna.Trial), (
        "OptunaSearch._ot_trials does not map Tune trial ids to optuna.Trial: update bench.compat.optuna_search_trial")
    assert trial.number == 0 and compat.optuna_search_trial(searcher, "t2").number == 1 and "x" in trial.params
    assert compat.optuna_search_trial(searcher, "never asked") is None


def test_a_trial_marked_told_is_not_told_again_by_the_search(searcher, monkeypatch):
    from optuna.trial import TrialState

    study = compat.optuna_search_study(searcher)
    told = []
    monkeypatch.setattr(study, "tell", lambda trial, *a, **kw: told.append(trial.number))
    searcher.on_trial_complete("t1", result={"score": 1.0})  # not marked: the search tells the study
    # what the driver does with a trial that ASHA stopped: tell it PRUNED itself, then mark it told
    study.tell(compat.optuna_search_trial(searcher, "t2"), state=TrialState.PRUNED)
    compat.mark_optuna_search_trial_told(searcher, "t2")
    searcher.on_trial_complete("t2", result={"score": 1.0})
    assert told == [0, 1], ("OptunaSearch told a trial marked told (its _completed_trials changed): update "
                            "bench.compat.mark_optuna_search_trial_told")


def test_optuna_trial_id_is_the_storage_id_of_a_trial_and_a_frozen_trial():
    import optuna

    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(study_name="other", storage=storage).ask()  # ids and numbers differ from here on
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    frozen = study.get_trials(deepcopy=False)[0]
    for t in (trial, frozen):
        trial_id = compat.optuna_trial_id(t)
        assert isinstance(trial_id, int), f"{type(t).__name__}._trial_id is gone: update bench.compat.optuna_trial_id"
        assert storage.get_trial(trial_id).number == t.number == 0 and trial_id != t.number


@pytest.mark.slow  # starts a local Ray (about 5 s)
def test_actor_placement_group_ids_on_a_live_ray(monkeypatch):
    import shutil
    import tempfile

    import ray
    from ray.util.placement_group import placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # no token file in the home folder for a throwaway instance
    temp = tempfile.mkdtemp(prefix="mmrl-ray-")  # short: Ray's socket paths have a ~107-character limit
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=128 * 2**20, **compat.ray_temp_dir_kwargs(temp))
    class Pinger:  # defined here: Ray's workers cannot import a test module, a local class travels by value
        def ping(self) -> int:
            return 1

    try:
        group = placement_group([{"CPU": 1}, {"CPU": 1}])
        ray.get(group.ready())
        actor = ray.remote(num_cpus=1)(Pinger).options(
            scheduling_strategy=PlacementGroupSchedulingStrategy(group)).remote()
        ray.get(actor.ping.remote())
        assert group.id.hex() in compat.actor_placement_group_ids()
        ray.kill(actor)
        ray.get(group.ready())  # a round trip to the GCS: the kill is recorded by then
        for _ in range(50):
            if group.id.hex() not in compat.actor_placement_group_ids():
                break
            time.sleep(0.1)
        assert group.id.hex() not in compat.actor_placement_group_ids()
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def test_tune_console_env_names_the_variable_that_picks_the_silent_reporter(monkeypatch):
    from ray.tune.experimental.output import get_air_verbosity

    from bench.compat import tune_console_env

    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    assert get_air_verbosity(0) is not None, "Ray's new console is no longer the default: revisit tune_console_env"
    for k, v in tune_console_env().items():
        monkeypatch.setenv(k, v)
    assert get_air_verbosity(0) is None, "tune_console_env no longer selects Ray Tune's silent reporter"
