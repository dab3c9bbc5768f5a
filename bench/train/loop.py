"""The training loop: ``deepspeed.initialize``, epochs with a progress bar, a validation metric per epoch, a
checkpoint per epoch, and resume from the last checkpoint. :func:`train` is the entry point; its steps are
:func:`init_engine`, :func:`resume`, and per epoch :func:`train_epoch`, :func:`validate` and
:func:`checkpoint_epoch`. Rank 0 writes each epoch's curves as TensorBoard events (bench/train/tracking.py).

Every random choice is derived from the run_id: parameter init (caller), the shuffling of each epoch and the
sampling inside the model during each epoch. Resuming at epoch e therefore gives the same numbers as never having
stopped.

Data parallel (a process group of several workers, set up by Ray Train; :mod:`bench.train.distributed`): every
worker draws the same shuffled order, and each global batch (``trainer.batch_size``, the RunSpec's) is split
into contiguous per-worker slices. Each worker's loss is weighted by its share of the batch, so that DeepSpeed's
gradient average over the workers is the gradient of the global batch's mean loss: N workers give the numbers of
one worker up to the order of float sums, for a loss that is a mean over samples drawn without randomness. A
model that samples noise draws it per worker (the same distribution, other draws), and a loss over the whole batch
(contrastive negatives, batch statistics) sees per-worker batches. Checkpoints are DeepSpeed's ``save_checkpoint``
(every worker saves its ZeRO partition) and are reported to Ray Train, which hands the last one back on resume.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from bench.data.contracts import MultimodalDataset
from bench.errors import NonFiniteLoss
from bench.spec import derive_seed
from bench.train.deepspeed_setup import ds_config, ensure_dist_env, import_deepspeed
from bench.train.tracking import EpochWriter, epoch_scalars


@dataclass
class TrainResult:
    epochs: int
    history: list[dict[str, float]] = field(default_factory=list)
    train_s: float = 0.0
    samples: int = 0          # training samples seen by all workers together
    resumed_from: int = 0
    rank: int = 0
    world_size: int = 1


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int, float]:
    """(lo, hi, weight): this worker's contiguous slice [lo, hi) of a global batch of ``n`` samples, and the weight
    of its loss: its share of the batch times the number of workers (1 when the batch divides evenly). A worker
    left without a sample (a last batch smaller than the number of workers) gets the batch's first sample at
    weight 0, so that it still joins the gradient all-reduce."""
    bounds = [n * r // world for r in range(world + 1)]
    lo, hi = bounds[rank], bounds[rank + 1]
    weight = (hi - lo) * world / n
    if hi == lo:
        lo, hi = 0, 1
    return lo, hi, weight


def shard(batch: dict, rank: int, world: int) -> tuple[dict, float]:
    """This worker's slice of a gathered global batch and its loss weight (:func:`shard_bounds`)."""
    lo, hi, weight = shard_bounds(len(batch["label"]), rank, world)
    pick = lambda t: t[lo:hi]  # noqa: E731
    return ({"data": {k: pick(v) for k, v in batch["data"].items()}, "mask": pick(batch["mask"]),
             "label": pick(batch["label"])}, weight)


def device_batches(ds: MultimodalDataset, batch_size: int, device: torch.device, rank: int = 0, world: int = 1,
                   shuffle: bool = False, generator: torch.Generator | None = None):
    """(batch on ``device``, loss weight) per global batch: this worker's slice of the batch's indices, gathered
    straight onto the device (a lazy modality is converted there, bench.data.lazy). The same samples, in the same
    order, as :func:`shard` of ``ds.batches`` moved by :func:`to_device`."""
    for idx in ds.index_batches(batch_size, shuffle=shuffle, generator=generator):
        weight = 1.0
        if world > 1:
            lo, hi, weight = shard_bounds(len(idx), rank, world)
            idx = idx[lo:hi]
        yield ds.batch(idx, device), weight


