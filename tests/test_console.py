"""Console hygiene: figure data stays out of the results table, a multi-worker run says how many workers trained
it, and DeepSpeed's accelerator line is not printed (its other warnings are)."""

import io
import os
import subprocess

import pytest
from rich.console import Console

from bench.cli import figure_data_metrics, results_table, trained_by
from bench.records import make_rows
from conftest import python
from sweeps.driver import RunResult
from sweeps.progress import run_line

SPEC = {"method": {"name": "mvae"}, "benchmark": {"name": "digits-ms"}, "obs_ratio": 1.0, "seed": 0}


def _record(workers: int = 1):
    rows = [{"metric": "probe_linear", "target": "joint", "value": 0.91, "higher_is_better": True, "split": "test",
             "status": "done"},
            {"metric": "paired_unpaired_w2", "target": "mean", "value": 1.2, "higher_is_better": True,
             "split": "test", "status": "done"}]
    rows += [{"metric": "w2_profile", "target": f"paired:q{q:02d}", "value": q / 100, "higher_is_better": False,
              "split": "test", "status": "done"} for q in range(0, 101, 5)]
    rows += [{"metric": "class_distance_profile", "target": f"{i},{j}", "value": 0.5, "higher_is_better": False,
              "split": "test", "status": "done"} for i in range(2) for j in range(2)]
    return make_rows(SPEC, "r" * 16, "method", rows, epoch=1, wall_s=1.0, workers=workers)


def _render(renderable) -> str:
    console = Console(file=io.StringIO(), width=200, highlight=False)
    console.print(renderable)
    return console.file.getvalue()


def test_figure_data_rows_stay_out_of_the_console_table_but_not_out_of_the_record():
    record = _record()
    assert figure_data_metrics(record["metric"].unique()) == ["class_distance_profile", "w2_profile"]
    text = _render(results_table(record, "test metrics"))
    body = [ln for ln in text.splitlines() if ln.startswith("│")]
    assert len(body) == 2 and "probe_linear" in body[0] and "paired_unpaired_w2" in body[1]
    assert "paired:q05" not in text and "0,1" not in text
    caption = "figure data in the record and the report: class_distance_profile, w2_profile"
    assert caption in " ".join(text.split())  # the caption wraps at the table's width
    assert (record["metric"] == "w2_profile").sum() == 21  # the rows the table leaves out are in the record


def test_a_table_without_figure_data_has_no_caption():
    record = _record()
    text = _render(results_table(record[~record["metric"].str.endswith("_profile")], "test metrics"))
    assert "figure data" not in text and "probe_linear" in text


def test_the_worker_count_is_said_for_several_workers_or_when_it_differs_from_the_request():
    assert trained_by(_record(workers=2), requested=2) == " by 2 workers"
    assert trained_by(_record(workers=1), requested=1) == ""
    # a stored run trained by one process, asked for again with trainer.workers=2 (not part of the identity)
    assert trained_by(_record(workers=1), requested=2) == " by 1 worker"
    assert trained_by(_record(workers=2), requested=1) == " by 2 workers"


def test_a_sweep_run_line_says_its_workers():
    assert run_line(RunResult("mvae on digits-ms rho=1 seed=0", "abc", "done", workers=2)) == \
        "  done  mvae on digits-ms rho=1 seed=0 on 2 workers  (abc)"
    assert run_line(RunResult("mvae on digits-ms rho=1 seed=0", "abc", "failed", "boom\nmore")) == \
        "failed  mvae on digits-ms rho=1 seed=0  (abc): boom"


IMPORT = """
import os
os.environ.pop("DS_ACCELERATOR", None)  # DeepSpeed's auto-detection: the accelerator warning on a CPU machine
if {quiet}:
    from bench.train.deepspeed_setup import quiet_deepspeed_logs
    quiet_deepspeed_logs()
import deepspeed
from deepspeed.utils import logger
logger.warning("a warning of our own through DeepSpeed's logger")
"""


def _import_deepspeed(quiet: bool) -> str:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([python(), "-c", IMPORT.format(quiet=quiet)], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


def test_deepspeed_accelerator_line_is_filtered_at_its_source_and_other_warnings_still_print():
    loud = _import_deepspeed(quiet=False)
    if "accelerator" not in loud.lower():
        pytest.skip("this DeepSpeed prints no accelerator line on import: nothing to filter")
    quiet = _import_deepspeed(quiet=True)
    assert "accelerator" not in quiet.lower(), quiet
    assert "a warning of our own through DeepSpeed's logger" in quiet
