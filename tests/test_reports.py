"""Reports: golden tables from a hand-made store, determinism, the HTML page in headless Chromium (escaping
included), failed and missing runs, and the statistics against known answers."""

from __future__ import annotations

import argparse
import itertools
import math
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.records import make_rows
from bench.store import ResultStore
from reports import stats as st
from reports import tables as tb
from reports.build import report_from_store, write_report
from reports.cli import add_report_parser
from reports.plots import png_bytes, sample_grid

# --- the fixture store ----------------------------------------------------------------------------------------------
# 3 methods and the untrained floor x 2 benchmarks x 2 observation ratios x 2 seeds. A run's value is the table entry
# at ratio 1 and seed 0, minus 0.10 at ratio 0.5, plus 0.02 for seed 1, so every finished cell is
# (entry + shift + 0.01) ± 0.02/sqrt(2), and its noise band against the floor is 2 * 0.02/sqrt(2) = 0.028.
METHODS = ("concat", "mopoe", "mvae", "untrained")
BENCHMARKS = ("digits-ms", "tab-2v")
RATIOS = (0.5, 1.0)
SEEDS = (0, 1)
# the floor: on digits-ms under every method by more than the noise band (nothing greyed); on tab-2v equal to mopoe,
# the largest number of its row, which is greyed and not bold, and above the others, so that row has no mark at all
PROBE = {("digits-ms", "concat"): 0.60, ("digits-ms", "mopoe"): 0.70, ("digits-ms", "mvae"): 0.80,
         ("digits-ms", "untrained"): 0.55,
         ("tab-2v", "concat"): 0.50, ("tab-2v", "mopoe"): 0.75, ("tab-2v", "mvae"): 0.65,
         ("tab-2v", "untrained"): 0.75}
# two targets per run: the table reports their mean per run (concat cannot serve retrieval: not applicable);
# mopoe on tab-2v is at chance (0.1) and under the floor
RETRIEVAL = {("digits-ms", "mopoe"): (0.40, 0.50), ("digits-ms", "mvae"): (0.30, 0.40),
             ("tab-2v", "mopoe"): (0.10, 0.10), ("tab-2v", "mvae"): (0.30, 0.50),
             ("digits-ms", "untrained"): (0.15, 0.15), ("tab-2v", "untrained"): (0.15, 0.15)}
PROBE_CHANCE = 0.10    # + 0.01 for seed 1: the chance column is the mean over the row's runs, 0.105
RETRIEVAL_CHANCE = 0.10
FAILED = ("mvae", "tab-2v", 0.5, 1)
MISSING = ("concat", "digits-ms", 1.0, 1)
EVIL = "<script>window.__pwned=1</script>"
EVIL_BENCH = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"


def _row(metric, target, value, status="done", split="test", **extra):
    return {"metric": metric, "target": target, "value": value, "higher_is_better": metric != "loss", "split": split,
            "status": status, **extra}


def _results(method, bench, ratio, seed):
    s = (-0.10 if ratio == 0.5 else 0.0) + 0.02 * seed
    # the "m1" target must be ignored: probe_linear has a "joint" target, and the joint is what the table shows
    rows = [_row("probe_linear", "joint", PROBE.get((bench, method), 0.5) + s), _row("probe_linear", "m1", 0.0)]
    # chance rows beside every done target (bench.eval.evaluate); the joint one is what the table shows
    rows += [_row("probe_linear", t, c, split="chance") for t, c in (("joint", PROBE_CHANCE + 0.01 * seed),
                                                                     ("m1", 0.9))]
    if (bench, method) in RETRIEVAL:
        a, b = RETRIEVAL[bench, method]
        rows += [_row("retrieval_r1", "m1->m2", a + s), _row("retrieval_r1", "m2->m1", b + s)]
        rows += [_row("retrieval_r1", t, RETRIEVAL_CHANCE, split="chance") for t in ("m1->m2", "m2->m1")]
    else:
        rows.append(_row("retrieval_r1", "", math.nan, "not_applicable"))
    for e in range(3):
        rows.append(_row("loss", "", 1.0 / (e + 1) + s, split="val", epoch=e))
        rows.append(_row("loss", "", 1.2 / (e + 1) + s, split="train", epoch=e))
    return rows


def _put(store, method, bench, ratio, seed, suite="paper", protocol=None):
    tag = f"{suite}_{method}_{bench}_{ratio}_{seed}" + (f"_{protocol}" if protocol else "")
    run_id = "".join(ch for ch in tag if ch.isalnum() or ch in "_.-")[:60]
    spec = {"method": {"name": method}, "benchmark": {"name": bench}, "obs_ratio": ratio, "seed": seed, "suite": suite}
    if protocol:  # a spec without eval.protocol is the default protocol
        spec["eval"] = {"protocol": protocol}
    store.claim(run_id, meta={"method": method, "benchmark": bench, "obs_ratio": ratio, "seed": seed, "suite": suite})
    store.put(run_id, spec, make_rows(spec, run_id, "method", _results(method, bench, ratio, seed), epoch=3, wall_s=1.0))
    return run_id