def _all_sum(*values: float) -> list[float]:
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def to_device(batch: dict, device: torch.device, dtype: torch.dtype | None = None) -> dict:
    def move(t: torch.Tensor) -> torch.Tensor:
        t = t.to(device, non_blocking=True)
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    return {"data": {k: move(v) for k, v in batch["data"].items()}, "mask": move(batch["mask"]),
            "label": move(batch["label"])}


# --- checkpoints: our own format, loaded with weights_only=True ---------------------------------------------
def checkpoint_path(ckpt_dir: Path, epoch: int) -> Path:
    return ckpt_dir / f"epoch_{epoch:04d}.pt"


def latest_checkpoint(ckpt_dir: Path | None) -> Path | None:
    if ckpt_dir is None or not ckpt_dir.exists():
        return None
    found = sorted(ckpt_dir.glob("epoch_*.pt"))
    return found[-1] if found else None


def save_checkpoint(ckpt_dir: Path, epoch: int, module: torch.nn.Module, optimizer, history: list, keep: int = 1) -> None:
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(ckpt_dir, epoch)
    tmp = path.with_suffix(".tmp")
    state = {"epoch": epoch, "model": module.state_dict(), "history": history}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    torch.save(state, tmp)
    tmp.replace(path)
    for old in sorted(ckpt_dir.glob("epoch_*.pt"))[:-keep]:
        old.unlink()


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# --- the loop ------------------------------------------------------------------------------------------------
def evaluate_loss(module: torch.nn.Module, ds: MultimodalDataset, batch_size: int, device, dtype, seed: int,
                  rank: int = 0, world: int = 1) -> float:
    """Mean validation loss, with the model's sampling seeded so that it is the same number every time. With
    several workers each takes its slice of every batch and the sums are reduced."""
    was_training = module.training
    module.eval()
    total, n = 0.0, 0
    rng_state = torch.get_rng_state()
    torch.manual_seed(seed if world == 1 else derive_seed(f"{seed}", f"rank-{rank}"))
    with torch.no_grad():
        for batch, weight in device_batches(ds, batch_size, device, rank, world):
            if weight == 0:
                continue
            b = len(batch["label"])
            total += float(module.loss(to_device(batch, device, dtype))["loss"]) * b
            n += b
    torch.set_rng_state(rng_state)
    module.train(was_training)
    if world > 1:
        total, n = _all_sum(total, n)
    return total / max(n, 1)


def evaluate_probe(module: torch.nn.Module, ds: MultimodalDataset, batch_size: int, device, dtype, seed: int) -> float:
    """Split-half linear-probe accuracy of the joint representation of a validation set."""
    from threadpoolctl import threadpool_limits

    from bench.eval.representation import split_half_probe

    was_training = module.training
    module.eval()
    with torch.no_grad():
        z = torch.cat([module.embed(to_device(b, device, dtype))["joint"].float().cpu()
                       for b in ds.batches(batch_size, device=device)])
    module.train(was_training)
    with threadpool_limits(1):
        return split_half_probe(z.numpy(), ds.labels.numpy(), seed % 2**31)


def _report(entry: dict, epoch: int, epochs: int, checkpoint_dir: Path | None, tune_report_key: str | None) -> None:
    """Hands an epoch to Ray Train (every worker: the call is a barrier) with the epoch's checkpoint, which Ray
    Train gives back through ``get_checkpoint`` when the run is started again. In a Tune trial the last epoch is
    not reported: ASHA stops a trial on reaching max_t, which would kill the workers before rank 0 stores the
    record (the trial reports it from the record)."""
    import ray.train
    from ray.train import Checkpoint, CheckpointUploadMode

    if tune_report_key and epoch + 1 >= epochs:
        return
    metrics = {**entry, "epoch": epoch + 1}
    ckpt = Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir is not None else None
    # the checkpoint already lies in the run's folder, which is Ray Train's run folder: nothing to upload
    ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=checkpoint_dir.name if ckpt else None,
                     checkpoint_upload_mode=CheckpointUploadMode.NO_UPLOAD)


