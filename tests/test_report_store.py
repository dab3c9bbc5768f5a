"""``bench report --store URL --optuna-storage URL``: the report reads the index the sweep used (PostgreSQL
included), read-only, so failed, pruned and running runs show; it creates no index file, table or Optuna storage; a
bad or unreachable database is one masked line and exit 2; the Tuning section counts each study's trials.

The PostgreSQL tests use the throwaway server of tests/postgres_server.py (skipped without one, except in CI)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

import test_reports as tr
from bench.cli import main
from bench.store import ResultStore
from conftest import ROOT, python
from postgres_server import PASSWORD, get_server, pg_url  # noqa: F401  (pg_url is a fixture)

PRUNED = ("mopoe", "tab-2v", 1.0, 0)
RUNNING = ("mvae", "tab-2v", 1.0, 1)
FAILED = ("mvae", "tab-2v", 0.5, 0)


def _report(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    env.pop("MMRL_RESULTS", None)
    return subprocess.run([python(), "-m", "bench", "report", *args], env=env, capture_output=True, text=True,
                          timeout=180)


def _run_id(method, bench, ratio, seed, suite="paper") -> str:
    # the id tests/test_reports.py's _put and _fail give the same run
    return "".join(ch for ch in f"{suite}_{method}_{bench}_{ratio}_{seed}" if ch.isalnum() or ch in "_.-")[:60]


def _claim(store, method, bench, ratio, seed, status):
    run_id = _run_id(method, bench, ratio, seed)
    assert store.claim(run_id, meta={"method": method, "benchmark": bench, "obs_ratio": ratio, "seed": seed,
                                     "suite": "paper"})
    if status != "claimed":
        store.mark(run_id, status)
    return run_id


def _unfinished(page: str) -> set[tuple[str, str, str, str, str]]:
    """(state, method, benchmark, obs ratio, seed) of every row of the page's "Unfinished runs" table."""
    section = re.search(r'<section id="unfinished">(.*?)</section>', page, re.S)
    assert section, "the page has an Unfinished runs section"
    return set(re.findall(r"<tr><td>(\w+)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>",
                          section.group(1)))


def _write_sweep(results: Path, url: str | None) -> None:
    """Four finished runs (records in ``results``), one failed, one pruned and one still running in the index at
    ``url`` (None: SQLite in ``results``)."""
    store = ResultStore(results, url)
    for seed in tr.SEEDS:
        tr._put(store, "mopoe", "digits-ms", 0.5, seed)
        tr._put(store, "mvae", "digits-ms", 0.5, seed)
    tr._fail(store, *FAILED, error="RuntimeError: loss is NaN")
    _claim(store, *PRUNED, "pruned")
    _claim(store, *RUNNING, "running")


def test_report_with_store_reads_the_postgres_index_read_only_and_without_it_does_not(tmp_path, pg_url):
    results = tmp_path / "results"
    _write_sweep(results, pg_url)
    tables_before = set(sa.inspect(sa.create_engine(pg_url)).get_table_names())
    assert not (results / "index.sqlite").exists()

    out = _report("--results", str(results), "--store", pg_url)
    assert out.returncode == 0, out.stderr
    page = Path(out.stdout.strip().splitlines()[-1]).read_text()
    assert _unfinished(page) == {("failed", "mvae", "tab-2v", "0.5", "0"), ("pruned", "mopoe", "tab-2v", "1", "0"),
                                 ("running", "mvae", "tab-2v", "1", "1")}
    assert "RuntimeError: loss is NaN" in page
    # the index database is also the default Optuna storage; it holds no study, which the page says
    assert 'id="tuning"' in page and "No Optuna studies in postgresql+psycopg://bench:***@" in page
    assert PASSWORD not in page + out.stdout + out.stderr
    assert not (results / "index.sqlite").exists(), "a report creates no local index"
    tables_after = set(sa.inspect(sa.create_engine(pg_url)).get_table_names())
    assert tables_after == tables_before, "a report creates no table, neither the index's nor Optuna's"

    # the same folder without --store: the local (absent) index knows none of them, so the flag is what matters
    out = _report("--results", str(results))
    assert out.returncode == 0, out.stderr
    page = Path(out.stdout.strip().splitlines()[-1]).read_text()
    assert _unfinished(page) == set() and "Every known run finished." in page
    assert "Runs: 4 done." in page and 'id="tuning"' not in page
    assert not (results / "index.sqlite").exists()


