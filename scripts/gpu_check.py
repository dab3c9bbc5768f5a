"""The Python half of scripts/gpu_check.sh (docs/gpu.md): the checks of the GPU path, one subcommand each.

* ``missing``: the project's requirements (pyproject.toml) that are not installed, one per line.
* ``table``: every training method on digits-poly5 with an fp32 reference trainer (cuda, fp32, ZeRO-0) and with
  ``trainer=gpu-zero1`` and ``trainer=gpu-zero2`` (bf16): final losses (finite, and within ``--rtol`` of the fp32
  reference), the test probe, and ``bench perf train``'s bare-vs-engine samples/s per trainer.
* ``flops``: the training FLOPs per sample of every (method, benchmark) of the paper suite whose shapes are known
  without its data, under the paper protocol; the largest is the roofline's model. Runs on a CPU too.
* ``roofline``: that model's samples/s through the DeepSpeed engine (the paper suite's GPU settings: bf16,
  ZeRO-1) on synthetic batches, against the card's bf16 peak: roofline samples/s = peak FLOP/s / FLOPs per sample.
* ``records``: every stored spec that says device=cuda was trained where a GPU was seen (its ``hardware`` column).

Every subcommand appends its results to ``OUT/gpu_check.json`` and its table to ``OUT/gpu_check.md``; exit 0 when
every check held, 1 when one did not, 2 for bad input or no GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file from anywhere: the checkout's bench, not an installed copy
    sys.path.insert(0, str(ROOT))

BENCHMARK = "digits-poly5"
# the fp32 reference: the same device and loop as the bf16 trainers, without bf16 and ZeRO
TRAINERS = {"fp32": ["trainer=gpu-zero1", "trainer.precision=fp32", "trainer.zero_stage=0"],
            "zero1": ["trainer=gpu-zero1"], "zero2": ["trainer=gpu-zero2"]}
REFERENCE = "fp32"
# Dense bf16 tensor-core peaks in TFLOP/s, from NVIDIA's datasheets (the "with sparsity" figures halved): H100 SXM
# and H200 1,979 sparse; H100 PCIe 1,513; H100 NVL 1,671; A100 312 dense; L40S 362.05 dense; L4 242 sparse.
# Matched against torch.cuda.get_device_name, most specific first.
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.5), ("H200", 989.5), ("H100", 989.5), ("A100", 312.0),
                    ("L40S", 362.05), ("L4", 121.0))


# --- pure helpers (tested on a CPU: tests/test_gpu_check.py) --------------------------------------------------------
def requirements(pyproject: Path) -> list[str]:
    """The ``[project] dependencies`` of a pyproject.toml, as written."""
    text = pyproject.read_text()
    try:
        import tomllib

        return list(tomllib.loads(text)["project"]["dependencies"])
    except ImportError:  # Python 3.10: the block is a plain list of quoted strings
        block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", text, re.S | re.M)
        return re.findall(r'"([^"]+)"', block.group(1)) if block else []


def requirement_name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req.strip(), maxsplit=1)[0]


def missing_requirements(reqs: list[str], installed) -> list[str]:
    """The requirements whose distribution ``installed(name)`` says is absent."""
    return [r for r in reqs if not installed(requirement_name(r))]


def datasheet_peak_tflops(device_name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key.lower() in device_name.lower():
            return tflops
    return None


def roofline(samples_s: float, flops_per_sample: float, peak_flops_s: float) -> dict:
    """Compute roof of a training step: at most peak / FLOPs-per-sample samples/s; the fraction reached."""
    roof = peak_flops_s / flops_per_sample
    return {"roofline_samples_s": roof, "fraction": samples_s / roof,
            "achieved_tflops": samples_s * flops_per_sample / 1e12}


def relative_gap(value: float, reference: float) -> float:
    return abs(value - reference) / max(abs(reference), 1e-6)


def judge(row: dict, reference: dict | None, rtol: float) -> list[str]:
    """What is wrong with one trainer's row: a non-finite loss, or a loss farther than ``rtol`` from the fp32
    reference's (relative). Empty when nothing is."""
    bad = []
    for key in ("train_loss", "val_loss"):
        v = row.get(key)
        if v is None or not math.isfinite(v):
            bad.append(f"{key} is {v}")
        elif reference is not None and reference is not row and math.isfinite(reference.get(key, math.nan)):
            gap = relative_gap(v, reference[key])
            if gap > rtol:
                bad.append(f"{key} {v:.4g} is {100 * gap:.1f} % from fp32's {reference[key]:.4g} (> {100 * rtol:g} %)")
    return bad


