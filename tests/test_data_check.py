"""`bench data check`, and the paper suite end to end: refused without data (one line, exit 2), and with
``--skip-missing`` a sweep on fixture data of two benchmarks whose report lists the others as missing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from bench.cli import main
from bench.datacheck import check_suite
from bench.testing import fixtures as F
from bench.data.formats.medmnist import MedMnistOrgan
from bench.data.formats.polymnist import PolyMnist
from conftest import ROOT, python
from sweeps.suite import load_suite

PAPER = ROOT / "sweeps" / "suites" / "paper.yaml"
PRESENT = ("polymnist", "medmnist-organ")
ABSENT = ("mnist-svhn", "mnist-svhn-text", "cub-icc", "cubicc", "cub-200", "mimic-cxr")


def write_fixtures(root: Path) -> None:
    # enough per class for the engine's validation hold-out (10 %) to hold two of each class for its split-half probe
    F.write_polymnist_png(root / "polymnist", {"train": 16, "test": 4}, classes=(0, 1, 2))
    F.write_medmnist(root / "medmnist-organ", {"train": [16, 16, 16], "val": [1, 1, 1], "test": [4, 4, 4]})


def paper_like(tmp_path: Path, **changes) -> Path:
    """The paper suite file with a test's budget: the same benchmarks, name and sections, one method and cell."""
    raw = yaml.safe_load(PAPER.read_text())
    raw.update(methods=["mvae"], obs_ratios=[1.0], seeds=[0], tune=None, max_retries=0,
               overrides=raw["overrides"] + ["trainer.epochs=1", "eval.metrics=[probe_linear,kmeans_acc]"], **changes)
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run_cli(args, tmp_path, timeout=600):
    env = {**os.environ, "MMRL_RESULTS": str(tmp_path / "results"), "RAY_AUTH_MODE": "disabled",
           "MMRL_DATA": str(tmp_path / "no-data-here")}
    return subprocess.run([python(), "-m", "bench", *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=timeout)


def test_check_states_counts_and_cache(tmp_path):
    write_fixtures(tmp_path)
    (tmp_path / "medmnist-organ" / "organsmnist.npz").unlink()
    rows = {r.benchmark: r for r in check_suite(load_suite("paper"), str(tmp_path))}
    assert set(rows) == set(PRESENT + ABSENT)
    assert all(rows[b].state == "missing" for b in ABSENT)
    assert rows["medmnist-organ"].state == "incomplete"
    assert rows["medmnist-organ"].probe.missing_files == ("organsmnist.npz",)
    poly = rows["polymnist"].probe
    # the files are all there but hold fewer samples than the release: not complete
    assert poly.state == "incomplete" and poly.found == {"train": 48, "test": 12} and "train 48 of 60000" in poly.message
    assert poly.cache == "none"
    PolyMnist(PolyMnist.Config(root=str(tmp_path))).build()
    assert check_suite(load_suite("paper"), str(tmp_path))[2].probe.cache == "fresh"
    F.save_image(tmp_path / "polymnist" / "test" / "m0" / "0.0.png", F.class_images([9], (3, 28, 28), 5)[0])
    assert check_suite(load_suite("paper"), str(tmp_path))[2].probe.cache == "stale"


def test_data_check_command_exits_0_only_when_complete(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "250")  # one table row per line, whatever the terminal
    write_fixtures(tmp_path)
    suite = tmp_path / "two.yaml"
    suite.write_text(yaml.safe_dump({"name": "two", "methods": ["mvae"], "benchmarks": list(PRESENT) + ["digits-ms"]}))
    args = ["data", "check", "--suite", str(suite), "--root", str(tmp_path)]
    assert main(args) == 1  # fixture counts are below the releases'
    out = capsys.readouterr().out
    assert "incomplete" in out and "train 48/60000" in out and "embedded" in out
    # with the release's counts taken to be the fixture's, the same files are complete
    monkeypatch.setattr(PolyMnist, "expected", {"train": 48, "test": 12})
    monkeypatch.setattr(MedMnistOrgan, "expected", {})
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 of 3 benchmarks present" in out
    (tmp_path / "polymnist" / "train" / "m2" / "3.1.png").unlink()
    assert main(args) == 1
    assert "file names differ" in capsys.readouterr().out


def test_paper_sweep_without_data_refuses_in_one_line(tmp_path):
    out = run_cli(["sweep", "--suite", "paper"], tmp_path, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "no usable data for mnist-svhn, mnist-svhn-text, polymnist, cub-icc, cubicc, cub-200, medmnist-organ, " \
           "mimic-cxr" in lines[0]
    assert "python -m bench data check --suite paper" in lines[0] and "--skip-missing" in lines[0]
    assert not (tmp_path / "results" / "runs").exists()  # refused before any training


def test_paper_sweep_on_fixture_data_skips_and_reports_the_missing(tmp_path):
    root = tmp_path / "data"
    write_fixtures(root)
    suite = paper_like(tmp_path)
    out = run_cli(["sweep", "--suite", str(suite), "--root", str(root), "--skip-missing", "--cpus", "2", "--no-gpu"],
                  tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    flat = " ".join(out.stdout.split())
    assert f"missing (no data under {root}, skipped): benchmarks {', '.join(ABSENT)}" in flat
    assert "2 trained" in flat
    runs = list((tmp_path / "results" / "runs").glob("*.parquet"))
    assert len(runs) == 2
    board = (tmp_path / "results" / "report" / "paper" / "leaderboard.md").read_text()
    for b in PRESENT:
        assert f"| {b} | " in board and "missing" not in board.split(f"| {b} | ")[1].splitlines()[0]
    for b in ABSENT:
        assert f"| {b} | - | - | missing" in board  # no chance level or floor without runs


def test_a_single_run_without_data_is_refused_before_it_is_claimed(tmp_path):
    out = run_cli(["run", "benchmark=cub-200", "trainer.epochs=1"], tmp_path, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip().splitlines() == [
        f"error: no cub-200 data in {tmp_path / 'no-data-here' / 'cub-200'}: expected images.txt, "
        "image_class_labels.txt, train_test_split.txt, classes.txt, attributes/image_attribute_labels.txt, images/; "
        "`python -m bench data check` says where to get it"]
    assert not list((tmp_path / "results").glob("runs/*"))
