"""Everything needed to call ``deepspeed.initialize`` in a plain process (docs/distributed.md).

* the five torch.distributed variables, with a free port, unless a process group already exists (Ray Train);
* the shared-memory comm op build patched out (a hidden 55-120 s compile on first use, results unchanged);
* a torch optimizer (``torch_adam``) so nothing is compiled, and ``gradient_clipping`` always set explicitly
  (DeepSpeed's default of 1.0 would silently clip). With ``torch_adam`` both the "Adam" and the "AdamW" type build
  ``torch.optim.AdamW`` (DeepSpeed's ``adam_w_mode`` defaults to true), which is Adam when weight_decay is 0;
  ``betas`` and ``amsgrad`` pass through to it.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from bench.compat import skip_deepspeed_shm_op_build


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _not_accelerator_choice(record: logging.LogRecord) -> bool:
    """False for DeepSpeed's line about the accelerator it picked: "Setting ds_accelerator to cpu (override)" at
    INFO, printed on every import by releases whose logger defaulted to INFO (0.17.1: DeepSpeed issue #7411;
    0.19.8 defaults to WARNING), and "Setting accelerator to CPU ..." at WARNING where DS_ACCELERATOR is unset.
    We choose the accelerator ourselves, so the line only repeats our choice."""
    return record.filename != "real_accelerator.py"


def quiet_deepspeed_logs() -> None:
    """Drops the accelerator line of DeepSpeed's logger; its other warnings still print. The filter goes on before
    the first ``import deepspeed``: the line is logged during the import, and the import resets the logger's
    level (so a level set beforehand would not hold) but keeps its filters."""
    logging.getLogger("DeepSpeed").addFilter(_not_accelerator_choice)  # addFilter ignores a second add


def import_deepspeed(use_cuda: bool | None = None):
    """DeepSpeed, with its accelerator set to the run's device (``use_cuda``; None: CUDA where visible).

    DeepSpeed picks one accelerator per process, from what it sees, and ``deepspeed.initialize`` moves the model to
    it: a ``trainer=cpu`` run on a GPU machine would have its model on the GPU and its batches on the CPU. So the
    accelerator follows the run, and is switched when a process trains runs on both devices."""
    cuda = _cuda() if use_cuda is None else bool(use_cuda)
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if cuda else "cpu")
    quiet_deepspeed_logs()
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    skip_deepspeed_shm_op_build()
    for name in ("DeepSpeed", "deepspeed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    wanted = "cuda" if cuda else "cpu"
    if get_accelerator().device_name() != wanted:
        from deepspeed.accelerator.real_accelerator import set_accelerator

        if cuda:
            from deepspeed.accelerator.cuda_accelerator import CUDA_Accelerator as Accelerator
        else:
            from deepspeed.accelerator.cpu_accelerator import CPU_Accelerator as Accelerator
        set_accelerator(Accelerator())
    return deepspeed


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def ensure_dist_env() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return  # a launcher (torchrun, Ray Train, deepspeed) owns the rendezvous
    # a single process always takes a fresh port: an inherited MASTER_PORT may belong to a parent that still
    # holds it (a test process starting the CLI, a driver starting a trial)
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))


def ds_config(trainer: dict[str, Any], use_cuda: bool, world_size: int = 1) -> dict:
    """The DeepSpeed config of a run from its ``trainer`` section: one CPU process is fp32 ZeRO-0; GPU, and
    several data-parallel workers, use the group's ZeRO stage (it partitions across workers: one CPU process has
    nothing to partition). The micro-batch is the global batch's share of one worker."""
    zero = int(trainer.get("zero_stage", 0)) if use_cuda or world_size > 1 else 0
    cfg = {
        "train_micro_batch_size_per_gpu": int(trainer["batch_size"]) // world_size,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": float(trainer.get("gradient_clipping") or 0.0),
        "optimizer": {
            "type": "AdamW" if float(trainer.get("weight_decay", 0.0)) > 0 else "Adam",
            "params": {"lr": float(trainer["lr"]), "weight_decay": float(trainer.get("weight_decay", 0.0)),
                       "betas": [float(v) for v in trainer.get("betas", (0.9, 0.999))],
                       "amsgrad": bool(trainer.get("amsgrad", False)), "torch_adam": True},
        },
        "zero_optimization": {"stage": zero},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if use_cuda and trainer.get("precision", "fp32") == "bf16":
        cfg["bf16"] = {"enabled": True}
    return cfg