def largest(rows: list[dict]) -> dict:
    """The row with the most training FLOPs per sample (ties: the first)."""
    return max(rows, key=lambda r: r["flops_per_sample"])


def markdown(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A markdown table; columns are (key, header, format spec)."""
    def cell(r, key, fmt):
        v = r.get(key)
        if v is None:
            return ""
        return format(v, fmt) if fmt and isinstance(v, (int, float)) else str(v)

    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(r, k, f) for k, _, f in columns) + " |" for r in rows]
    return "\n".join(lines)


# --- models, batches, FLOPs ----------------------------------------------------------------------------------------
def synthetic_batch(bspec, n: int, seed: int = 0) -> dict:
    """A complete batch of ``n`` samples of the benchmark's shapes: images in [0, 1], vectors N(0, 1), token and
    class ids in range. Speed and FLOPs depend on the shapes only."""
    import torch

    g = torch.Generator().manual_seed(seed)
    data = {}
    for m in bspec.modalities:
        shape = (n, *m.shape)
        if m.kind == "text":
            data[m.name] = torch.randint(0, m.vocab_size, shape, generator=g)
        elif m.kind == "mask":
            data[m.name] = torch.randint(0, m.n_classes, shape, generator=g)
        elif m.kind == "image":
            data[m.name] = torch.rand(shape, generator=g)
        else:
            data[m.name] = torch.randn(shape, generator=g)
    return {"data": data, "mask": torch.ones(n, len(bspec.modalities), dtype=torch.bool),
            "label": torch.randint(0, bspec.n_classes, (n,), generator=g)}


def flops_per_sample(model, batch: dict) -> float:
    """FLOPs of one training step (loss forward and backward) divided by the batch size, as torch's FlopCounterMode
    counts them: matrix products and convolutions (2 per multiply-add), not elementwise work or the optimiser."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench.train.loop import to_device

    model.train()
    torch.manual_seed(0)
    device = next(model.parameters()).device
    with FlopCounterMode(display=False) as counter:
        model.loss(to_device(batch, device))["loss"].backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(batch["label"])


def build(method: str, benchmark: str, overrides: list[str], data_root: str | None = None):
    """(spec, benchmark spec, model) for a composed configuration; the model on the CPU, seeded."""
    import torch

    from bench.compose import compose
    from bench.config import make_config
    from bench.registry import BENCHMARKS, METHODS
    from bench.run import resolve_spec

    from sweeps.plan import needs_data, root_override

    ov = [f"method={method}", f"benchmark={benchmark}", *overrides]
    if data_root and needs_data(benchmark):
        ov.append(root_override(data_root))
    spec = resolve_spec(compose(ov))
    bcls, mcls = BENCHMARKS.get(benchmark), METHODS.get(method)
    bspec = bcls(make_config(bcls.Config, spec["benchmark"]["config"], "benchmark")).spec()
    torch.manual_seed(0)
    return spec, bspec, mcls(bspec, make_config(mcls.Config, spec["method"]["config"], "method"))


def suite_models(suite: str = "paper") -> list[tuple[str, str, list[str]]]:
    """(method, benchmark, overrides) of every cell of a suite with its GPU settings, as sweeps.plan composes
    them; methods that do not train are left out."""
    from bench.registry import METHODS
    from sweeps.suite import load_suite

    s = load_suite(suite).for_device(True)
    return [(m.name, b.name, [*s.overrides, *m.overrides, *b.overrides]) for b in s.benchmarks for m in s.methods
            if m.name in METHODS and getattr(METHODS.get(m.name), "trains", True)]


def count_flops(models, data_root: str | None, log=print) -> tuple[list[dict], list[str]]:
    """FLOPs per training sample of each (method, benchmark, overrides) at its training batch size (a loss over the
    whole batch, such as InfoNCE, grows faster than the batch); benchmarks whose shapes need their data and have
    none are skipped, named in the second list."""
    import torch

    from bench.errors import DataError

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # the same count, sooner
    rows, skipped = [], []
    for method, benchmark, overrides in models:
        if benchmark in skipped:
            continue
        try:
            spec, bspec, model = build(method, benchmark, overrides, data_root)
        except DataError:
            skipped.append(benchmark)
            continue
        bs = int(spec["trainer"]["batch_size"])
        f = flops_per_sample(model.to(device), synthetic_batch(bspec, bs))
        params = sum(p.numel() for p in model.parameters())
        rows.append({"method": method, "benchmark": benchmark, "overrides": overrides, "batch_size": bs,
                     "params": params, "flops_per_sample": f, "gflops_per_sample": f / 1e9})
        log(f"  {method} on {benchmark}: {params / 1e6:.2f} M parameters, {f / 1e9:.3f} GFLOP per training sample "
            f"(batch {bs})")
    return rows, skipped


# --- GPU measurements ----------------------------------------------------------------------------------------------
def require_gpu() -> None:
    import torch

    if not torch.cuda.is_available():
        sys.exit(fail("no GPU is visible to torch (torch.cuda.is_available() is False); run this on a machine with "
                      "a CUDA GPU (docs/gpu.md)", 2))


def matmul_tflops(n: int = 8192, seconds: float = 2.0) -> float:
    """bf16 matrix-product throughput this card reaches with torch.mm: the practical ceiling beside the datasheet."""
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    iters, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            a @ b
        torch.cuda.synchronize()
        iters += 10
    return 2 * n**3 * iters / (time.perf_counter() - t0) / 1e12


def engine_samples_s(model, batch: dict, trainer: dict, steps: int = 30, warmup: int = 5) -> float:
    """Steady-state samples/s of DeepSpeed training steps (forward, backward, step) on one batch already on the GPU:
    model compute and engine work, no data loading."""
    import torch

    from bench.train.deepspeed_setup import ds_config, ensure_dist_env, import_deepspeed
    from bench.train.loop import to_device

    ensure_dist_env()
    deepspeed = import_deepspeed()
    engine, *_ = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                      config=ds_config(trainer, True, 1))
    dtype = torch.bfloat16 if trainer.get("precision") == "bf16" else None
    batch = to_device(batch, torch.device("cuda"), dtype)
    engine.train()

    def step():
        loss = engine(batch)["loss"]
        engine.backward(loss)
        engine.step()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return steps * len(batch["label"]) / (time.perf_counter() - t0)


