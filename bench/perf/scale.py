"""``python -m bench perf scale``: training samples/s of one worker against N data-parallel workers (Ray Train
``TorchTrainer``, DeepSpeed in each worker) for one method and benchmark, and the scaling efficiency
``samples/s(N) / (N x samples/s(1))``.

* Both are timed inside the training loop (``TrainResult.train_s``: after ``deepspeed.initialize``), never around
  ``TorchTrainer.fit()``, whose worker-group start-up costs 20-30 s on 2 cores whatever the training
  (docs/distributed.md); that start-up is a once-per-run cost reported separately.
* Every worker, and the single worker, runs ``threads`` torch threads (1 by default), so N workers use N cores and
  the comparison is core for core. The global batch is the same for both (N workers take a slice each).
* The single worker runs in this process, the N workers in one ``fit()``; each repeats the measurement and the
  median is reported.
* CPU only: data parallelism over several GPUs needs several GPUs; one lent GPU cannot show it.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.ray_local import start_local_ray, stop_local_ray
from bench.perf.common import method_and_data
from bench.registry import register_perf_verb


def _measure(method: str, benchmark: str, overrides: list[str], repeats: int, epochs: int, threads: int) -> list[dict]:
    """``repeats`` trainings of ``epochs`` epochs from a fresh model; samples/s of each (on every worker when
    several run: the loop reduces the sample count over the workers)."""
    from bench.train.loop import train

    torch.set_num_threads(threads)
    spec, build, data = method_and_data(method, benchmark, overrides)
    trainer = {**spec["trainer"], "epochs": epochs}
    out = []
    for _ in range(repeats):
        result = train(build(), data, None, trainer, "perf-scale", ckpt_dir=None)
        out.append({"samples": result.samples, "train_s": result.train_s,
                    "samples_s": result.samples / result.train_s, "world": result.world_size})
    return out


def _worker(config: dict) -> None:
    import json

    import ray.train

    out = _measure(config["method"], config["benchmark"], config["overrides"], config["repeats"], config["epochs"],
                   config["threads"])
    if ray.train.get_context().get_world_rank() == 0:
        Path(config["path"]).write_text(json.dumps(out))


def perf_scale(method: str = "mvae", benchmark: str = "digits-ms", workers: int = 2, repeats: int = 3,
               epochs: int = 1, threads: int = 1, batch_size: int = 128) -> dict:
    import json

    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    overrides = [f"trainer.batch_size={batch_size}", "trainer.device=cpu", "trainer.progress=false"]
    _measure(method, benchmark, overrides, 1, 1, threads)  # warm-up: imports, allocator, DeepSpeed's first init
    one = _measure(method, benchmark, overrides, repeats, epochs, threads)
    with tempfile.TemporaryDirectory(prefix="mmrl-perf-scale-") as tmp:
        started = None
        if not ray.is_initialized():
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            started = start_local_ray(workers * threads, object_store_mb=128)
        try:
            path = Path(tmp) / "many.json"
            t0 = time.perf_counter()
            # one warm-up training inside the workers as well, then the measured ones
            TorchTrainer(_worker, train_loop_config={"method": method, "benchmark": benchmark,
                                                     "overrides": overrides, "repeats": repeats + 1,
                                                     "epochs": epochs, "threads": threads, "path": str(path)},
                         scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": threads}),
                         run_config=RunConfig(name="perf-scale", storage_path=str(Path(tmp) / "ray"))).fit()
            fit_s = time.perf_counter() - t0
            many = json.loads(path.read_text())[1:]
        finally:
            stop_local_ray(started)
    s1 = statistics.median(r["samples_s"] for r in one)
    sn = statistics.median(r["samples_s"] for r in many)
    train_n = sum(r["train_s"] for r in many) + many[0]["train_s"]  # the warm-up took about one more
    return {"method": method, "benchmark": benchmark, "workers": workers, "threads": threads,
            "batch_size": batch_size, "samples_per_epoch": one[0]["samples"] // epochs,
            "one_samples_s": s1, "many_samples_s": sn, "speedup": sn / s1, "efficiency": sn / (workers * s1),
            "startup_s": max(0.0, fit_s - train_n), "cpus": os.cpu_count()}


def print_perf_scale(console, r: dict) -> None:
    console.print(
        f"{r['method']} on {r['benchmark']} ({r['samples_per_epoch']} samples per epoch, global batch "
        f"{r['batch_size']}, {r['threads']} torch thread(s) per worker, {r['cpus']} CPUs, CPU only): "
        f"1 worker {r['one_samples_s']:.0f} samples/s, {r['workers']} workers {r['many_samples_s']:.0f} samples/s: "
        f"speed-up {r['speedup']:.2f}x, scaling efficiency {100 * r['efficiency']:.0f} % "
        f"(Ray Train start-up, not counted: {r['startup_s']:.0f} s per run)")


def add_arguments(parser) -> None:
    parser.add_argument("--method", default="mvae")
    parser.add_argument("--benchmark", default="digits-ms")
    parser.add_argument("--repeats", type=int, default=3, help="trainings timed on each side (median)")


@register_perf_verb("scale", help="samples/s of one worker against 2 data-parallel workers (Ray Train, CPU)",
                    add_arguments=add_arguments)
def run(args, console, out_dir) -> None:
    print_perf_scale(console, perf_scale(args.method, args.benchmark, repeats=args.repeats))