def _fail(store, method, bench, ratio, seed, error, suite="paper"):
    run_id = "".join(ch for ch in f"{suite}_{method}_{bench}_{ratio}_{seed}" if ch.isalnum() or ch in "_.-")[:60]
    store.claim(run_id, meta={"method": method, "benchmark": bench, "obs_ratio": ratio, "seed": seed, "suite": suite})
    store.mark(run_id, "failed", error=error)


def _grid(methods=METHODS, benchmarks=BENCHMARKS):
    return list(itertools.product(methods, benchmarks, RATIOS, SEEDS))


def write_fixture(root: Path) -> tuple[ResultStore, pd.DataFrame]:
    store = ResultStore(root)
    for key in _grid():
        if key == MISSING:
            continue
        if key == FAILED:
            _fail(store, *key, error="RuntimeError: boom <b>not bold</b>\nTraceback ...")
        else:
            _put(store, *key)
    return store, pd.DataFrame(_grid(), columns=tb.KEY)


@pytest.fixture(scope="module")
def fixture_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    store, expected = write_fixture(root / "results")
    paths = report_from_store(store, root / "report", expected=expected, config={"suite": "paper"})
    return store, expected, paths, root


# --- golden tables ------------------------------------------------------------------------------------------------

GOLDEN_MD = f"""# mmrl-bench report: leaderboard

{tb.LEGEND}

## probe_linear, observation ratio 0.5 (higher is better)

| benchmark | chance | floor (untrained) | concat | mopoe | mvae |
| --- | --- | --- | --- | --- | --- |
| digits-ms | 0.105 | 0.460 ± 0.014 (n=2) | 0.510 ± 0.014 (n=2) | <u>0.610 ± 0.014</u> (n=2) | **0.710 ± 0.014** (n=2) |
| tab-2v | 0.104 | 0.660 ± 0.014 (n=2) | 0.410 ± 0.014† (n=2) | 0.660 ± 0.014† (n=2) | 0.550† (n=1; 1 failed) |

*Evaluation protocol: default. †: within noise of the untrained floor or not above chance (never bold or underlined).*

## probe_linear, observation ratio 1 (higher is better)

| benchmark | chance | floor (untrained) | concat | mopoe | mvae |
| --- | --- | --- | --- | --- | --- |
| digits-ms | 0.104 | 0.560 ± 0.014 (n=2) | 0.600 (n=1; 1 missing) | <u>0.710 ± 0.014</u> (n=2) | **0.810 ± 0.014** (n=2) |
| tab-2v | 0.105 | 0.760 ± 0.014 (n=2) | 0.510 ± 0.014† (n=2) | 0.760 ± 0.014† (n=2) | 0.660 ± 0.014† (n=2) |

*Evaluation protocol: default. †: within noise of the untrained floor or not above chance (never bold or underlined).*

## retrieval_r1, observation ratio 0.5 (higher is better)

| benchmark | chance | floor (untrained) | concat | mopoe | mvae |
| --- | --- | --- | --- | --- | --- |
| digits-ms | 0.100 | 0.060 ± 0.014 (n=2) | n/a | **0.360 ± 0.014** (n=2) | 0.260 ± 0.014 (n=2) |
| tab-2v | 0.100 | 0.060 ± 0.014 (n=2) | n/a | 0.010 ± 0.014† (n=2) | **0.300** (n=1; 1 failed) |

*Evaluation protocol: default. †: within noise of the untrained floor or not above chance (never bold or underlined).*

## retrieval_r1, observation ratio 1 (higher is better)

| benchmark | chance | floor (untrained) | concat | mopoe | mvae |
| --- | --- | --- | --- | --- | --- |
| digits-ms | 0.100 | 0.160 ± 0.014 (n=2) | n/a | **0.460 ± 0.014** (n=2) | 0.360 ± 0.014 (n=2) |
| tab-2v | 0.100 | 0.160 ± 0.014 (n=2) | n/a | 0.110 ± 0.014† (n=2) | **0.410 ± 0.014** (n=2) |

*Evaluation protocol: default. †: within noise of the untrained floor or not above chance (never bold or underlined).*
"""