def _weights_only_load(path, map_location=None):
    return torch.load(path, map_location=map_location, weights_only=True)


def _resume_distributed(engine, ckpt_dir: Path | None) -> tuple[int, list]:
    """(first epoch to train, history) from the checkpoint Ray Train hands back, else (0, [])."""
    import logging

    import ray.train

    from bench.compat import set_deepspeed_checkpoint_loader

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return 0, []
    path = Path(ckpt.path)
    # DeepSpeed's checkpoint engine unpickles with weights_only=False; ours loads tensors and plain containers only
    set_deepspeed_checkpoint_loader(engine, _weights_only_load)
    try:
        _, client = engine.load_checkpoint(str(path.parent), tag=path.name, load_module_strict=True)
    except Exception as e:  # e.g. saved by another number of workers at ZeRO >= 1: start over, say why
        logging.getLogger(__name__).warning("cannot resume from %s (%s: %s); training from epoch 0", path,
                                            type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        return 0, []
    return int(client["epoch"]) + 1, list(client.get("history", []))


@dataclass
class TrainSetup:
    """What :func:`init_engine` sets up once per run: DeepSpeed's engine and optimizer, the module it trains, where
    and in which dtype batches go, and this worker's place in the process group."""

    engine: Any
    optimizer: Any
    module: torch.nn.Module
    device: torch.device
    dtype: torch.dtype | None   # None: the batch's own (fp32); bfloat16 on a GPU with precision=bf16
    rank: int = 0
    world: int = 1


def init_engine(method: torch.nn.Module, trainer: dict) -> TrainSetup:
    """``deepspeed.initialize`` of ``method`` with the run's trainer section (bench.train.deepspeed_setup), on the
    device the trainer names (cuda where asked and visible, else cpu). Joins the process group Ray Train set up,
    or creates a one-process group."""
    use_cuda = torch.cuda.is_available() and trainer.get("device", "auto") != "cpu"
    device = torch.device("cuda" if use_cuda else "cpu")
    dtype = torch.bfloat16 if use_cuda and trainer.get("precision") == "bf16" else None
    ensure_dist_env()
    deepspeed = import_deepspeed(use_cuda)
    _, world = _world()  # the workers of an existing group share the global batch (ds_config's micro-batch)
    engine, optimizer, _, _ = deepspeed.initialize(model=method, model_parameters=method.parameters(),
                                                   config=ds_config(trainer, use_cuda, world))
    rank, world = _world()  # deepspeed.initialize created the (one-process) group when there was none
    return TrainSetup(engine, optimizer, engine.module, device, dtype, rank, world)


def resume(setup: TrainSetup, ckpt_dir: Path | None) -> tuple[int, list[dict]]:
    """(first epoch to train, history so far) from the run's last checkpoint, loaded into the engine; (0, []) when
    there is none. One process reads our own format from ``ckpt_dir``; several workers get DeepSpeed's back from
    Ray Train."""
    if setup.world > 1:
        return _resume_distributed(setup.engine, ckpt_dir)
    last = latest_checkpoint(ckpt_dir)
    if last is None:
        return 0, []
    state = load_checkpoint(last)
    setup.module.load_state_dict(state["model"])
    if "optimizer" in state:
        setup.optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"]) + 1, list(state.get("history", []))


def train_epoch(setup: TrainSetup, train_ds: MultimodalDataset, run_id: str, epoch: int, epochs: int, batch_size: int,
                progress: Callable[[dict], None] | None = None, debug: dict | None = None) -> tuple[float, int]:
    """One epoch of optimisation steps: (mean training loss over its samples, samples seen by all workers).

    The epoch's shuffle and the model's sampling are seeded from the run_id and the epoch (module docstring).
    ``debug`` holds fault injection: ``raise_at_step`` raises, ``nan_at_step`` makes the loss NaN, from that
    global step on. A non-finite loss raises :class:`NonFiniteLoss` on every worker at the same step."""
    debug = debug or {}
    module, rank, world = setup.module, setup.rank, setup.world
    module.on_epoch_start(epoch, epochs)
    module.train()
    # one suffix per worker for the model's own sampling, so that workers do not draw the same noise
    per_rank = "" if world == 1 else f"/rank-{rank}"
    torch.manual_seed(derive_seed(run_id, f"model-epoch-{epoch}{per_rank}"))
    gen = torch.Generator().manual_seed(derive_seed(run_id, f"shuffle-epoch-{epoch}"))
    steps_per_epoch = math.ceil(len(train_ds) / batch_size)
    nan_at, raise_at = debug.get("nan_at_step"), debug.get("raise_at_step")
    loss_sum, seen = 0.0, 0
    batches = device_batches(train_ds, batch_size, setup.device, rank, world, shuffle=True, generator=gen)
    for step, (batch, weight) in enumerate(batches):
        global_step = epoch * steps_per_epoch + step
        if raise_at is not None and global_step >= int(raise_at):
            raise RuntimeError(f"injected failure at step {global_step} (debug.raise_at_step)")
        out = setup.engine(to_device(batch, setup.device, setup.dtype))
        loss = out["loss"]
        if nan_at is not None and global_step >= int(nan_at):
            loss = loss * float("nan")
        loss_value = loss.detach()
        finite = bool(torch.isfinite(loss_value))
        if world > 1:  # every worker stops at the same step, or the others would wait in the all-reduce
            finite = _all_sum(0.0 if finite else 1.0)[0] == 0.0
        if not finite:
            raise NonFiniteLoss(f"loss is {loss_value.item()} at epoch {epoch}, step {step}")
        setup.engine.backward(loss * weight if weight != 1.0 else loss)
        setup.engine.step()
        b = len(batch["label"]) if weight else 0
        loss_sum += float(loss_value) * b
        seen += b
        if progress:
            progress({"event": "step", "epoch": epoch, "step": step + 1, "steps": steps_per_epoch,
                      "loss": float(loss_value)})
    if world > 1:
        loss_sum, seen = _all_sum(loss_sum, seen)
        seen = int(seen)
    return loss_sum / max(seen, 1), seen


def validate(setup: TrainSetup, val_ds: MultimodalDataset | None, run_id: str, epoch: int, batch_size: int) -> dict:
    """The epoch's validation entries, {} without a validation set: ``val_loss`` (seeded, reduced over the
    workers; a non-finite one raises :class:`NonFiniteLoss`) and ``val_probe`` (the split-half probe)."""
    if val_ds is None or not len(val_ds):
        return {}
    val_loss = evaluate_loss(setup.module, val_ds, batch_size, setup.device, setup.dtype, derive_seed(run_id, "val"),
                             setup.rank, setup.world)
    if not math.isfinite(val_loss):
        raise NonFiniteLoss(f"validation loss is {val_loss} at epoch {epoch}")
    val_probe = _probe(setup.module, val_ds, batch_size, setup.device, setup.dtype, derive_seed(run_id, "val-probe"),
                       setup.rank, setup.world)
    return {"val_loss": val_loss, "val_probe": val_probe}


def checkpoint_epoch(setup: TrainSetup, ckpt_dir: Path | None, epoch: int, epochs: int, history: list[dict],
                     keep: int = 1, tune_report_key: str | None = None) -> None:
    """Saves the finished epoch (``history[-1]`` its entry): our own checkpoint in one process (the last ``keep``
    kept); with several workers DeepSpeed's (every worker its partition), reported to Ray Train with the entry."""
    if setup.world > 1:
        tag = None
        if ckpt_dir is not None:
            tag = f"epoch_{epoch:04d}"
            setup.engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state={"epoch": epoch, "history": history})
        _report(history[-1], epoch, epochs, ckpt_dir / tag if tag else None, tune_report_key)
    elif ckpt_dir is not None:
        save_checkpoint(ckpt_dir, epoch, setup.module, setup.optimizer, history, keep=keep)


