import pytest

from bench.errors import BenchError
from bench.registry import BENCHMARKS, METHODS, METRICS, Registry, UnknownName
from bench.spec import RunSpec, canonical_json, compute_run_id, derive_seed


def test_unknown_name_names_valid_ones_and_close_match():
    with pytest.raises(UnknownName) as e:
        METHODS.get("mvea")
    msg = str(e.value)
    assert "'mvea'" in msg and "did you mean 'mvae'" in msg and "mvae" in msg.split("valid:")[1]
    assert "\n" not in msg
    assert isinstance(e.value, BenchError)


def test_registry_refuses_a_second_object_under_one_name():
    r = Registry("thing")
    r.register("a", 1)
    r.register("a", 1)  # the same object again is fine (re-import)
    with pytest.raises(ValueError):
        r.register("a", 2)


def test_builtins_are_registered():
    assert "mvae" in METHODS
    assert {"digits-ms", "digits-mst", "digits-poly5", "mfeat6", "digits-caption", "bc-3view", "bc-report",
            "digits-seg", "ggm-synth"} <= set(BENCHMARKS.names())
    for m in ("probe_linear", "probe_mlp", "kmeans_acc", "kmeans_nmi", "kmeans_ari", "retrieval_r1", "retrieval_r5"):
        assert METRICS.get(m).higher_is_better


def _spec(**kw):
    base = dict(method={"name": "mvae", "version": 1, "config": {"beta": 1.0}},
                benchmark={"name": "digits-ms", "version": 1, "config": {"dm": 1}},
                obs_ratio=0.5, seed=0, trainer={"epochs": 2, "lr": 0.001, "progress": True}, eval={"metrics": None})
    base.update(kw)
    return RunSpec(**base)


def test_run_id_is_stable_and_ignores_non_semantic_keys():
    a = _spec()
    assert a.run_id == _spec().run_id
    assert len(a.run_id) == 16
    assert _spec(suite="paper").run_id == a.run_id
    assert _spec(trainer={"epochs": 2, "lr": 0.001, "progress": False}).run_id == a.run_id
    assert _spec(debug={"nan_at_step": 3}).run_id == a.run_id


def test_run_id_changes_with_anything_that_changes_the_result():
    a = _spec().run_id
    assert _spec(seed=1).run_id != a
    assert _spec(obs_ratio=0.25).run_id != a
    assert _spec(trainer={"epochs": 3, "lr": 0.001, "progress": True}).run_id != a
    assert _spec(method={"name": "mvae", "version": 2, "config": {"beta": 1.0}}).run_id != a


def test_canonical_json_is_order_free_and_float_stable():
    assert canonical_json({"b": 1, "a": [0.1 + 0.2]}) == canonical_json({"a": [0.3], "b": 1})
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_spec_round_trips_and_refuses_unknown_keys():
    s = _spec()
    assert RunSpec.from_dict(s.to_dict()).run_id == s.run_id
    with pytest.raises(ValueError, match="unknown run-spec keys"):
        RunSpec.from_dict({**s.to_dict(), "oops": 1})


def test_derive_seed_depends_on_run_and_purpose():
    assert derive_seed("abc", "init") == derive_seed("abc", "init")
    assert len({derive_seed("abc", "init"), derive_seed("abd", "init"), derive_seed("abc", "eval")}) == 3
    assert 0 <= derive_seed("abc", "init") < 2**63
    assert compute_run_id({"a": 1}) != compute_run_id({"a": 2})
