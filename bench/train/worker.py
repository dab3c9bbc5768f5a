"""What one training process does with a claimed run: build, train, evaluate, store (docs/design.md "One run, end
to end", steps 4-7).

:func:`execute` is the one function both ways of training a run call: :func:`bench.run.run_one` in its own
process (``trainer.workers`` = 1) and every Ray Train worker of :mod:`bench.train.distributed` (``workers`` > 1).
The claim itself (index row, heartbeat, failure record) is the caller's: this module never claims, marks or
releases a run. It imports neither of its callers, so the two paths share it without an import cycle.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np
import pandas as pd
import torch

from bench.build import benchmark_from, method_from
from bench.data.splits import load_splits
from bench.eval.context import EvalContext
from bench.eval.evaluate import evaluate
from bench.records import HISTORY_ROWS, make_rows
from bench.spec import data_key, derive_seed
from bench.store import ResultStore, owner_id
from bench.train.loop import train
from bench.train.tracking import tensorboard_dir

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def still_owned(store: ResultStore, run_id: str, owner: str) -> Callable[[], bool]:
    """The check the training loop makes at each epoch boundary: does ``owner`` still hold the run? An index that
    cannot be reached for a moment counts as yes: the final compare-and-swap in ``store.put`` decides."""
    def check() -> bool:
        try:
            return store.owns(run_id, owner)
        except Exception as e:
            log.debug("run %s: ownership check failed (%s); going on", run_id, type(e).__name__)
            return True
    return check


def execute(spec: dict, run_id: str, store: ResultStore, progress: Callable[[dict], None] | None = None,
            tune_report_key: str | None = None, owner: str | None = None) -> pd.DataFrame | None:
    """Build the benchmark and method of a resolved ``spec``, train, evaluate on the test split, and write the
    record into ``store``; returns the record.

    ``progress`` receives the training loop's step and epoch events (None: nothing drawn). ``tune_report_key``
    says that the run is a Ray Tune trial whose workers report each epoch. In a data-parallel worker every worker
    trains and only rank 0 evaluates and writes the record; the others return None. ``owner`` holds the claim
    (None: this process; in a worker, the process that started the workers): training stops at the first epoch
    boundary where it does not (:class:`bench.store.ClaimLost`), and the record is written only under its claim.
    With ``trainer.tensorboard`` (default true) rank 0 writes the run's curves under
    :func:`bench.train.tracking.tensorboard_dir`."""
    owner = owner or owner_id()
    t0 = time.perf_counter()
    benchmark = benchmark_from(spec["benchmark"]["name"], spec["benchmark"]["config"])
    bspec = benchmark.spec()
    trainer = spec["trainer"]
    train_ds, val_ds, test_ds = load_splits(benchmark, spec["obs_ratio"], spec["seed"], spec.get("missing", "paired"),
                                            val_fraction=trainer["val_fraction"],
                                            legacy_seeds=spec.get("spec_version", 1) < 2)  # v1 records: old splits
    seed_everything(derive_seed(run_id, "init"))
    method = method_from(spec["method"]["name"], bspec, spec["method"]["config"])
    tb_dir = tensorboard_dir(store.root, run_id) if trainer.get("tensorboard", True) else None
    result = train(method, train_ds, val_ds, trainer, run_id, ckpt_dir=store.checkpoint_dir(run_id),
                   progress=progress, debug=spec.get("debug"), tune_report_key=tune_report_key,
                   keep_going=still_owned(store, run_id, owner), tensorboard_dir=tb_dir)
    if result.rank != 0:
        return None
    if "fit_after" in method.capabilities():
        method.fit_after(train_ds)
    metric_names = list(spec["eval"]["metrics"] or bspec.default_metrics)
    device = next(method.parameters()).device
    ctx = EvalContext(method, bspec, train_ds, test_ds, spec["eval"], seed=derive_seed(run_id, "eval") % 2**31,
                      device=device, cache_dir=store.root / "cache",
                      benchmark_key=data_key(spec["benchmark"]),  # the data's identity: no root
                      full_train=benchmark.build()[0])  # builds are memoised: no second construction
    seed_everything(derive_seed(run_id, "eval"))
    rows = evaluate(ctx, metric_names)
    for h in result.history:
        for key, metric, split, higher in HISTORY_ROWS:
            if key in h:
                rows.append({"metric": metric, "target": "", "epoch": int(h["epoch"]), "value": h[key],
                             "higher_is_better": higher, "split": split, "status": "done"})
    record = make_rows(spec, run_id, type(method).kind, rows, epoch=result.epochs, wall_s=time.perf_counter() - t0,
                       workers=result.world_size)
    store.put(run_id, spec, record, owner=owner)
    return record