def train(method: torch.nn.Module, train_ds: MultimodalDataset, val_ds: MultimodalDataset | None, trainer: dict,
          run_id: str, ckpt_dir: Path | None = None, progress: Callable[[dict], None] | None = None,
          debug: dict | None = None, tune_report_key: str | None = None,
          keep_going: Callable[[], bool] | None = None, tensorboard_dir: Path | None = None) -> TrainResult:
    """Train ``method`` in place. ``progress`` receives a dict per step and per epoch (the CLI draws a bar).

    Inside a process group of several workers (Ray Train) the loop is data parallel (module docstring), each
    epoch is reported to Ray Train, and checkpoints are DeepSpeed's. ``keep_going`` is asked at every epoch
    boundary, before the checkpoint is saved: False (this process's claim on the run was taken over) raises
    :class:`bench.store.ClaimLost`, so a stalled process neither trains on nor writes into the new owner's
    checkpoint folder. With ``tensorboard_dir`` rank 0 writes each finished epoch's curves there
    (bench.train.tracking).

    The steps: :func:`init_engine`, :func:`resume`, then per epoch :func:`train_epoch`, :func:`validate`, the
    claim check, :func:`checkpoint_epoch`."""
    setup = init_engine(method, trainer)
    # a method that does not train (MultimodalMethod.trains) runs zero epochs: it is evaluated at its init, and the
    # rest (device placement, evaluation, record, store) is what every other method goes through
    epochs = int(trainer["epochs"]) if getattr(method, "trains", True) else 0
    bs = int(trainer["batch_size"])
    result = TrainResult(epochs=epochs, rank=setup.rank, world_size=setup.world)
    start, result.history = resume(setup, ckpt_dir)
    result.resumed_from = start
    if setup.rank != 0:
        progress, tensorboard_dir = None, None
    t0 = time.perf_counter()
    with EpochWriter(tensorboard_dir, first_epoch=start) as curves:
        for epoch in range(start, epochs):
            train_loss, seen = train_epoch(setup, train_ds, run_id, epoch, epochs, bs, progress, debug)
            entry = {"epoch": epoch, "train_loss": train_loss, **validate(setup, val_ds, run_id, epoch, bs)}
            _check_claim(keep_going, run_id, epoch, setup.world)
            result.history.append(entry)
            result.samples += seen
            checkpoint_epoch(setup, ckpt_dir, epoch, epochs, result.history,
                             keep=int(trainer.get("keep_checkpoints", 1)), tune_report_key=tune_report_key)
            curves.write(epoch, epoch_scalars(entry, lr=_lr(setup)))
            if progress:
                progress({"event": "epoch", **entry, "epochs": epochs})
    result.train_s = time.perf_counter() - t0
    setup.module.eval()
    return result


