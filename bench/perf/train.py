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
                  f"{r['engine_samples_s']:.0f} samples/s: engine overhead {r['engine_overhead_pct']:+.1f} %; "
                  f"{epoch_s(r):.2f} s per epoch")


def epoch_s(r: dict) -> float:
    """Seconds per epoch of the engine loop (the one a run trains with)."""
    return r["samples"] / r["engine_samples_s"]


def split_overrides(overrides: list[str], method: str, benchmark: str) -> tuple[str, str, list[str]]:
    """``method=`` and ``benchmark=`` among Hydra-style overrides choose them (over --method / --benchmark); the
    rest are passed on."""
    rest = []
    for ov in overrides:
        key, _, value = ov.partition("=")
        if key == "method":
            method = value
        elif key == "benchmark":
            benchmark = value
        else:
            rest.append(ov)
    return method, benchmark, rest


def shared_overrides(overrides: list[str], method: str) -> list[str]:
    """The overrides that also apply to ``method``: every one outside ``method.``, and the ``method.`` ones its
    Config has a field for."""
    import dataclasses

    from bench.registry import METHODS

    fields = {f.name for f in dataclasses.fields(METHODS.get(method).Config)}
    return [ov for ov in overrides if not ov.startswith("method.") or ov.partition("=")[0][7:] in fields]


def add_arguments(parser) -> None:
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. method=dcmem method.k_samples=3")
    parser.add_argument("--method", default="mvae")
    parser.add_argument("--benchmark", default="digits-ms")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per loop (median)")
    parser.add_argument("--against", metavar="METHOD",
                        help="also time METHOD in the same run with the overrides its config has (e.g. "
                             "method.k_samples for the same K) and print the per-epoch ratio")


@register_perf_verb("train", help="samples/s of the DeepSpeed engine loop against a bare PyTorch loop",
                    add_arguments=add_arguments)
def run(args, console, out_dir) -> None:
    method, benchmark, overrides = split_overrides(args.overrides, args.method, args.benchmark)
    r = perf_train(method, benchmark, repeats=args.repeats, overrides=overrides)
    print_perf_train(console, r)
    if args.against:
        base = perf_train(args.against, benchmark, repeats=args.repeats,
                          overrides=shared_overrides(overrides, args.against))
        print_perf_train(console, base)
        console.print(f"{method} / {args.against} per epoch: {epoch_s(r) / epoch_s(base):.2f}x")