def train_and_read(method: str, benchmark: str, overrides: list[str], results: Path, epochs: int) -> dict:
    """One run through run_one (the store, the engine, the evaluation) and what the table shows of its record."""
    from bench.compose import compose
    from bench.run import resolve_spec, run_one
    from bench.store import ResultStore

    spec = resolve_spec(compose([f"method={method}", f"benchmark={benchmark}", *overrides, f"trainer.epochs={epochs}",
                                 "trainer.progress=false", "eval.metrics=[probe_linear]"]))
    out = run_one(spec, ResultStore(results), force=True)
    rec = out.record
    last = rec[rec["epoch"] == rec.loc[rec["metric"] == "loss", "epoch"].max()]

    def value(metric, split, target=""):
        v = last[(last["metric"] == metric) & (last["split"] == split) & (last["target"] == target)]["value"]
        return float(v.iloc[0]) if len(v) else None

    probe = rec[(rec["metric"] == "probe_linear") & (rec["split"] == "test") & (rec["target"] == "joint")]["value"]
    return {"run_id": out.run_id, "device": spec["trainer"]["device"], "precision": spec["trainer"]["precision"],
            "zero_stage": spec["trainer"]["zero_stage"], "train_loss": value("loss", "train"),
            "val_loss": value("loss", "val"), "probe_linear": float(probe.iloc[0]) if len(probe) else None,
            "wall_s": out.wall_s}


# --- subcommands ---------------------------------------------------------------------------------------------------
def fail(msg: str, code: int = 1) -> int:
    print(f"gpu_check: {msg}", file=sys.stderr)
    return code