GOLDEN_CSV = """\
metric,higher_is_better,protocol,obs_ratio,benchmark,method,status,mean,std,n,n_failed,n_pruned,n_running,n_missing,chance,floor,floor_std,floor_n,floor_status,greyed,mark
probe_linear,true,default,0.5,digits-ms,concat,ok,0.510000,0.014142,2,0,0,0,0,0.105000,0.460000,0.014142,2,ok,false,
probe_linear,true,default,0.5,digits-ms,mopoe,ok,0.610000,0.014142,2,0,0,0,0,0.105000,0.460000,0.014142,2,ok,false,second
probe_linear,true,default,0.5,digits-ms,mvae,ok,0.710000,0.014142,2,0,0,0,0,0.105000,0.460000,0.014142,2,ok,false,best
probe_linear,true,default,0.5,tab-2v,concat,ok,0.410000,0.014142,2,0,0,0,0,0.104286,0.660000,0.014142,2,ok,true,
probe_linear,true,default,0.5,tab-2v,mopoe,ok,0.660000,0.014142,2,0,0,0,0,0.104286,0.660000,0.014142,2,ok,true,
probe_linear,true,default,0.5,tab-2v,mvae,ok,0.550000,,1,1,0,0,0,0.104286,0.660000,0.014142,2,ok,true,
probe_linear,true,default,1,digits-ms,concat,ok,0.600000,,1,0,0,0,1,0.104286,0.560000,0.014142,2,ok,false,
probe_linear,true,default,1,digits-ms,mopoe,ok,0.710000,0.014142,2,0,0,0,0,0.104286,0.560000,0.014142,2,ok,false,second
probe_linear,true,default,1,digits-ms,mvae,ok,0.810000,0.014142,2,0,0,0,0,0.104286,0.560000,0.014142,2,ok,false,best
probe_linear,true,default,1,tab-2v,concat,ok,0.510000,0.014142,2,0,0,0,0,0.105000,0.760000,0.014142,2,ok,true,
probe_linear,true,default,1,tab-2v,mopoe,ok,0.760000,0.014142,2,0,0,0,0,0.105000,0.760000,0.014142,2,ok,true,
probe_linear,true,default,1,tab-2v,mvae,ok,0.660000,0.014142,2,0,0,0,0,0.105000,0.760000,0.014142,2,ok,true,
retrieval_r1,true,default,0.5,digits-ms,concat,n/a,,,0,0,0,0,0,0.100000,0.060000,0.014142,2,ok,false,
retrieval_r1,true,default,0.5,digits-ms,mopoe,ok,0.360000,0.014142,2,0,0,0,0,0.100000,0.060000,0.014142,2,ok,false,best
retrieval_r1,true,default,0.5,digits-ms,mvae,ok,0.260000,0.014142,2,0,0,0,0,0.100000,0.060000,0.014142,2,ok,false,
retrieval_r1,true,default,0.5,tab-2v,concat,n/a,,,0,0,0,0,0,0.100000,0.060000,0.014142,2,ok,false,
retrieval_r1,true,default,0.5,tab-2v,mopoe,ok,0.010000,0.014142,2,0,0,0,0,0.100000,0.060000,0.014142,2,ok,true,
retrieval_r1,true,default,0.5,tab-2v,mvae,ok,0.300000,,1,1,0,0,0,0.100000,0.060000,0.014142,2,ok,false,best
retrieval_r1,true,default,1,digits-ms,concat,n/a,,,0,0,0,0,1,0.100000,0.160000,0.014142,2,ok,false,
retrieval_r1,true,default,1,digits-ms,mopoe,ok,0.460000,0.014142,2,0,0,0,0,0.100000,0.160000,0.014142,2,ok,false,best
retrieval_r1,true,default,1,digits-ms,mvae,ok,0.360000,0.014142,2,0,0,0,0,0.100000,0.160000,0.014142,2,ok,false,
retrieval_r1,true,default,1,tab-2v,concat,n/a,,,0,0,0,0,0,0.100000,0.160000,0.014142,2,ok,false,
retrieval_r1,true,default,1,tab-2v,mopoe,ok,0.110000,0.014142,2,0,0,0,0,0.100000,0.160000,0.014142,2,ok,true,
retrieval_r1,true,default,1,tab-2v,mvae,ok,0.410000,0.014142,2,0,0,0,0,0.100000,0.160000,0.014142,2,ok,false,best
"""


def test_golden_markdown_and_csv_and_a_second_run_is_byte_identical(fixture_report):
    store, expected, paths, root = fixture_report
    assert paths["leaderboard.md"].read_text(encoding="utf-8") == GOLDEN_MD
    assert paths["leaderboard.csv"].read_text(encoding="utf-8") == GOLDEN_CSV
    again = report_from_store(store, root / "again", expected=expected, config={"suite": "paper"})
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.tex", "stats.md", "stats.csv"):
        assert again[name].read_bytes() == paths[name].read_bytes(), name
    assert {"index.html", "figures/metric_probe_linear.png", "figures/cd_probe_linear.png",
            "figures/rank_heatmap.png", "figures/training_curves.png"} <= set(paths)


def test_latex_is_booktabs_with_marks_and_escapes(fixture_report):
    tex = fixture_report[2]["leaderboard.tex"].read_text()
    assert tex.count(r"\begin{table}") == 4 and tex.count(r"\toprule") == 4 and tex.count(r"\bottomrule") == 4
    assert r"\textbf{0.710 $\pm$ 0.014} {\scriptsize (n=2)}" in tex
    assert r"\underline{0.610 $\pm$ 0.014} {\scriptsize (n=2)}" in tex
    assert r"\textcolor{gray}{0.550 {\scriptsize (n=1; 1 failed)}}" in tex  # under the floor: grey, never marked
    assert "\\usepackage{xcolor}" in tex and r"evaluation protocol default" in tex
    assert r"benchmark & chance & floor (untrained) & concat & mopoe & mvae \\" in tex
    assert r"probe\_linear (higher is better)" in tex and r"\label{tab:probe-linear-0.5}" in tex


