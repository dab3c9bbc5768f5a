"""Leaderboard tables: for each metric and observation ratio, benchmark x method.

How a cell is computed
----------------------
* Only final test rows feed it: phase ``"final"`` (when records or index carry a phase; tuning trials are left out
  by :func:`final_phase` before anything else), split ``"test"``, status ``"done"`` or ``"not_applicable"``.
* A metric with several targets in one run (retrieval ``"m1->m2"`` and ``"m2->m1"``) is first reduced to one number
  per run: the ``"joint"`` target when the run has one, otherwise the mean over the run's targets. Seeds are then
  the unit of variation, so a metric with many targets does not look more certain than one with a single target.
* The cell is the mean ± sample standard deviation (ddof = 1) over runs, ``n`` of them. The std is left out when
  ``n = 1``.
* Runs of the cell that did not finish are counted by state: ``failed`` (index says failed), ``pruned``,
  ``running`` (claimed or running), ``missing`` (planned in ``expected`` but absent, or the index says done and no
  record is readable). A finished run of the same (method, benchmark, obs_ratio, seed) supersedes them.
* A cell with no number reads ``n/a`` when the method cannot serve the metric, else its worst unfinished state,
  else ``-`` (nothing recorded).
* Best is bold and second underlined, per benchmark row, with the direction from the metric registry; ties share
  the mark. Best is marked only among at least two numbers and second only among at least three, since "second of
  two" says nothing that "best" did not.

Everything is sorted (metric, obs_ratio, benchmark, method) and floats are printed with a fixed number of decimals,
so the same store gives byte-identical Markdown and CSV.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from typing import Iterable

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

KEY = ["method", "benchmark", "obs_ratio", "seed"]
DECIMALS = 3          # what a reader sees in Markdown, LaTeX and HTML
CSV_DECIMALS = 6      # enough to recompute ranks from the CSV
# The order in which unfinished states name a cell that has no number: the most actionable first.
UNFINISHED = ("failed", "pruned", "running", "missing")
_INDEX_STATE = {"failed": "failed", "pruned": "pruned", "claimed": "running", "running": "running",
                # the record is the truth of done: an index that says done without a readable record is a gap
                "done": "missing"}
CELL_COLUMNS = ["metric", "higher_is_better", "obs_ratio", "benchmark", "method", "status", "mean", "std", "n",
                *[f"n_{s}" for s in UNFINISHED], "mark"]


# --- inputs -------------------------------------------------------------------------------------------------------

def _ratio(x) -> float:
    # obs_ratio comes from parquet, SQL and user frames; rounding makes 0.5 from each compare equal
    return round(float(x), 9)


def _is_final(frame: pd.DataFrame) -> pd.Series:
    if "phase" not in frame.columns:
        return pd.Series(True, index=frame.index)
    # unset: written before the column existed, when every run was final
    return frame["phase"].fillna("").astype(str).isin(["final", ""])


def final_phase(records: pd.DataFrame, index: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Tuning trials never feed a report: keep the records and index rows of phase "final" (or unset). An index
    without a phase column loses the rows of runs whose records say they were tuning trials; a tuning trial that
    failed before writing a record cannot be told apart there and still counts."""
    final = _is_final(records)
    tune_ids = set(records.loc[~final, "run_id"]) - set(records.loc[final, "run_id"])
    if index is not None:
        index = index.loc[_is_final(index) & ~index["run_id"].isin(tune_ids)] if len(index) else index
    return records.loc[final], index


def about_the_evaluator(metrics: Iterable[str]) -> set[str]:
    """Registered metrics that rank nothing: those that need nothing from the method (``needs=()``, e.g.
    ``classifier_acc``: they describe the evaluation itself and are the same for every method), and figure data
    (``ranked=False``, e.g. ``class_distance_profile``: a matrix per run, drawn, not tabulated)."""
    from bench.registry import METRICS

    return {m for m in metrics if m in METRICS and (not METRICS.get(m).needs or not METRICS.get(m).ranked)}


def final_test_rows(records: pd.DataFrame) -> pd.DataFrame:
    """The rows that feed the leaderboard (see the module docstring)."""
    keep = (records["split"] == "test") & records["status"].isin(["done", "not_applicable"])
    keep &= ~records["metric"].isin(about_the_evaluator(records["metric"].unique()))
    return records.loc[keep]


