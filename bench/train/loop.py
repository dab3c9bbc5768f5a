"""The training loop: ``deepspeed.initialize``, epochs with a progress bar, a validation metric per epoch, a
checkpoint per epoch, and resume from the last checkpoint.

Every random choice is derived from the run_id: parameter init (caller), the shuffling of each epoch and the
sampling inside the model during each epoch. Resuming at epoch e therefore gives the same numbers as never having
stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from bench.data.contracts import MultimodalDataset
from bench.errors import NonFiniteLoss
from bench.spec import derive_seed
from bench.train.deepspeed_setup import ds_config, ensure_dist_env, import_deepspeed


@dataclass
class TrainResult:
    epochs: int
    history: list[dict[str, float]] = field(default_factory=list)
    train_s: float = 0.0
    samples: int = 0
    resumed_from: int = 0


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
def evaluate_loss(module: torch.nn.Module, ds: MultimodalDataset, batch_size: int, device, dtype, seed: int) -> float:
    """Mean validation loss, with the model's sampling seeded so that it is the same number every time."""
    was_training = module.training
    module.eval()
    total, n = 0.0, 0
    rng_state = torch.get_rng_state()
    torch.manual_seed(seed)
    with torch.no_grad():
        for batch in ds.batches(batch_size):
            b = len(batch["label"])
            total += float(module.loss(to_device(batch, device, dtype))["loss"]) * b
            n += b
    torch.set_rng_state(rng_state)
    module.train(was_training)
    return total / max(n, 1)


def evaluate_probe(module: torch.nn.Module, ds: MultimodalDataset, batch_size: int, device, dtype, seed: int) -> float:
    """Split-half linear-probe accuracy of the joint representation of a validation set."""
    from threadpoolctl import threadpool_limits

    from bench.eval.representation import split_half_probe

    was_training = module.training
    module.eval()
    with torch.no_grad():
        z = torch.cat([module.embed(to_device(b, device, dtype))["joint"].float().cpu() for b in ds.batches(batch_size)])
    module.train(was_training)
    with threadpool_limits(1):
        return split_half_probe(z.numpy(), ds.labels.numpy(), seed % 2**31)


def train(method: torch.nn.Module, train_ds: MultimodalDataset, val_ds: MultimodalDataset | None, trainer: dict,
          run_id: str, ckpt_dir: Path | None = None, progress: Callable[[dict], None] | None = None,
          debug: dict | None = None) -> TrainResult:
    """Train ``method`` in place. ``progress`` receives a dict per step and per epoch (the CLI draws a bar)."""
    debug = debug or {}
    use_cuda = torch.cuda.is_available() and trainer.get("device", "auto") != "cpu"
    device = torch.device("cuda" if use_cuda else "cpu")
    dtype = torch.bfloat16 if use_cuda and trainer.get("precision") == "bf16" else None
    ensure_dist_env()
    deepspeed = import_deepspeed()
    engine, optimizer, _, _ = deepspeed.initialize(model=method, model_parameters=method.parameters(),
                                                   config=ds_config(trainer, use_cuda))
    module = engine.module
    epochs, bs = int(trainer["epochs"]), int(trainer["batch_size"])
    result = TrainResult(epochs=epochs)
    start = 0
    last = latest_checkpoint(ckpt_dir)
    if last is not None:
        state = load_checkpoint(last)
        module.load_state_dict(state["model"])
        if "optimizer" in state:
            optimizer.load_state_dict(state["optimizer"])
        start = int(state["epoch"]) + 1
        result.history = list(state.get("history", []))
        result.resumed_from = start
    steps_per_epoch = math.ceil(len(train_ds) / bs)
    nan_at, raise_at = debug.get("nan_at_step"), debug.get("raise_at_step")
    t0 = time.perf_counter()
    for epoch in range(start, epochs):
        module.on_epoch_start(epoch, epochs)
        module.train()
        torch.manual_seed(derive_seed(run_id, f"model-epoch-{epoch}"))
        gen = torch.Generator().manual_seed(derive_seed(run_id, f"shuffle-epoch-{epoch}"))
        loss_sum, seen = 0.0, 0
        for step, batch in enumerate(train_ds.batches(bs, shuffle=True, generator=gen)):
            global_step = epoch * steps_per_epoch + step
            if raise_at is not None and global_step >= int(raise_at):
                raise RuntimeError(f"injected failure at step {global_step} (debug.raise_at_step)")
            out = engine(to_device(batch, device, dtype))
            loss = out["loss"]
            if nan_at is not None and global_step >= int(nan_at):
                loss = loss * float("nan")
            loss_value = loss.detach()
            if not torch.isfinite(loss_value):
                raise NonFiniteLoss(f"loss is {loss_value.item()} at epoch {epoch}, step {step}")
            engine.backward(loss)
            engine.step()
            b = len(batch["label"])
            loss_sum += float(loss.detach()) * b
            seen += b
            if progress:
                progress({"event": "step", "epoch": epoch, "step": step + 1, "steps": steps_per_epoch,
                          "loss": float(loss.detach())})
        entry = {"epoch": epoch, "train_loss": loss_sum / max(seen, 1)}
        if val_ds is not None and len(val_ds):
            entry["val_loss"] = evaluate_loss(module, val_ds, bs, device, dtype, derive_seed(run_id, "val"))
            if not math.isfinite(entry["val_loss"]):
                raise NonFiniteLoss(f"validation loss is {entry['val_loss']} at epoch {epoch}")
            entry["val_probe"] = evaluate_probe(module, val_ds, bs, device, dtype, derive_seed(run_id, "val-probe"))
        result.history.append(entry)
        result.samples += seen
        if ckpt_dir is not None:
            save_checkpoint(ckpt_dir, epoch, module, optimizer, result.history,
                            keep=int(trainer.get("keep_checkpoints", 1)))
        if progress:
            progress({"event": "epoch", **entry, "epochs": epochs})
    result.train_s = time.perf_counter() - t0
    module.eval()
    return result