def test_stats_of_the_fixture(fixture_report):
    md = fixture_report[2]["stats.md"].read_text()
    assert "untrained" not in md   # the floor is every row's reference, not a competitor
    # probe_linear at either ratio: mvae > mopoe on digits-ms, mopoe > mvae on tab-2v, concat last on both
    assert "| mopoe | 1.500 |\n| mvae | 1.500 |\n| concat | 3.000 |" in md
    assert "Friedman chi² = 3.000, p = 0.223 (k = 3 methods, N = 2 benchmarks)" in md
    assert "Friedman test: not enough methods (2; it needs 3)" in md  # retrieval: concat cannot serve it


# --- the HTML page in a browser ---------------------------------------------------------------------------------------

def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


class _DomWalk(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.text, self.rows, self._row = [], [], [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        if tag == "tr":
            self._row = []

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append(" | ".join(c.strip() for c in self._row if c.strip()))
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._row is not None:
            self._row.append(data)


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    # --no-sandbox: CI runs as root, where Chromium refuses its sandbox; the page is our own file
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
           "--virtual-time-budget=3000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(_browser() is None, reason="no chromium/chromium-browser binary on PATH (apt-get install chromium)")
def test_html_renders_in_headless_chromium_and_escapes_store_strings(fixture_report, tmp_path):
    _, expected, _, root = fixture_report
    shutil.copytree(root / "results", tmp_path / "results")
    store = ResultStore(tmp_path / "results")
    _put(store, EVIL, EVIL_BENCH, 0.5, 0)
    _fail(store, EVIL, "digits-ms", 0.5, 0, error=f"ValueError: {EVIL}")
    out = report_from_store(store, tmp_path / "report", expected=expected,
                            config={"suite": "paper", "note": EVIL})["index.html"]
    browser = _browser()
    dump = _chromium(browser, tmp_path / "profile", "--dump-dom", out.resolve().as_uri())
    assert dump.returncode == 0, dump.stderr[-2000:]
    dom = _DomWalk()
    dom.feed(dump.stdout)
    text = "".join(dom.text)
    # the leaderboard rendered, with its rows and marks
    # (the hostile method sorts first: its column reads failed, or - where it has no run)
    # (chance and the untrained floor come first, then the hostile method, which sorts first)
    assert ("digits-ms | 0.105 | 0.460 ± 0.014 | (n=2) | failed | 0.510 ± 0.014 | (n=2) | 0.610 ± 0.014 | (n=2) | "
            "0.710 ± 0.014 | (n=2)") in dom.rows
    assert ("tab-2v | 0.100 | 0.060 ± 0.014 | (n=2) | - | n/a | 0.010 ± 0.014 | (n=2) | 0.300 | "
            "(n=1; 1 failed)") in dom.rows
    assert ("td", "class", "greyed") in dom.attrs and "Evaluation protocol: default." in text
    imgs = [v for t, k, v in dom.attrs if t == "img" and k == "src"]
    assert imgs and all(v.startswith("data:image/png;base64,") for v in imgs)
    # the hostile names are shown as text and nothing of them runs: no script element, no event handler, and the
    # handler's effect (an attribute on <body>) is absent
    assert EVIL in text and EVIL_BENCH in text
    assert "script" not in dom.tags
    assert not [k for _, k, _ in dom.attrs if k.startswith("on")]
    assert not [k for t, k, _ in dom.attrs if t == "body" and k == "data-pwned"]
    assert "window.__pwned" not in " ".join(v for _, _, v in dom.attrs)
    for name in ("leaderboard.md", "stats.md"):
        assert "<script" not in (out.parent / name).read_text()
    # and the page paints
    shot = tmp_path / "report.png"
    res = _chromium(browser, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000",
                    out.resolve().as_uri())
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (2000, 1280) and pixels.std() > 10  # not a blank page


def test_markdown_and_latex_escape_store_strings(tmp_path):
    store = ResultStore(tmp_path / "results")
    _put(store, "a|b", "x_y", 0.5, 0)
    _put(store, EVIL, "x_y", 0.5, 0)
    paths = report_from_store(store, tmp_path / "report")
    md, tex = paths["leaderboard.md"].read_text(), paths["leaderboard.tex"].read_text()
    assert "| benchmark | chance | floor (untrained) | &lt;script&gt;window.__pwned=1&lt;/script&gt; | a\\|b |" in md
    assert "<script>" not in md and r"x\_y" in tex and r"\textless{}script\textgreater{}" in tex


# --- failed and missing runs ------------------------------------------------------------------------------------------

def test_failed_and_missing_runs_are_marked_and_the_report_still_renders(tmp_path, capsys):
    store = ResultStore(tmp_path / "results")
    for seed in SEEDS:
        _put(store, "mopoe", "digits-ms", 0.5, seed)
        _put(store, "mvae", "digits-ms", 0.5, seed)
        _fail(store, "mvae", "tab-2v", 0.5, seed, error="CUDA out of memory")  # a whole cell failed
        _fail(store, "mopoe", "faces", 0.5, seed, error="boom")               # a benchmark with nothing finished
    _put(store, "mopoe", "digits-ms", 0.5, 0, suite="other")  # another suite: not in this report
    expected = pd.DataFrame([(m, b, 0.5, s) for m in ("jmvae", "mopoe", "mvae") for b in ("digits-ms", "tab-2v")
                             for s in SEEDS], columns=tb.KEY)
    records, index = store.load(), store.index_frame()
    records, index = records[records["suite"] == "paper"], index[index["suite"] == "paper"]
    cells = tb.leaderboard(records, index, expected).set_index(["metric", "benchmark", "method"])
    probe = cells.loc["probe_linear"]
    assert probe.loc[("tab-2v", "mvae"), "status"] == "failed" and probe.loc[("tab-2v", "mvae"), "n_failed"] == 2
    assert probe.loc[("digits-ms", "jmvae"), "status"] == "missing"   # planned, never started
    assert probe.loc[("tab-2v", "mopoe"), "status"] == "missing"
    assert probe.loc[("faces", "mopoe"), "status"] == "failed"
    assert probe.loc[("faces", "mvae"), "status"] == "-"              # neither planned nor run

    # through the CLI handler, with a suite filter
    parser = argparse.ArgumentParser()
    add_report_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", "--results", str(tmp_path / "results"), "--suite", "paper"])
    assert args.func(args) == 0
    html_path = Path(capsys.readouterr().out.strip())
    assert html_path == tmp_path / "results" / "report" / "index.html" and html_path.exists()
    page = html_path.read_text()
    assert 'class="failed">failed</td>' in page and "CUDA out of memory" in page
    md = (html_path.parent / "leaderboard.md").read_text()
    # (nothing finished there: no chance level, no floor)
    assert "| faces | - | - | failed | - |" in md and "| tab-2v | - | - | - | failed |" in md  # no plan: no "missing"
    assert "(n=2)" in md and "n=3" not in md  # the other suite's run is left out


def test_report_handler_refuses_a_missing_results_folder(tmp_path):
    from bench.errors import BenchError

    parser = argparse.ArgumentParser()
    add_report_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", "--results", str(tmp_path / "nowhere")])
    with pytest.raises(BenchError, match="no results folder"):
        args.func(args)
    assert not (tmp_path / "nowhere").exists()


def test_tuning_trials_are_left_out(tmp_path):
    store = ResultStore(tmp_path / "results")
    _put(store, "mvae", "digits-ms", 0.5, 0)
    _put(store, "mvae", "digits-ms", 0.5, 1)
    records = store.load()
    # seed 1 becomes a tuning trial; records written before the phase column existed count as final
    records = records.assign(phase=["tune" if s == 1 else None for s in records["seed"]])
    index = store.index_frame()
    for idx in (index, index.assign(phase=["tune" if s == 1 else "final" for s in index["seed"]])):
        md = write_report(records, idx, tmp_path / "report")["leaderboard.md"].read_text()
        # probe_linear; the trial is not reported missing, and its chance row (0.11) is not averaged in
        assert "| digits-ms | 0.100 | - | 0.700 (n=1) |" in md


def test_an_empty_store_gives_a_report(tmp_path):
    paths = report_from_store(ResultStore(tmp_path / "results"), tmp_path / "report")
    assert "No finished test results." in paths["leaderboard.md"].read_text()
    assert paths["index.html"].exists()


# --- directions ---------------------------------------------------------------------------------------------------

def _records(values: dict[str, float], metric: str, higher: bool) -> pd.DataFrame:
    frames = []
    for method, v in values.items():
        spec = {"method": {"name": method}, "benchmark": {"name": "b"}, "obs_ratio": 1.0, "seed": 0}
        frames.append(make_rows(spec, method, "method", [{"metric": metric, "target": "joint", "value": v,
                                                          "higher_is_better": higher, "split": "test",
                                                          "status": "done"}], epoch=1, wall_s=0.0))
    return pd.concat(frames, ignore_index=True)


def test_direction_comes_from_the_registry_and_else_from_the_records():
    index = pd.DataFrame(columns=["run_id", "status", "method", "benchmark", "obs_ratio", "seed", "suite", "error"])
    values = {"a": 0.1, "b": 0.2, "c": 0.3}
    # an unregistered lower-is-better metric: the records' direction
    cells = tb.leaderboard(_records(values, "recon_mse", False), index).set_index("method")
    assert cells.loc["a", "mark"] == "best" and cells.loc["b", "mark"] == "second" and cells.loc["c", "mark"] == ""
    # a registered metric: the registry wins over a record that says otherwise
    cells = tb.leaderboard(_records(values, "probe_linear", False), index).set_index("method")
    assert cells.loc["c", "mark"] == "best" and bool(cells.loc["c", "higher_is_better"])


# --- chance, the untrained floor, greying ---------------------------------------------------------------------------

def _row_records(values: dict[str, list[float]], metric: str = "probe_linear", higher: bool = True,
                 chance: float | None = 0.1) -> pd.DataFrame:
    """One benchmark row: {method: one value per seed}, with a chance row beside every value when given."""
    frames = []
    for method, per_seed in values.items():
        for seed, v in enumerate(per_seed):
            spec = {"method": {"name": method}, "benchmark": {"name": "b"}, "obs_ratio": 1.0, "seed": seed}
            rows = [{"metric": metric, "target": "joint", "value": v, "higher_is_better": higher, "split": "test",
                     "status": "done"}]
            if chance is not None:
                rows.append({**rows[0], "value": chance, "split": "chance"})
            frames.append(make_rows(spec, f"{method}-{seed}", "method", rows, epoch=1, wall_s=0.0))
    return pd.concat(frames, ignore_index=True)


_NO_INDEX = pd.DataFrame(columns=["run_id", "status", "method", "benchmark", "obs_ratio", "seed", "suite", "error"])


def _row_cells(*args, **kwargs) -> pd.DataFrame:
    return tb.leaderboard(_row_records(*args, **kwargs), _NO_INDEX).set_index("method")


def test_a_value_equal_to_the_floor_is_greyed_and_not_bold_even_when_largest():
    cells = _row_cells({"a": [0.80], "b": [0.60], "c": [0.61], "untrained": [0.80]})
    assert "untrained" not in cells.index                       # the floor is no competing column
    assert cells["greyed"].tolist() == [True, True, True] and set(cells["mark"]) == {""}
    assert (cells["floor"] == 0.80).all() and (cells["chance"] == 0.1).all()
    md = tb.to_markdown(cells.reset_index())
    assert "| b | 0.100 | 0.800 (n=1) | 0.800† (n=1) | 0.600† (n=1) | 0.610† (n=1) |" in md and "**" not in md


def test_values_clearly_above_the_floor_are_marked_among_themselves():
    # one run each: the noise band is MIN_NOISE = 0.02; c is 0.01 above the floor, inside it
    cells = _row_cells({"a": [0.90], "b": [0.85], "c": [0.81], "untrained": [0.80]})
    assert cells["greyed"].to_dict() == {"a": False, "b": False, "c": True}
    assert cells["mark"].to_dict() == {"a": "best", "b": "second", "c": ""}
    html_page = __import__("reports.html", fromlist=["leaderboard_html"]).leaderboard_html(cells.reset_index())
    assert "<strong>0.900</strong>" in html_page and '<td class="greyed">0.810 <small>(n=1)</small></td>' in html_page


def test_the_noise_band_grows_with_the_spread_over_seeds():
    assert tb.noise_band(0.05, 1) == tb.MIN_NOISE                  # one run: no spread to count
    assert tb.noise_band(0.1, 4, 0.1, 4) == pytest.approx(2 * math.sqrt(0.01 / 4 + 0.01 / 4))
    # 0.89 over a floor of 0.80: bold with one run each, greyed when its two seeds spread 0.07 (band 0.10)
    assert not _row_cells({"a": [0.89], "untrained": [0.80], "z": [0.5]}).loc["a", "greyed"]
    cells = _row_cells({"a": [0.84, 0.94], "untrained": [0.80, 0.80], "z": [0.5, 0.5]})
    assert cells.loc["a", "greyed"] and cells.loc["a", "mark"] == ""


def test_not_above_chance_is_greyed_without_a_floor():
    cells = _row_cells({"a": [0.11], "b": [0.50], "c": [0.13]}, metric="retrieval_r1")
    assert cells["floor_status"].eq("-").all() and cells["floor"].isna().all()
    assert cells["greyed"].to_dict() == {"a": True, "b": False, "c": False}
    # "second" still needs three numbers in the row, greyed ones included
    assert cells["mark"].to_dict() == {"a": "", "b": "best", "c": "second"}


def test_lower_is_better_is_greyed_unless_lower_than_the_floor_by_more_than_the_noise():
    cells = _row_cells({"a": [10.0], "b": [9.99], "c": [5.0], "untrained": [10.0]}, metric="fid", higher=False,
                       chance=None)
    assert cells["greyed"].to_dict() == {"a": True, "b": True, "c": False}
    assert cells.loc["c", "mark"] == "best" and cells["chance"].isna().all()
    assert "| b | - | 10.000 (n=1) |" in tb.to_markdown(cells.reset_index())


def test_each_protocol_gets_its_own_tables_and_the_caption_names_it(tmp_path):
    store = ResultStore(tmp_path / "results")
    for seed in SEEDS:
        _put(store, "mvae", "digits-ms", 1.0, seed)                     # no eval.protocol: the default protocol
        _put(store, "mvae", "digits-ms", 1.0, seed, protocol="mopoe")
        _put(store, "untrained", "digits-ms", 1.0, seed, protocol="mopoe")
    paths = report_from_store(store, tmp_path / "report")
    md = paths["leaderboard.md"].read_text()
    assert "## probe_linear, observation ratio 1 (higher is better)" in md
    assert "## probe_linear, observation ratio 1, mopoe protocol (higher is better)" in md
    assert md.count("*Evaluation protocol: default.") == 2 and md.count("*Evaluation protocol: mopoe.") == 2
    # the runs of the two protocols are not pooled, and the floor of one is not the floor of the other
    assert md.count("| digits-ms | 0.105 | - | 0.810 ± 0.014 (n=2) |") == 1
    assert md.count("| digits-ms | 0.105 | 0.560 ± 0.014 (n=2) | 0.810 ± 0.014 (n=2) |") == 1  # one method: no mark
    assert "Evaluation protocol: mopoe." in paths["index.html"].read_text()
    assert "evaluation protocol mopoe" in paths["leaderboard.tex"].read_text()
    assert "probe_linear,true,mopoe,1,digits-ms,mvae,ok,0.810000" in paths["leaderboard.csv"].read_text()
    assert "mopoe protocol" in paths["stats.md"].read_text()


# --- statistics -----------------------------------------------------------------------------------------------------

def test_friedman_and_average_ranks_against_the_known_answer():
    # A beats B beats C on all four benchmarks: ranks 1, 2, 3, chi2 = 12N/(k(k+1)) * sum(R^2) - 3N(k+1) = 8,
    # and with k - 1 = 2 degrees of freedom p = exp(-8 / 2)
    scores = pd.DataFrame({"A": [0.9, 0.8, 0.7, 0.95], "B": [0.5, 0.6, 0.65, 0.9], "C": [0.1, 0.2, 0.3, 0.4]},
                          index=["b1", "b2", "b3", "b4"])
    ranks = st.average_ranks(scores, higher_is_better=True)
    assert ranks.to_dict() == {"A": 1.0, "B": 2.0, "C": 3.0}
    assert st.average_ranks(scores, higher_is_better=False).index.tolist() == ["C", "B", "A"]
    chi2, p = st.friedman(scores)
    assert chi2 == pytest.approx(8.0) and p == pytest.approx(math.exp(-4))
    ref = sps.friedmanchisquare(scores["A"], scores["B"], scores["C"])
    assert (chi2, p) == pytest.approx((ref.statistic, ref.pvalue))
    # ties share the average rank
    tied = pd.DataFrame({"A": [1.0, 2.0], "B": [1.0, 3.0], "C": [0.0, 1.0]})
    assert st.average_ranks(tied, True).to_dict() == {"B": 1.25, "A": 1.75, "C": 3.0}


def test_nemenyi_critical_difference_matches_demsar_table():
    # Demšar (2006), Table 5(a): q_0.05 = 2.343 (k = 3), 2.569 (k = 4), 3.164 (k = 10)
    assert st.critical_difference(3, 1) == pytest.approx(2.343 * math.sqrt(3 * 4 / 6), abs=2e-3)
    assert st.critical_difference(4, 10) == pytest.approx(2.569 * math.sqrt(4 * 5 / 60), abs=2e-3)
    assert st.critical_difference(10, 30) == pytest.approx(3.164 * math.sqrt(10 * 11 / 180), abs=2e-3)


def test_holm_correction_on_known_p_values():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone: 0.02, 0.03, 0.06, 0.06
    assert st.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert st.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert len(st.holm([])) == 0


def test_pairwise_wilcoxon_and_cliques():
    rng = np.random.default_rng(0)
    a = rng.normal(size=8)
    scores = pd.DataFrame({"x": a + 1.0, "y": a, "z": a})
    pw = st.pairwise_wilcoxon(scores, higher_is_better=True).set_index(["a", "b"])
    assert pw.loc[("x", "y"), "wins_a"] == 8 and pw.loc[("x", "y"), "p"] == pytest.approx(
        sps.wilcoxon(scores["x"], scores["y"]).pvalue)
    assert pw.loc[("y", "z"), "p"] == 1.0  # identical: nothing to test
    assert pw["p_holm"].tolist() == pytest.approx(st.holm(pw["p"]).tolist())
    ranks = pd.Series({"a": 1.0, "b": 1.5, "c": 2.4, "d": 3.9})
    assert st.cliques(ranks, 1.0) == [("a", "b"), ("b", "c")]
    assert st.cliques(ranks, 0.1) == []


# --- the sample-grid hook -------------------------------------------------------------------------------------------

def test_sample_grid_draws_one_row_per_method():
    rng = np.random.default_rng(0)
    images = {"mvae": rng.random((3, 8, 8)), "mopoe": rng.random((10, 8, 8, 3)), "jmvae": rng.random((2, 1, 8, 8))}
    fig = sample_grid(images, max_cols=4)
    assert len(fig.axes) == 3 * 4
    assert [ax.get_ylabel() for ax in fig.axes[::4]] == ["jmvae", "mopoe", "mvae"]
    assert png_bytes(fig)[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        sample_grid({})


def test_write_report_embeds_a_sample_grid(tmp_path):
    store = ResultStore(tmp_path / "results")
    _put(store, "mvae", "digits-ms", 0.5, 0)
    paths = write_report(store.load(), store.index_frame(), tmp_path / "report",
                         samples={"mvae": np.zeros((2, 4, 4))})
    assert "figures/samples.png" in paths


def test_complete_block_drops_the_gappiest_row_or_column_first():
    nan = math.nan
    wide = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, nan], "c": [nan, nan, 1.0]}, index=["x", "y", "z"])
    # c misses 2/3 (worse than any benchmark's 1/3): it goes first; then z misses 1/2 of what is left
    block = st.complete_block(wide)
    assert block.index.tolist() == ["x", "y"] and block.columns.tolist() == ["a", "b"]