def save(out: Path, key: str, value, table: str) -> None:
    """Append one check's results to OUT/gpu_check.json and its table to OUT/gpu_check.md."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "gpu_check.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    path.write_text(json.dumps(data, indent=1, sort_keys=True))
    with open(out / "gpu_check.md", "a") as f:
        f.write(f"\n## {key}\n\n{table}\n")


def cmd_missing(args) -> int:
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> bool:
        try:
            version(name)
            return True
        except PackageNotFoundError:
            return False

    for req in missing_requirements(requirements(ROOT / "pyproject.toml"), installed):
        print(req)
    return 0


def cmd_table(args) -> int:
    import torch

    from bench.perf.train import perf_train
    from bench.registry import METHODS

    require_gpu()
    methods = args.methods or [m for m in METHODS.names() if getattr(METHODS.get(m), "trains", True)]
    rows, problems = [], []
    for method in methods:
        ref = None
        for name in (REFERENCE, *(t for t in TRAINERS if t != REFERENCE)):
            ov = TRAINERS[name]
            print(f"{method} / {name}: training {args.epochs} epoch(s) on {BENCHMARK}", flush=True)
            try:
                row = {"method": method, "trainer": name, **train_and_read(method, BENCHMARK, ov, args.out / "results",
                                                                            args.epochs)}
                perf = perf_train(method, BENCHMARK, repeats=args.repeats, overrides=tuple(ov))
                row.update(bare_samples_s=perf["bare_samples_s"], engine_samples_s=perf["engine_samples_s"],
                           engine_over_bare=perf["engine_samples_s"] / perf["bare_samples_s"])
            except Exception as e:  # one failing method must not hide the others' rows
                row = {"method": method, "trainer": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
            ref = row if name == REFERENCE else ref
            row["problems"] = "; ".join([row["error"]] if "error" in row else judge(row, ref, args.rtol))
            if name != REFERENCE and ref is not None and row.get("train_loss") is not None and "error" not in ref:
                row["train_loss_gap_pct"] = 100 * relative_gap(row["train_loss"], ref["train_loss"])
            problems += [f"{method}/{name}: {row['problems']}"] if row["problems"] else []
            rows.append(row)
            print(f"  {json.dumps(row)}", flush=True)
    cols = [("method", "method", ""), ("trainer", "trainer", ""), ("train_loss", "train loss", ".4f"),
            ("val_loss", "val loss", ".4f"), ("train_loss_gap_pct", "gap to fp32 %", ".2f"),
            ("probe_linear", "probe", ".3f"), ("bare_samples_s", "bare samples/s", ".0f"),
            ("engine_samples_s", "engine samples/s", ".0f"), ("engine_over_bare", "engine/bare", ".2f"),
            ("problems", "problems", "")]
    head = (f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}; {BENCHMARK}, {args.epochs} epoch(s), "
            f"seed 0; losses of the last epoch; samples/s: median of {args.repeats} epochs of bench perf train\n\n")
    save(args.out, "table", rows, head + markdown(rows, cols))
    for p in problems:
        fail(p)
    return 1 if problems else 0


def cmd_flops(args) -> int:
    rows, skipped = count_flops(suite_models(args.suite), args.root)
    if not rows:
        return fail(f"no model of suite {args.suite} could be built (data missing for {', '.join(skipped)})", 2)
    top = largest(rows)
    rows.sort(key=lambda r: -r["flops_per_sample"])
    note = (f"suite {args.suite} with its GPU settings; largest: {top['method']} on {top['benchmark']}"
            + (f"; not counted (shapes need data, none under the data root): {', '.join(skipped)}" if skipped else ""))
    print(note)
    cols = [("method", "method", ""), ("benchmark", "benchmark", ""), ("batch_size", "batch", "d"),
            ("params", "parameters", ",d"), ("gflops_per_sample", "GFLOP/sample (train)", ".4f")]
    save(args.out, "flops", {"rows": rows, "skipped": skipped, "largest": top}, note + "\n\n" + markdown(rows, cols))
    return 0


def cmd_roofline(args) -> int:
    import torch

    require_gpu()
    path = args.out / "gpu_check.json"
    found = json.loads(path.read_text()).get("flops") if path.exists() else None
    if found is None:
        return fail(f"no FLOP counts in {path}; run the flops step first", 2)
    top = found["largest"]
    spec, bspec, model = build(top["method"], top["benchmark"], top["overrides"], args.root)
    name = torch.cuda.get_device_name(0)
    peak = args.peak_tflops or datasheet_peak_tflops(name)
    measured = matmul_tflops()
    sps = engine_samples_s(model, synthetic_batch(bspec, top["batch_size"]), spec["trainer"])
    row = {"device": name, "method": top["method"], "benchmark": top["benchmark"], "batch_size": top["batch_size"],
           "gflops_per_sample": top["flops_per_sample"] / 1e9, "samples_s": sps, "matmul_tflops": measured,
           "datasheet_tflops": peak}
    against = {"matmul": measured, **({"datasheet": peak} if peak else {})}
    for label, tflops in against.items():
        r = roofline(sps, top["flops_per_sample"], tflops * 1e12)
        row[f"roofline_samples_s_{label}"], row[f"fraction_{label}"] = r["roofline_samples_s"], r["fraction"]
        row["achieved_tflops"] = r["achieved_tflops"]
    cols = [("device", "device", ""), ("method", "method", ""), ("benchmark", "benchmark", ""),
            ("batch_size", "batch", "d"), ("gflops_per_sample", "GFLOP/sample", ".4f"),
            ("samples_s", "samples/s", ".0f"),
            ("achieved_tflops", "TFLOP/s reached", ".2f"), ("matmul_tflops", "bf16 mm TFLOP/s", ".0f"),
            ("fraction_matmul", "of mm roof", ".2%"), ("datasheet_tflops", "datasheet TFLOP/s", ".0f"),
            ("fraction_datasheet", "of datasheet roof", ".2%")]
    note = (f"DeepSpeed engine with the suite's GPU trainer (precision {spec['trainer']['precision']}, ZeRO-"
            f"{spec['trainer']['zero_stage']}), one synthetic batch resident on the GPU; "
            "roofline samples/s = peak bf16 FLOP/s / training FLOPs per sample"
            + ("" if peak else f"; no datasheet peak known for {name!r}: pass --peak-tflops"))
    save(args.out, "roofline", row, note + "\n\n" + markdown([row], cols))
    print(json.dumps(row))
    return 0


def cmd_records(args) -> int:
    """A spec that says device=cuda whose record's hardware names no GPU is the lie of issue 16: say so."""
    import pandas as pd

    runs = sorted((args.out / "results" / "runs").glob("*.json"))
    if not runs:
        return fail(f"no records under {args.out / 'results' / 'runs'}", 1)
    rows, bad = [], []
    for path in runs:
        spec = json.loads(path.read_text())
        hw = pd.read_parquet(path.with_suffix(".parquet"), columns=["hardware"])["hardware"].iloc[0]
        t = spec["trainer"]
        ok = t["device"] != "cuda" or not hw.endswith("/cpu")
        rows.append({"run_id": path.stem, "method": spec["method"]["name"], "device": t["device"],
                     "precision": t["precision"], "zero_stage": t["zero_stage"], "hardware": hw,
                     "consistent": "yes" if ok else "NO"})
        bad += [] if ok else [path.stem]
    cols = [(k, k, "") for k in ("run_id", "method", "device", "precision", "zero_stage", "hardware", "consistent")]
    save(args.out, "records", rows, markdown(rows, cols))
    if bad:
        return fail(f"records whose spec says cuda but whose hardware column says cpu: {', '.join(bad)}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("missing").set_defaults(func=cmd_missing)
    for name, func in (("table", cmd_table), ("flops", cmd_flops), ("roofline", cmd_roofline),
                       ("records", cmd_records)):
        sp = sub.add_parser(name)
        sp.add_argument("--out", type=Path, default=ROOT / "results" / "gpu-check")
        sp.set_defaults(func=func)
        if name == "table":
            sp.add_argument("--methods", nargs="*", default=None, help="default: every method that trains")
            sp.add_argument("--epochs", type=int, default=1)
            sp.add_argument("--repeats", type=int, default=3, help="epochs timed per trainer by bench perf train")
            sp.add_argument("--rtol", type=float, default=0.05,
                            help="largest relative gap of a bf16 loss to the fp32 reference's")
        if name in ("flops", "roofline"):
            sp.add_argument("--root", default=None, help="paper data root: shapes of the benchmarks that need data")
        if name == "flops":
            sp.add_argument("--suite", default="paper")
        if name == "roofline":
            sp.add_argument("--peak-tflops", type=float, default=None,
                            help="the card's dense bf16 peak, where the built-in datasheet table lacks it")
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