def test_report_on_a_folder_without_an_index_creates_none(tmp_path, capsys):
    results = tmp_path / "results"
    _write_sweep(results, f"sqlite:///{tmp_path / 'elsewhere.sqlite'}")
    before = sorted(p.relative_to(results) for p in results.rglob("*"))
    other = tmp_path / "missing.sqlite"
    assert main(["report", "--results", str(results)]) == 0
    assert main(["report", "--results", str(results), "--store", f"sqlite:///{other}"]) == 0
    report = Path(capsys.readouterr().out.strip().splitlines()[-1]).parent
    after = sorted(p.relative_to(results) for p in results.rglob("*") if report not in (p, *p.parents))
    assert after == before, "nothing but the report folder is written"
    assert not (results / "index.sqlite").exists() and not other.exists()
    assert not (results / "optuna.sqlite").exists()

    # the index the runs were written to, as a SQLite URL: read, and left byte for byte as it was
    index = tmp_path / "elsewhere.sqlite"
    digest = hashlib.sha256(index.read_bytes()).hexdigest()
    assert main(["report", "--results", str(results), "--store", f"sqlite:///{index}"]) == 0
    page = Path(capsys.readouterr().out.strip().splitlines()[-1]).read_text()
    assert ("failed", "mvae", "tab-2v", "0.5", "0") in _unfinished(page)
    assert hashlib.sha256(index.read_bytes()).hexdigest() == digest


def test_an_unreachable_index_is_one_masked_line_and_exit_2(tmp_path):
    (tmp_path / "results").mkdir()
    out = _report("--results", str(tmp_path / "results"), "--store", "postgresql://alice:hunter2@127.0.0.1:1/bench")
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot open the store index"), out.stderr
    assert "alice:***@127.0.0.1:1" in lines[0] and "refused" in lines[0]
    assert "hunter2" not in out.stdout + out.stderr
    assert list((tmp_path / "results").iterdir()) == [], "no report and no index were written"