def test_metrics_about_the_evaluator_rank_nothing():
    from bench.records import make_rows
    from reports.tables import about_the_evaluator, final_test_rows

    assert about_the_evaluator(["classifier_acc", "probe_linear", "not_registered"]) == {"classifier_acc"}
    spec = {"method": {"name": "mvae"}, "benchmark": {"name": "digits-ms"}, "obs_ratio": 1.0, "seed": 0}
    rows = make_rows(spec, "r", "baseline", [
        {"metric": m, "target": "joint", "value": 0.5, "higher_is_better": True, "split": "test", "status": "done"}
        for m in ("classifier_acc", "probe_linear")], epoch=1, wall_s=1.0)
    assert final_test_rows(rows)["metric"].tolist() == ["probe_linear"]


# --- the DCMEM poster's analyses ---------------------------------------------------------------------------------


def _put_profiles(store, method, ratio, seed, diag):
    spec = {"method": {"name": method}, "benchmark": {"name": "digits-ms"}, "obs_ratio": ratio, "seed": seed,
            "suite": "paper"}
    rows = [_row("probe_linear", "joint", 0.5)]
    rows += [_row("class_distance_profile", f"{i},{j}", diag if i == j else 1.0) for i in range(3) for j in range(3)]
    rows += [_row("w2_profile", f"{kind}:q{q:02d}", base + q / 100) for kind, base in (("paired", diag), ("unpaired", 1.0))
             for q in range(0, 101, 5)]
    run_id = f"{method}_{ratio}_{seed}".replace(".", "")
    store.claim(run_id, meta={"method": method, "benchmark": "digits-ms", "obs_ratio": ratio, "seed": seed,
                              "suite": "paper"})
    store.put(run_id, spec, make_rows(spec, run_id, "method", rows, epoch=1, wall_s=1.0))


