"""MVAE learns a representation that carries the class on digits-ms, complete and half-paired (issue 2).

Small budget (variants=1, 10 epochs) so the default suite stays fast; chance is 0.1 for both scores. The full-budget
figures from the README command are in the issue's closing note."""

import pytest

from bench.compose import compose
from bench.run import resolve_spec, run_one
from bench.store import ResultStore


@pytest.mark.parametrize("rho", [1.0, 0.5])
def test_mvae_on_digits_ms_is_well_above_chance(rho, tmp_path):
    spec = resolve_spec(compose(["method=mvae", "benchmark=digits-ms", "benchmark.variants=1", f"obs_ratio={rho}",
                                 "trainer.epochs=10", "trainer.progress=false", "eval.metrics=[probe_mlp,kmeans_acc]"]))
    record = run_one(spec, ResultStore(tmp_path)).record
    scores = {r.metric: r.value for r in record[record["split"] == "test"].itertuples()}
    assert scores["probe_mlp"] > 0.6, scores
    # k-means on a VAE latent varies with the seed (0.26-0.56 measured over three seeds at this budget)
    assert scores["kmeans_acc"] > 0.2, scores