@pytest.mark.parametrize("flag", ["--store", "--optuna-storage"])
def test_bad_urls_are_one_masked_line_and_exit_2(tmp_path, capsys, flag):
    (tmp_path / "results").mkdir()
    server = get_server()
    bad = server.url(password="not-the-password")
    assert main(["report", "--results", str(tmp_path / "results"), flag, bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "password authentication failed" in err[0] and "bench:***@127.0.0.1" in err[0], err
    assert "not-the-password" not in err[0]
    assert main(["report", "--results", str(tmp_path / "results"), flag, "not a url"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a database URL" in err[0], err


def _optuna_storage(path: Path) -> str:
    """A storage with two studies of the suite "paper" and one of another suite. The first: trials of values 0.2,
    0.7 (best, x=2), 0.7 (a tie, later: not the best), one pruned, one failed, one left running."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{path}"
    study = optuna.create_study(study_name="paper.mvae.digits-ms.rho0.5.0123456789", storage=url,
                                direction="maximize")
    for x, value in ((1, 0.2), (2, 0.7), (3, 0.7)):
        study.enqueue_trial({"x": x, "lr": 0.001 * x})
        t = study.ask({"x": optuna.distributions.IntDistribution(0, 9),
                       "lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
        study.tell(t, value)
    study.tell(study.ask(), state=optuna.trial.TrialState.PRUNED)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    study.ask()  # never told: RUNNING
    lower = optuna.create_study(study_name="paper.<b>evil</b>", storage=url, direction="minimize")
    lower.add_trial(optuna.trial.create_trial(value=3.0, params={"k": "a"},
                                              distributions={"k": optuna.distributions.CategoricalDistribution(["a"])}))
    optuna.create_study(study_name="other.mvae.digits-ms.rho1.abc", storage=url)
    return url


def test_tuning_section_counts_trials_and_shows_the_best_from_the_default_sqlite_storage(tmp_path, capsys):
    results = tmp_path / "results"
    _write_sweep(results, None)
    _optuna_storage(results / "optuna.sqlite")
    digest = hashlib.sha256((results / "optuna.sqlite").read_bytes()).hexdigest()

    assert main(["report", "--results", str(results), "--suite", "paper"]) == 0
    html_path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    md = (html_path.parent / "tuning.md").read_text()
    assert ("| paper.mvae.digits-ms.rho0.5.0123456789 | maximize | 3 | 1 | 1 | 1 | 0.7 | lr=0.002, x=2 |"
            in md), md
    assert "| paper.&lt;b&gt;evil&lt;/b&gt; | minimize | 1 | 0 | 0 | 0 | 3 | k=a |" in md, md
    assert "other.mvae" not in md, "studies of another suite are left out"
    page = html_path.read_text()
    section = re.search(r'<section id="tuning">(.*?)</section>', page, re.S).group(1)
    assert "<td>3</td><td>1</td><td>1</td><td>1</td><td>0.7</td><td>lr=0.002, x=2</td>" in section
    assert "&lt;b&gt;evil&lt;/b&gt;" in section and "<b>evil" not in page
    assert hashlib.sha256((results / "optuna.sqlite").read_bytes()).hexdigest() == digest, "read only"

    # a suite with no study: said so; an explicit storage that does not exist: one line, exit 2
    assert main(["report", "--results", str(results), "--suite", "quick",
                 "--optuna-storage", f"sqlite:///{results / 'optuna.sqlite'}"]) == 0
    md = (Path(capsys.readouterr().out.strip().splitlines()[-1]).parent / "tuning.md").read_text()
    assert "No Optuna studies named quick.\\* in sqlite:///" in md
    assert main(["report", "--results", str(results), "--optuna-storage", f"sqlite:///{tmp_path / 'nope.sqlite'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no Optuna storage at" in err[0] and not (tmp_path / "nope.sqlite").exists()


def test_a_report_without_studies_removes_an_earlier_tuning_md(tmp_path):
    from reports.build import report_from_store
    from reports.tuning import Tuning

    store = ResultStore(tmp_path / "results")
    paths = report_from_store(store, tmp_path / "report", tuning=Tuning("sqlite:///x.sqlite", ()))
    assert "No Optuna studies in sqlite:///x.sqlite." in paths["tuning.md"].read_text()
    paths = report_from_store(store, tmp_path / "report")
    assert "tuning.md" not in paths and not (tmp_path / "report" / "tuning.md").exists()
    assert 'id="tuning"' not in paths["index.html"].read_text()


def test_records_of_an_older_spec_version_are_not_averaged_in_as_extra_seeds(tmp_path):
    """After an upgrade that changed the splits (spec_version 1 -> 2) a sweep retrains every run under a new run_id;
    the report keeps the newer run of each (suite, cell, seed) and leaves runs without a newer twin alone."""
    import json

    from bench.store import ResultStore
    from reports.build import superseded

    store = ResultStore(tmp_path / "results")
    old = tr._put(store, "mvae", "bc-3view", 1.0, 0, suite="paper")
    alone = tr._put(store, "mvae", "bc-3view", 1.0, 1, suite="paper")
    new = tr._put(store, "mvae", "bc-3view", 1.0, 0, suite="paper", protocol="default")
    for rid, version in ((old, 1), (alone, 1), (new, 2)):
        spec = store.get_spec(rid)
        store.spec_path(rid).write_text(json.dumps({**spec, "spec_version": version}))
    assert superseded(store, store.load()) == {old}