def _lr(setup: TrainSetup) -> float | None:
    """The learning rate of the optimizer's first parameter group (DeepSpeed's engine reads it through its
    ZeRO wrappers)."""
    lrs = setup.engine.get_lr()
    return float(lrs[0]) if lrs else None


def _check_claim(keep_going: Callable[[], bool] | None, run_id: str, epoch: int, world: int) -> None:
    if keep_going is None:
        return
    ok = bool(keep_going())
    if world > 1:  # every worker stops together, or the others would wait in the next all-reduce
        ok = _all_sum(0.0 if ok else 1.0)[0] == 0.0
    if not ok:
        from bench.store import ClaimLost

        raise ClaimLost(f"run {run_id}: this process's claim was taken over while it stalled; stopped after epoch "
                        f"{epoch} without writing anything")


def _probe(module, val_ds, bs, device, dtype, seed: int, rank: int, world: int) -> float:
    """The split-half probe needs every embedding in one place: rank 0 computes it on the whole validation set
    and tells the others."""
    if world == 1:
        return evaluate_probe(module, val_ds, bs, device, dtype, seed)
    import torch.distributed as dist

    value = [evaluate_probe(module, val_ds, bs, device, dtype, seed) if rank == 0 else None]
    dist.broadcast_object_list(value, src=0)
    return float(value[0])
