"""``python -m bench perf``: performance benchmarks, each measured against a baseline in the same process and
reported as a ratio (shared machines vary by about 15 % from one run to the next, so absolute numbers from
different runs are not comparable).

* ``perf train``: samples/s of the harness's DeepSpeed loop against a bare PyTorch loop on the same model, data and
  batch order (the engine's overhead in percent), both on the trainer's device. With ``precision: bf16`` the bare
  loop runs under ``torch.autocast(bfloat16)`` (fp32 weights), the engine as DeepSpeed's bf16 mode does (bf16
  weights, fp32 master copy in the optimizer): the same matrix-multiply precision, not the same numbers.
* ``perf sweep``: the same runs trained one after the other in this process, then through ``bench sweep`` (Ray,
  claims, store); the difference divided by the number of runs is the harness overhead per trial.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.compose import compose
from bench.run import check_device, resolve_spec, run_one
from bench.store import ResultStore


def _method_and_data(method: str, benchmark: str, overrides: list[str]):
    from bench.build import benchmark_from, method_from
    from bench.data import load_splits

    spec = resolve_spec(compose([f"method={method}", f"benchmark={benchmark}", *overrides]))
    check_device(spec["trainer"])  # a cuda trainer measured on the CPU would print CPU figures under its name
    bench = benchmark_from(benchmark, spec["benchmark"]["config"])
    train, _, _ = load_splits(bench, 1.0, 0, val_fraction=0.0)

    def build():
        torch.manual_seed(0)
        return method_from(method, bench.spec(), spec["method"]["config"])

    return spec, build, train


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
    spec, build, train = _method_and_data(method, benchmark, ["trainer.batch_size=128", *overrides])
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


def perf_sweep(n_runs: int = 6, epochs: int = 1) -> dict:
    """Harness overhead per trial: the same runs in-process (no Ray) and through a one-CPU sweep."""
    import yaml

    from sweeps.driver import run_sweep
    from sweeps.plan import default_runs, make_plan
    from sweeps.progress import SweepDisplay
    from sweeps.suite import load_suite

    with tempfile.TemporaryDirectory(prefix="mmrl-perf-") as tmp:
        tmp = Path(tmp)
        suite_file = tmp / "suite.yaml"
        suite_file.write_text(yaml.safe_dump({
            "name": "perf", "methods": ["mvae"], "benchmarks": ["bc-3view"], "obs_ratios": [1.0],
            "seeds": list(range(n_runs)), "max_retries": 0,
            "overrides": ["trainer.progress=false", f"trainer.epochs={epochs}", "eval.metrics=[probe_linear]"]}))
        plan = make_plan(load_suite(str(suite_file)))
        store = ResultStore(tmp / "inproc")
        run_one(default_runs(plan)[0], ResultStore(tmp / "warm"))  # imports and first-call costs, not measured
        t0 = time.perf_counter()
        for spec in default_runs(plan):
            run_one(spec, store)
        inproc = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = run_sweep(plan, tmp / "sweep", num_cpus=1, display=SweepDisplay())
        swept = time.perf_counter() - t0
        if not result.ok:
            raise RuntimeError(f"perf sweep: runs failed: {[r.error for r in result.runs if r.error]}")
    return {"runs": n_runs, "in_process_s": inproc, "sweep_s": swept, "ratio": swept / inproc,
            "overhead_per_run_s": (swept - inproc) / n_runs}