def test_analysis_figures_are_drawn_from_the_profiles_and_never_ranked(tmp_path):
    from reports.plots import profile_frame

    store = ResultStore(tmp_path / "results")
    for seed, diag in ((0, 0.2), (1, 0.4)):
        _put_profiles(store, "dcmem", 1.0, seed, diag)
        _put_profiles(store, "mvae", 1.0, seed, 0.9)
    _put_profiles(store, "dcmem", 0.5, 0, 5.0)     # a lower ratio: the figure shows the largest one
    paths = write_report(store.load(), store.index_frame(), tmp_path / "report")
    assert {"figures/class_distance_digits-ms.png", "figures/w2_digits-ms.png"} <= set(paths)
    prof, ratio = profile_frame(store.load(), "class_distance_profile", "digits-ms")
    assert ratio == 1.0
    cell = prof[(prof["method"] == "dcmem") & (prof["target"] == "1,1")]["value"]
    assert cell.tolist() == [pytest.approx(0.3)]                 # mean over the two seeds
    board = (tmp_path / "report" / "leaderboard.csv").read_text()
    assert "probe_linear" in board and "profile" not in board


def test_equal_mass_bins_integrate_to_one_and_absorb_ties():
    from reports.plots import equal_mass_bins

    dens, edges = equal_mass_bins(np.array([0.0, 1.0, 3.0]))
    np.testing.assert_allclose(edges, [0.0, 1.0, 3.0])
    np.testing.assert_allclose(dens, [0.5, 0.25])
    dens, edges = equal_mass_bins(np.array([0.0, 0.0, 0.0, 2.0, 4.0, 4.0]))    # ties at both ends
    np.testing.assert_allclose(edges, [0.0, 2.0, 4.0])
    np.testing.assert_allclose((dens * np.diff(edges)).sum(), 1.0)
    np.testing.assert_allclose(dens, [0.6 / 2, 0.4 / 2])


def test_method_notes_come_from_the_method_docstrings_and_reach_the_page_escaped(tmp_path):
    from reports.notes import method_note

    assert "[reconstructed]" in method_note("pmrl") and "[reconstructed]" in method_note("dcmem")
    assert "[reconstructed]" in method_note("cm_glasso")
    assert "not registered" in method_note("<b>nope</b>")
    store = ResultStore(tmp_path / "results")
    _put(store, "pmrl", "digits-ms", 1.0, 0)
    _put(store, "<b>nope</b>", "digits-ms", 1.0, 0)
    paths = write_report(store.load(), store.index_frame(), tmp_path / "report")
    page = paths["index.html"].read_text()
    assert 'id="methods"' in page and "[reconstructed]" in page
    assert "&lt;b&gt;nope&lt;/b&gt;" in page and "<b>nope</b>" not in page
    assert "## pmrl" in paths["methods.md"].read_text()
