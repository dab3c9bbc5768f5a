"""``python -m bench perf train``: samples/s of the harness's DeepSpeed loop against a bare PyTorch loop on the same
model, data and batch order (the engine's overhead in percent), both on the trainer's device.

With ``precision: bf16`` the bare loop runs under ``torch.autocast(bfloat16)`` (fp32 weights), the engine as
DeepSpeed's bf16 mode does (bf16 weights, fp32 master copy in the optimizer): the same matrix-multiply precision, not
the same numbers.
"""

from __future__ import annotations

import statistics
import time

import torch

from bench.perf.common import method_and_data
from bench.registry import register_perf_verb


def device_of(trainer: dict) -> tuple[torch.device, bool]:
    """(device, bf16) of a resolved trainer section, as the engine loop picks them."""
    cuda = trainer.get("device") == "cuda" and torch.cuda.is_available()
    return torch.device("cuda" if cuda else "cpu"), cuda and trainer.get("precision") == "bf16"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":  # kernels run asynchronously: a clock read before they finish undercounts
        torch.cuda.synchronize(device)


def _bare_epoch(model, train, batch_size: int, lr: float, device: torch.device = torch.device("cpu"),
                bf16: bool = False) -> float:
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.on_epoch_start(0, 1)  # as the engine loop does: schedules (warm-ups, annealing) see the same epoch
    gen = torch.Generator().manual_seed(0)
    _sync(device)
    t0 = time.perf_counter()
    # gathered on the device, as the engine loop gathers them: the ratio is the engine's, not the data path's
    for batch in train.batches(batch_size, shuffle=True, generator=gen, device=device):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return len(train) / (time.perf_counter() - t0)


def _engine_epoch(model, train, spec: dict) -> float:
    from bench.train.loop import train as train_loop

    trainer = {**spec["trainer"], "epochs": 1}
    # train_s starts after deepspeed.initialize, a once-per-run cost that perf sweep accounts for
    return len(train) / train_loop(model, train, None, trainer, "perf", ckpt_dir=None).train_s


def perf_train(method: str = "mvae", benchmark: str = "digits-ms", repeats: int = 3, overrides=()) -> dict:
    spec, build, train = method_and_data(method, benchmark, ["trainer.batch_size=128", *overrides])
    bs, lr = spec["trainer"]["batch_size"], spec["trainer"]["lr"]
    device, bf16 = device_of(spec["trainer"])
    _bare_epoch(build(), train, bs, lr, device, bf16)  # warm-up: allocator, kernels, DeepSpeed import
    _engine_epoch(build(), train, spec)
    bare, engine = [], []
    for _ in range(repeats):  # interleaved so that drifts of a shared machine hit both alike
        bare.append(_bare_epoch(build(), train, bs, lr, device, bf16))
        engine.append(_engine_epoch(build(), train, spec))
    b, e = statistics.median(bare), statistics.median(engine)
    return {"method": method, "benchmark": benchmark, "samples": len(train), "bare_samples_s": b,
            "engine_samples_s": e, "engine_overhead_pct": 100.0 * (b / e - 1.0), "threads": torch.get_num_threads(),
            "device": device.type, "precision": "bf16" if bf16 else "fp32",
            "zero_stage": int(spec["trainer"].get("zero_stage", 0)) if device.type == "cuda" else 0}


def print_perf_train(console, r: dict) -> None:
    console.print(f"{r['method']} on {r['benchmark']} ({r['samples']} samples, batch 128, {r['threads']} torch "
                  f"threads): bare torch loop {r['bare_samples_s']:.0f} samples/s, DeepSpeed engine "
                  f"{r['engine_samples_s']:.0f} samples/s: engine overhead {r['engine_overhead_pct']:+.1f} %")


def add_arguments(parser) -> None:
    parser.add_argument("--method", default="mvae")
    parser.add_argument("--benchmark", default="digits-ms")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per loop (median)")


@register_perf_verb("train", help="samples/s of the DeepSpeed engine loop against a bare PyTorch loop",
                    add_arguments=add_arguments)
def run(args, console, out_dir) -> None:
    print_perf_train(console, perf_train(args.method, args.benchmark, repeats=args.repeats))