def run_scores(records: pd.DataFrame) -> pd.DataFrame:
    """One row per run x metric: run_id, method, benchmark, obs_ratio, seed, metric, value, status ("done" with the
    run's value, or "not_applicable" with NaN)."""
    cols = ["run_id", *KEY, "metric", "value", "status"]
    test = final_test_rows(records)
    out = []
    for (run_id, metric), g in test.groupby(["run_id", "metric"], sort=True):
        first = g.iloc[0]
        done = g[g["status"] == "done"]
        if len(done):
            joint = done[done["target"] == "joint"]
            value, status = float((joint if len(joint) else done)["value"].mean()), "done"
        else:
            value, status = math.nan, "not_applicable"
        out.append({"run_id": run_id, "method": first["method"], "benchmark": first["benchmark"],
                    "obs_ratio": _ratio(first["obs_ratio"]), "seed": int(first["seed"]), "metric": metric,
                    "value": value, "status": status})
    return pd.DataFrame(out, columns=cols)


def run_states(records: pd.DataFrame, index: pd.DataFrame, expected: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per known run: method, benchmark, obs_ratio, seed, run_id, state (done, failed, pruned, running,
    missing), error. A finished run supersedes unfinished ones with the same (method, benchmark, obs_ratio, seed)."""
    rows = []
    for run_id, g in records.groupby("run_id", sort=True):
        final = len(final_test_rows(g)) > 0
        state = "done" if final or not (g["status"] == "pruned").any() else "pruned"
        first = g.iloc[0]
        rows.append({"run_id": run_id, "method": first["method"], "benchmark": first["benchmark"],
                     "obs_ratio": _ratio(first["obs_ratio"]), "seed": int(first["seed"]), "state": state,
                     "error": ""})
    recorded = set(records["run_id"])
    for r in (index.itertuples(index=False) if index is not None and len(index) else ()):
        if r.run_id in recorded or any(pd.isna(getattr(r, c)) for c in KEY):
            continue  # an index row without its key cannot be placed in a table
        rows.append({"run_id": r.run_id, "method": r.method, "benchmark": r.benchmark,
                     "obs_ratio": _ratio(r.obs_ratio), "seed": int(r.seed),
                     "state": _INDEX_STATE.get(r.status, "missing"),
                     "error": "" if pd.isna(getattr(r, "error", None)) else str(r.error)})
    known = {(r["method"], r["benchmark"], r["obs_ratio"], r["seed"]) for r in rows}
    if expected is not None:
        for r in expected[KEY].itertuples(index=False):
            key = (r.method, r.benchmark, _ratio(r.obs_ratio), int(r.seed))
            if key not in known:
                known.add(key)
                rows.append({"run_id": "", "method": key[0], "benchmark": key[1], "obs_ratio": key[2],
                             "seed": key[3], "state": "missing", "error": ""})
    states = pd.DataFrame(rows, columns=[*KEY, "run_id", "state", "error"])
    done_keys = set(map(tuple, states.loc[states["state"] == "done", KEY].itertuples(index=False)))
    superseded = [(tuple(k) in done_keys) and s != "done"
                  for k, s in zip(states[KEY].itertuples(index=False), states["state"])]
    states = states.loc[~np.array(superseded, dtype=bool)]
    return states.sort_values([*KEY, "run_id"], kind="mergesort").reset_index(drop=True)


def metric_directions(metrics: Iterable[str], records: pd.DataFrame) -> dict[str, bool]:
    """higher_is_better per metric: the registry's word, or the records' for a metric the registry does not know
    (a plugin that is not installed where the report is built)."""
    from bench.registry import METRICS, UnknownName

    out = {}
    for m in metrics:
        try:
            out[m] = bool(METRICS.get(m).higher_is_better)
        except UnknownName:
            col = records.loc[records["metric"] == m, "higher_is_better"].dropna()
            out[m] = bool(col.mode().iloc[0]) if len(col) else True
            log.info("metric %r is not registered; taking its direction from the records", m)
    return out


# --- cells --------------------------------------------------------------------------------------------------------

def _marks(means: dict[str, float], higher: bool) -> dict[str, str]:
    """best/second per method among the numbers of one row; ties share a mark."""
    # rounding away float noise so that (0.8 + 0.9) / 2 and 0.85 count as a tie
    vals = {m: round(v, 12) for m, v in means.items()}
    ordered = sorted(set(vals.values()), reverse=higher)
    out = {m: "" for m in vals}
    if len(vals) >= 2:
        for m, v in vals.items():
            if v == ordered[0]:
                out[m] = "best"
            elif len(vals) >= 3 and len(ordered) >= 2 and v == ordered[1]:
                out[m] = "second"
    return out


def leaderboard(records: pd.DataFrame, index: pd.DataFrame, expected: pd.DataFrame | None = None,
                directions: dict[str, bool] | None = None) -> pd.DataFrame:
    """Every cell of every table as one row (columns :data:`CELL_COLUMNS`), sorted."""
    scores = run_scores(records)
    states = run_states(records, index, expected)
    metrics = sorted(scores["metric"].unique())
    directions = directions if directions is not None else metric_directions(metrics, records)
    ratios = sorted(set(states["obs_ratio"]))
    methods = sorted(set(states["method"]))
    unmeasured = set(states["benchmark"]) - set(scores["benchmark"])  # nothing finished: show it in every table
    by_cell = {k: g for k, g in scores.groupby(["metric", "obs_ratio", "benchmark", "method"], sort=False)}
    by_run = {k: g for k, g in states.groupby(["obs_ratio", "benchmark", "method"], sort=False)}
    rows = []
    for metric in metrics:
        higher = directions[metric]
        benchmarks = sorted(set(scores.loc[scores["metric"] == metric, "benchmark"]) | unmeasured)
        for ratio in ratios:
            for bench in benchmarks:
                row = [_cell(metric, higher, ratio, bench, m, by_cell.get((metric, ratio, bench, m)),
                             by_run.get((ratio, bench, m))) for m in methods]
                marks = _marks({c["method"]: c["mean"] for c in row if c["status"] == "ok"}, higher)
                for c in row:
                    c["mark"] = marks.get(c["method"], "")
                rows.extend(row)
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def _cell(metric, higher, ratio, bench, method, scores: pd.DataFrame | None, runs: pd.DataFrame | None) -> dict:
    values = scores.loc[scores["status"] == "done", "value"].to_numpy(float) if scores is not None else np.array([])
    counts = {s: int((runs["state"] == s).sum()) if runs is not None else 0 for s in UNFINISHED}
    if len(values):
        status = "ok"
    elif scores is not None and len(scores):
        status = "n/a"
    else:
        status = next((s for s in UNFINISHED if counts[s]), "-")
    return {"metric": metric, "higher_is_better": higher, "obs_ratio": ratio, "benchmark": bench, "method": method,
            "status": status, "mean": float(values.mean()) if len(values) else math.nan,
            "std": float(values.std(ddof=1)) if len(values) >= 2 else math.nan, "n": len(values),
            **{f"n_{s}": counts[s] for s in UNFINISHED}, "mark": ""}


# --- formatting ---------------------------------------------------------------------------------------------------

def fmt_ratio(r: float) -> str:
    return f"{r:g}"


def fmt_float(x: float, decimals: int = DECIMALS) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{decimals}f}"


def direction_word(higher: bool) -> str:
    return "higher is better" if higher else "lower is better"


def cell_parts(cell) -> tuple[str, str]:
    """(number, note): "0.850 ± 0.014", "n=2"; or (status, "") for a cell without a number. The renderers style
    the number and keep the note plain."""
    if cell["status"] != "ok":
        return cell["status"], ""
    number = fmt_float(cell["mean"]) + ("" if cell["n"] < 2 else f" ± {fmt_float(cell['std'])}")
    notes = [f"n={cell['n']}"] + [f"{cell[f'n_{s}']} {s}" for s in UNFINISHED if cell[f"n_{s}"]]
    return number, "; ".join(notes)


def tables(cells: pd.DataFrame) -> list[tuple[str, float, bool, pd.DataFrame]]:
    """(metric, obs_ratio, higher_is_better, cells of that table) in print order."""
    return [(metric, ratio, bool(g["higher_is_better"].iloc[0]), g)
            for (metric, ratio), g in cells.groupby(["metric", "obs_ratio"], sort=True)]


def _grid(g: pd.DataFrame) -> tuple[list[str], list[str], dict]:
    benchmarks, methods = sorted(set(g["benchmark"])), sorted(set(g["method"]))
    at = {(r["benchmark"], r["method"]): r for r in g.to_dict("records")}
    return benchmarks, methods, at


_MD_SPECIAL = re.compile(r"([\\`*|\[\]])")


def md_escape(s: str) -> str:
    """Text from the store inside a Markdown table: no cell breaks, no emphasis, no raw HTML."""
    s = str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s).replace("\n", " ")


def md_cell(cell) -> str:
    number, note = cell_parts(cell)
    if cell["mark"] == "best":
        number = f"**{number}**"
    elif cell["mark"] == "second":
        number = f"<u>{number}</u>"  # Markdown has no underline; GitHub and most renderers accept <u>
    return f"{number} ({note})" if note else number


LEGEND = ("Mean ± standard deviation over seeds (n = finished runs; unfinished runs of a cell are counted after "
          "it). A metric with several targets counts once per run: its \"joint\" target when present, otherwise "
          "the mean over its targets. Best per benchmark in bold, second underlined (among at least three). "
          "n/a: the method cannot serve the metric; failed / pruned / running / missing: no finished run; "
          "-: nothing recorded.")


def to_markdown(cells: pd.DataFrame, title: str = "Leaderboard") -> str:
    out = [f"# {md_escape(title)}", "", LEGEND, ""]
    if cells.empty:
        out += ["No finished test results.", ""]
    for metric, ratio, higher, g in tables(cells):
        benchmarks, methods, at = _grid(g)
        out += [f"## {md_escape(metric)}, observation ratio {fmt_ratio(ratio)} ({direction_word(higher)})", ""]
        out.append("| benchmark | " + " | ".join(md_escape(m) for m in methods) + " |")
        out.append("|" + " --- |" * (len(methods) + 1))
        for b in benchmarks:
            out.append(f"| {md_escape(b)} | " + " | ".join(md_cell(at[(b, m)]) for m in methods) + " |")
        out.append("")
    return "\n".join(out)


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "<": r"\textless{}", ">": r"\textgreater{}"}


def tex_escape(s: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(s).replace("\n", " "))


def tex_cell(cell) -> str:
    number, note = cell_parts(cell)
    number = tex_escape(number).replace("±", r"$\pm$")
    if cell["mark"] == "best":
        number = rf"\textbf{{{number}}}"
    elif cell["mark"] == "second":
        number = rf"\underline{{{number}}}"
    return rf"{number} {{\scriptsize ({tex_escape(note)})}}" if note else number


def _tex_label(*parts: str) -> str:
    return "tab:" + "-".join(re.sub(r"[^A-Za-z0-9.]+", "-", p) for p in parts)


def to_latex(cells: pd.DataFrame) -> str:
    """One booktabs ``table`` per metric and observation ratio (needs ``\\usepackage{booktabs}``)."""
    out = ["% mmrl-bench leaderboard; needs \\usepackage{booktabs}", ""]
    for metric, ratio, higher, g in tables(cells):
        benchmarks, methods, at = _grid(g)
        out += [r"\begin{table}[t]", r"\centering",
                rf"\caption{{{tex_escape(metric)} ({direction_word(higher)}), observation ratio {fmt_ratio(ratio)}: "
                r"mean $\pm$ std over seeds; best in bold, second underlined.}",
                rf"\label{{{_tex_label(metric, fmt_ratio(ratio))}}}",
                r"\begin{tabular}{l" + "c" * len(methods) + "}", r"\toprule",
                "benchmark & " + " & ".join(tex_escape(m) for m in methods) + r" \\", r"\midrule"]
        for b in benchmarks:
            out.append(f"{tex_escape(b)} & " + " & ".join(tex_cell(at[(b, m)]) for m in methods) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def to_csv(cells: pd.DataFrame) -> str:
    """The cells in long format, one row each, with the unrounded-enough numbers."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CELL_COLUMNS)
    for r in cells.to_dict("records"):
        w.writerow([r["metric"], str(bool(r["higher_is_better"])).lower(), fmt_ratio(r["obs_ratio"]), r["benchmark"],
                    r["method"], r["status"], fmt_float(r["mean"], CSV_DECIMALS), fmt_float(r["std"], CSV_DECIMALS),
                    r["n"], *[r[f"n_{s}"] for s in UNFINISHED], r["mark"]])
    return buf.getvalue()
