"""Per-run training curves as TensorBoard event files.

Each run's curves go to ``<results>/tensorboard/<run_id>/`` (:func:`tensorboard_dir`), beside its checkpoint
folder ``<results>/checkpoints/<run_id>/`` and outside ``runs/``, whose records the store reads: one folder per
kind of thing, and a TensorBoard run named by its run_id. ``tensorboard --logdir <results>/tensorboard`` shows
every run of a store.

One point per epoch, at step = the epoch (from 0): ``train/loss``, ``val/loss`` and ``val/probe`` (the history
entry's ``train_loss``, ``val_loss``, ``val_probe``, the numbers the record's curves hold) and ``lr``. Only rank 0
writes. A resumed run opens its writer with ``purge_step`` = its first epoch, so TensorBoard drops any point at or
after it left by the interrupted process and every epoch has one point. ``trainer.tensorboard=false`` turns it off;
the key is not part of the run's identity (bench.spec.NON_SEMANTIC).
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.errors import BenchError

TENSORBOARD_FOLDER = "tensorboard"
# the training loop's per-epoch history keys -> TensorBoard tags (every key of bench.records.HISTORY_ROWS)
TAGS = {"train_loss": "train/loss", "val_loss": "val/loss", "val_probe": "val/probe"}
LR_TAG = "lr"


def tensorboard_dir(results_root: str | os.PathLike, run_id: str) -> Path:
    """The folder of one run's event files in a results folder."""
    return Path(results_root) / TENSORBOARD_FOLDER / run_id


def epoch_scalars(entry: dict, lr: float | None = None) -> dict[str, float]:
    """TensorBoard tag -> value for one history entry of the loop (keys it lacks, e.g. without a validation set,
    are left out) and the learning rate."""
    scalars = {tag: float(entry[key]) for key, tag in TAGS.items() if key in entry}
    if lr is not None:
        scalars[LR_TAG] = float(lr)
    return scalars


class EpochWriter:
    """Writes a run's scalars, one step per epoch, into ``log_dir`` (None: writes nothing).

    The event file is opened at the first write, so a run that trains no epoch (a method that does not train, a
    run resumed after its last epoch) leaves no folder. ``first_epoch`` is the purge step: points of an earlier
    process at or after it are dropped by TensorBoard's readers. Flushed after every epoch, so the curves of a
    running or killed run are on disk up to its last finished epoch."""

    def __init__(self, log_dir: str | os.PathLike | None, first_epoch: int = 0):
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.first_epoch = int(first_epoch)
        self._writer = None
        if self.log_dir is not None:
            self._summary_writer = _summary_writer_class()  # a missing package fails before training, not after

    def write(self, epoch: int, scalars: dict[str, float]) -> None:
        if self.log_dir is None:
            return
        if self._writer is None:
            self._writer = self._summary_writer(log_dir=str(self.log_dir), purge_step=self.first_epoch)
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, value, global_step=epoch)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "EpochWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # torch's message names a version, not the way out
        raise BenchError("trainer.tensorboard=true needs the tensorboard package (pip install tensorboard); or "
                           "set trainer.tensorboard=false") from e
    return SummaryWriter
