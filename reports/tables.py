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
  two" says nothing that "best" did not; greyed numbers (below) are never marked.

Evaluation protocol, chance level and the untrained floor
---------------------------------------------------------
* Every table is one (metric, evaluation protocol, observation ratio). The protocol of a run is its spec's
  ``eval.protocol`` (``default``, ``mopoe``, ``mvp``; a spec without the key is ``default``), handed in as a
  ``{run_id: protocol}`` map (:func:`reports.build.run_protocols` reads it from the store); runs of different
  protocols never share a cell, and each table's caption names its protocol. An unfinished run whose protocol is
  unknown (no spec stored) is counted in every protocol's table of its cell.
* ``chance``: the mean over the row's runs (every method's) of the chance rows the evaluation records beside each
  metric (split ``"chance"``, :mod:`bench.eval.chance`), each run reduced over targets like its test rows.
* ``floor``: the cell of the :data:`FLOOR` method (``untrained``: the shared encoders at their random init, never
  trained). It is its own column, not a competitor: it is never marked and enters no statistics.
* A method's number is **greyed** (and never marked) when it is within noise of the floor or not above chance.
  With m, s, n the cell's mean, sample std (taken as 0 when n = 1) and number of runs, f, s_f, n_f the floor's,
  c the chance level, and the difference taken in the metric's better direction (m - f when higher is better,
  f - m when lower is better; likewise for chance):

      greyed  <=>  better(m, f) <= max(2 * sqrt(s^2 / n + s_f^2 / n_f), MIN_NOISE)
              or   better(m, c) <= max(2 * s / sqrt(n), MIN_NOISE)

  The first term is two standard errors of the difference of two means (Welch), the usual ~95 % band for "the
  seeds cannot tell these apart". :data:`MIN_NOISE` = 0.02, in the metric's units, stands in for what one seed
  cannot show: the sampling noise of the test split itself. A rate p on N test samples has standard error
  sqrt(p (1 - p) / N), which is 0.0095 at p = 0.1 (chance with ten classes) and 0.016 at p = 0.5 on N = 1000
  (the coherence cap), and 0.02 at p = 0.5 on N = 625, so 0.02 is about two standard errors near chance on the
  embedded benchmarks' test splits and never less than one. For metrics far from [0, 1] (FID) it is negligible
  and only the seed term counts. A cell without a floor or a chance level is judged on what it has.
* Best (bold) and second (underlined) are chosen among the numbers that are not greyed; the "at least two / three
  numbers" conditions count every number of the row.

Everything is sorted (metric, protocol, obs_ratio, benchmark, method) and floats are printed with a fixed number of
decimals, so the same store gives byte-identical Markdown and CSV.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from typing import Iterable, Mapping

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
FLOOR = "untrained"    # the method whose cell is each row's floor column (baselines/untrained)
DEFAULT_PROTOCOL = "default"
MIN_NOISE = 0.02      # the smallest noise band, in the metric's units (module docstring)
GREY_MARK = "†"       # Markdown has no colour: a greyed number carries this marker, explained in each caption
CELL_COLUMNS = ["metric", "higher_is_better", "protocol", "obs_ratio", "benchmark", "method", "status", "mean", "std",
                "n", *[f"n_{s}" for s in UNFINISHED], "chance", "floor", "floor_std", "floor_n", "floor_status",
                "greyed", "mark"]


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


def chance_rows(records: pd.DataFrame) -> pd.DataFrame:
    """The chance levels recorded beside the final test rows (split ``"chance"``, :mod:`bench.eval.chance`)."""
    keep = (records["split"] == "chance") & (records["status"] == "done")
    keep &= ~records["metric"].isin(about_the_evaluator(records["metric"].unique()))
    return records.loc[keep]


def _protocol_of(protocols: Mapping[str, str] | None, run_id: str) -> str:
    return str((protocols or {}).get(run_id) or DEFAULT_PROTOCOL)


def _per_run(rows: pd.DataFrame, protocols: Mapping[str, str] | None) -> pd.DataFrame:
    cols = ["run_id", *KEY, "protocol", "metric", "value", "status"]
    out = []
    for (run_id, metric), g in rows.groupby(["run_id", "metric"], sort=True):
        first = g.iloc[0]
        done = g[g["status"] == "done"]
        if len(done):
            joint = done[done["target"] == "joint"]
            value, status = float((joint if len(joint) else done)["value"].mean()), "done"
        else:
            value, status = math.nan, "not_applicable"
        out.append({"run_id": run_id, "method": first["method"], "benchmark": first["benchmark"],
                    "obs_ratio": _ratio(first["obs_ratio"]), "seed": int(first["seed"]),
                    "protocol": _protocol_of(protocols, run_id), "metric": metric, "value": value, "status": status})
    return pd.DataFrame(out, columns=cols)


def run_scores(records: pd.DataFrame, protocols: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per run x metric: run_id, method, benchmark, obs_ratio, seed, protocol, metric, value, status ("done"
    with the run's value, or "not_applicable" with NaN). ``protocols``: {run_id: evaluation protocol}, default
    "default"."""
    return _per_run(final_test_rows(records), protocols)


def run_chance(records: pd.DataFrame, protocols: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Like :func:`run_scores`, for the chance levels: one row per run x metric, reduced over targets the same way."""
    return _per_run(chance_rows(records), protocols)


def run_states(records: pd.DataFrame, index: pd.DataFrame, expected: pd.DataFrame | None = None,
               protocols: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per known run: method, benchmark, obs_ratio, seed, run_id, state (done, failed, pruned, running,
    missing), error, protocol ("" where unknown: an index row without a record, a planned run; ``expected`` may
    carry a protocol column). A finished run supersedes unfinished ones with the same (method, benchmark,
    obs_ratio, seed)."""
    rows = []
    for run_id, g in records.groupby("run_id", sort=True):
        final = len(final_test_rows(g)) > 0
        state = "done" if final or not (g["status"] == "pruned").any() else "pruned"
        first = g.iloc[0]
        rows.append({"run_id": run_id, "method": first["method"], "benchmark": first["benchmark"],
                     "obs_ratio": _ratio(first["obs_ratio"]), "seed": int(first["seed"]), "state": state,
                     "error": "", "protocol": _protocol_of(protocols, run_id)})
    recorded = set(records["run_id"])
    for r in (index.itertuples(index=False) if index is not None and len(index) else ()):
        if r.run_id in recorded or any(pd.isna(getattr(r, c)) for c in KEY):
            continue  # an index row without its key cannot be placed in a table
        rows.append({"run_id": r.run_id, "method": r.method, "benchmark": r.benchmark,
                     "obs_ratio": _ratio(r.obs_ratio), "seed": int(r.seed),
                     "state": _INDEX_STATE.get(r.status, "missing"),
                     "error": "" if pd.isna(getattr(r, "error", None)) else str(r.error),
                     "protocol": str((protocols or {}).get(r.run_id) or "")})
    known = {(r["method"], r["benchmark"], r["obs_ratio"], r["seed"]) for r in rows}
    if expected is not None:
        planned = expected.assign(protocol=expected["protocol"].fillna("").astype(str)
                                  if "protocol" in expected.columns else "")
        for r in planned[[*KEY, "protocol"]].itertuples(index=False):
            key = (r.method, r.benchmark, _ratio(r.obs_ratio), int(r.seed))
            if key not in known:
                known.add(key)
                rows.append({"run_id": "", "method": key[0], "benchmark": key[1], "obs_ratio": key[2],
                             "seed": key[3], "state": "missing", "error": "", "protocol": r.protocol})
    states = pd.DataFrame(rows, columns=[*KEY, "run_id", "state", "error", "protocol"])
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

def _marks(means: dict[str, float], higher: bool, n_numbers: int | None = None) -> dict[str, str]:
    """best/second per method among the numbers of one row; ties share a mark. ``means``: the candidates (the
    numbers that are not greyed); ``n_numbers``: how many numbers the row shows (default: the candidates)."""
    # rounding away float noise so that (0.8 + 0.9) / 2 and 0.85 count as a tie
    vals = {m: round(v, 12) for m, v in means.items()}
    shown = len(vals) if n_numbers is None else n_numbers
    ordered = sorted(set(vals.values()), reverse=higher)
    out = {m: "" for m in vals}
    if shown >= 2:
        for m, v in vals.items():
            if v == ordered[0]:
                out[m] = "best"
            elif shown >= 3 and len(ordered) >= 2 and v == ordered[1]:
                out[m] = "second"
    return out


def _sd(std: float, n: int) -> float:
    # one run shows no spread: its std counts as 0 (MIN_NOISE stands in for the test split's own noise)
    return 0.0 if n < 2 or std is None or math.isnan(std) else float(std)


def noise_band(std: float, n: int, floor_std: float = 0.0, floor_n: int = 0) -> float:
    """max(2 * sqrt(s^2 / n + s_f^2 / n_f), MIN_NOISE); the floor term is left out when ``floor_n`` is 0 (the band
    around a chance level, which has no spread of its own)."""
    var = _sd(std, n) ** 2 / max(n, 1)
    if floor_n:
        var += _sd(floor_std, floor_n) ** 2 / floor_n
    return max(2.0 * math.sqrt(var), MIN_NOISE)


def _gain(value: float, reference: float, higher: bool) -> float:
    """How much better ``value`` is than ``reference`` in the metric's direction."""
    return value - reference if higher else reference - value


def is_greyed(mean: float, std: float, n: int, higher: bool, *, chance: float = math.nan, floor: float = math.nan,
              floor_std: float = math.nan, floor_n: int = 0) -> bool:
    """Within noise of the floor, or not above chance (module docstring). NaN references are not judged on."""
    if n < 1 or math.isnan(mean):
        return False
    if not math.isnan(floor) and floor_n >= 1 and _gain(mean, floor, higher) <= noise_band(std, n, floor_std, floor_n):
        return True
    return not math.isnan(chance) and _gain(mean, chance, higher) <= noise_band(std, n)


def leaderboard(records: pd.DataFrame, index: pd.DataFrame, expected: pd.DataFrame | None = None,
                directions: dict[str, bool] | None = None,
                protocols: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every cell of every table as one row (columns :data:`CELL_COLUMNS`), sorted. The :data:`FLOOR` method is
    not a column of its own: its cell fills the floor columns of every cell of the row. ``protocols``: {run_id:
    evaluation protocol} (a run not in it, or every run when it is None, is "default")."""
    scores = run_scores(records, protocols)
    chance = run_chance(records, protocols)
    states = run_states(records, index, expected, protocols)
    metrics = sorted(scores["metric"].unique())
    directions = directions if directions is not None else metric_directions(metrics, records)
    ratios = sorted(set(states["obs_ratio"]))
    methods = sorted(set(states["method"]) - {FLOOR})
    unmeasured = set(states["benchmark"]) - set(scores["benchmark"])  # nothing finished: show it in every table
    by_cell = {k: g for k, g in scores.groupby(["metric", "protocol", "obs_ratio", "benchmark", "method"], sort=False)}
    chance_at = {k: float(g["value"].mean()) for k, g in
                 chance.groupby(["metric", "protocol", "obs_ratio", "benchmark"], sort=True)}
    by_run = {k: g for k, g in states.groupby(["protocol", "obs_ratio", "benchmark", "method"], sort=False)}

    def runs(protocol, ratio, bench, method):
        # runs of unknown protocol belong to every protocol's table
        found = [g for g in (by_run.get((protocol, ratio, bench, method)), by_run.get(("", ratio, bench, method)))
                 if g is not None]
        return pd.concat(found) if found else None

    rows = []
    for metric in metrics:
        higher = directions[metric]
        of_metric = scores[scores["metric"] == metric]
        for protocol in sorted(set(of_metric["protocol"])):
            benchmarks = sorted(set(of_metric.loc[of_metric["protocol"] == protocol, "benchmark"]) | unmeasured)
            for ratio in ratios:
                for bench in benchmarks:
                    def cell(m):
                        return _cell(metric, higher, protocol, ratio, bench, m,
                                     by_cell.get((metric, protocol, ratio, bench, m)), runs(protocol, ratio, bench, m))

                    floor = cell(FLOOR)
                    row = [cell(m) for m in methods]
                    reference = {"chance": chance_at.get((metric, protocol, ratio, bench), math.nan),
                                 "floor": floor["mean"], "floor_std": floor["std"], "floor_n": floor["n"],
                                 "floor_status": floor["status"]}
                    for c in row:
                        c.update(reference)
                        c["greyed"] = c["status"] == "ok" and is_greyed(
                            c["mean"], c["std"], c["n"], higher, chance=reference["chance"], floor=floor["mean"],
                            floor_std=floor["std"], floor_n=floor["n"])
                    numbers = [c for c in row if c["status"] == "ok"]
                    marks = _marks({c["method"]: c["mean"] for c in numbers if not c["greyed"]}, higher, len(numbers))
                    for c in row:
                        c["mark"] = marks.get(c["method"], "")
                    rows.extend(row)
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def _cell(metric, higher, protocol, ratio, bench, method, scores: pd.DataFrame | None,
          runs: pd.DataFrame | None) -> dict:
    values = scores.loc[scores["status"] == "done", "value"].to_numpy(float) if scores is not None else np.array([])
    counts = {s: int((runs["state"] == s).sum()) if runs is not None else 0 for s in UNFINISHED}
    if len(values):
        status = "ok"
    elif scores is not None and len(scores):
        status = "n/a"
    else:
        status = next((s for s in UNFINISHED if counts[s]), "-")
    return {"metric": metric, "higher_is_better": higher, "protocol": protocol, "obs_ratio": ratio, "benchmark": bench,
            "method": method, "status": status, "mean": float(values.mean()) if len(values) else math.nan,
            "std": float(values.std(ddof=1)) if len(values) >= 2 else math.nan, "n": len(values),
            **{f"n_{s}": counts[s] for s in UNFINISHED}, "chance": math.nan, "floor": math.nan,
            "floor_std": math.nan, "floor_n": 0, "floor_status": "-", "greyed": False, "mark": ""}


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


def floor_parts(cell) -> tuple[str, str]:
    """:func:`cell_parts` of the row's floor (the untrained baseline's cell), from the floor columns of any cell."""
    return cell_parts({"status": cell["floor_status"], "mean": cell["floor"], "std": cell["floor_std"],
                       "n": cell["floor_n"], **{f"n_{s}": 0 for s in UNFINISHED}})


def chance_text(cell) -> str:
    return fmt_float(cell["chance"]) or "-"


def tables(cells: pd.DataFrame) -> list[tuple[str, float, bool, pd.DataFrame]]:
    """(metric, obs_ratio, higher_is_better, cells of that table) in print order: one table per metric, evaluation
    protocol and observation ratio (the protocol is the cells' ``protocol`` column, :func:`table_protocol`)."""
    return [(metric, ratio, bool(g["higher_is_better"].iloc[0]), g)
            for (metric, _, ratio), g in cells.groupby(["metric", "protocol", "obs_ratio"], sort=True)]


def table_protocol(g: pd.DataFrame) -> str:
    return str(g["protocol"].iloc[0]) if "protocol" in g.columns and len(g) else DEFAULT_PROTOCOL


def protocol_suffix(protocol: str) -> str:
    """What a heading adds to tell two protocols' tables of one metric apart ("" for the default protocol)."""
    return "" if protocol == DEFAULT_PROTOCOL else f", {protocol} protocol"


def _grid(g: pd.DataFrame) -> tuple[list[str], list[str], dict]:
    benchmarks, methods = sorted(set(g["benchmark"])), sorted(set(g["method"]))
    at = {(r["benchmark"], r["method"]): r for r in g.to_dict("records")}
    return benchmarks, methods, at


def _row_cell(at: dict, bench: str, methods: list[str]):
    """Any cell of a row: each carries the row's chance and floor."""
    return at[(bench, methods[0])]


_MD_SPECIAL = re.compile(r"([\\`*|\[\]])")


def md_escape(s: str) -> str:
    """Text from the store inside a Markdown table: no cell breaks, no emphasis, no raw HTML."""
    s = str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s).replace("\n", " ")


def md_cell(cell) -> str:
    number, note = cell_parts(cell)
    if cell["greyed"]:
        number = f"{number}{GREY_MARK}"
    elif cell["mark"] == "best":
        number = f"**{number}**"
    elif cell["mark"] == "second":
        number = f"<u>{number}</u>"  # Markdown has no underline; GitHub and most renderers accept <u>
    return f"{number} ({note})" if note else number


def md_floor(cell) -> str:
    number, note = floor_parts(cell)
    return f"{number} ({note})" if note else number


LEGEND = ("Mean ± standard deviation over seeds (n = finished runs; unfinished runs of a cell are counted after "
          "it). A metric with several targets counts once per run: its \"joint\" target when present, otherwise "
          "the mean over its targets. chance: the metric's value for an uninformative representation or generator "
          "(mean over the row's runs); floor: the untrained baseline (the shared encoders at their random "
          f"initialisation, never trained). Greyed ({GREY_MARK} in Markdown): within noise of the floor or not above "
          f"chance, i.e. not better by more than max(2 standard errors over seeds, {MIN_NOISE}); greyed numbers are "
          "never marked. Best per benchmark in bold, second underlined (among at least three). "
          "n/a: the method cannot serve the metric; failed / pruned / running / missing: no finished run; "
          "-: nothing recorded.")


def caption(protocol: str, grey: str) -> str:
    """The sentence under every table: its evaluation protocol and what the grey marking means."""
    return (f"Evaluation protocol: {protocol}. {grey} within noise of the untrained floor or not above chance "
            "(never bold or underlined).")


def to_markdown(cells: pd.DataFrame, title: str = "Leaderboard") -> str:
    out = [f"# {md_escape(title)}", "", LEGEND, ""]
    if cells.empty:
        out += ["No finished test results.", ""]
    for metric, ratio, higher, g in tables(cells):
        benchmarks, methods, at = _grid(g)
        protocol = table_protocol(g)
        out += [f"## {md_escape(metric)}, observation ratio {fmt_ratio(ratio)}{md_escape(protocol_suffix(protocol))} "
                f"({direction_word(higher)})", ""]
        out.append(f"| benchmark | chance | floor ({FLOOR}) | " + " | ".join(md_escape(m) for m in methods) + " |")
        out.append("|" + " --- |" * (len(methods) + 3))
        for b in benchmarks:
            ref = _row_cell(at, b, methods)
            out.append(f"| {md_escape(b)} | {chance_text(ref)} | {md_floor(ref)} | "
                       + " | ".join(md_cell(at[(b, m)]) for m in methods) + " |")
        out += ["", f"*{md_escape(caption(protocol, GREY_MARK + ':'))}*", ""]
    return "\n".join(out)


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "<": r"\textless{}", ">": r"\textgreater{}"}


def tex_escape(s: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(s).replace("\n", " "))


def _tex_parts(number: str, note: str) -> str:
    number = tex_escape(number).replace("±", r"$\pm$")
    return rf"{number} {{\scriptsize ({tex_escape(note)})}}" if note else number


def tex_cell(cell) -> str:
    number, note = cell_parts(cell)
    text = tex_escape(number).replace("±", r"$\pm$")
    if cell["greyed"]:
        return rf"\textcolor{{gray}}{{{_tex_parts(number, note)}}}"
    if cell["mark"] == "best":
        text = rf"\textbf{{{text}}}"
    elif cell["mark"] == "second":
        text = rf"\underline{{{text}}}"
    return rf"{text} {{\scriptsize ({tex_escape(note)})}}" if note else text


def _tex_label(*parts: str) -> str:
    return "tab:" + "-".join(re.sub(r"[^A-Za-z0-9.]+", "-", p) for p in parts)


def to_latex(cells: pd.DataFrame) -> str:
    """One booktabs ``table`` per metric, evaluation protocol and observation ratio (needs ``\\usepackage{booktabs}``
    and ``\\usepackage{xcolor}``)."""
    out = ["% mmrl-bench leaderboard; needs \\usepackage{booktabs} and \\usepackage{xcolor}", ""]
    for metric, ratio, higher, g in tables(cells):
        benchmarks, methods, at = _grid(g)
        protocol = table_protocol(g)
        label_parts = (metric, fmt_ratio(ratio)) + (() if protocol == DEFAULT_PROTOCOL else (protocol,))
        out += [r"\begin{table}[t]", r"\centering",
                rf"\caption{{{tex_escape(metric)} ({direction_word(higher)}), observation ratio {fmt_ratio(ratio)}, "
                rf"evaluation protocol {tex_escape(protocol)}: mean $\pm$ std over seeds; best in bold, second "
                r"underlined; grey: within noise of the untrained floor or not above chance (never marked).}",
                rf"\label{{{_tex_label(*label_parts)}}}",
                r"\begin{tabular}{l" + "c" * (len(methods) + 2) + "}", r"\toprule",
                f"benchmark & chance & floor ({tex_escape(FLOOR)}) & " + " & ".join(tex_escape(m) for m in methods)
                + r" \\", r"\midrule"]
        for b in benchmarks:
            ref = _row_cell(at, b, methods)
            out.append(f"{tex_escape(b)} & {tex_escape(chance_text(ref))} & {_tex_parts(*floor_parts(ref))} & "
                       + " & ".join(tex_cell(at[(b, m)]) for m in methods) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def to_csv(cells: pd.DataFrame) -> str:
    """The cells in long format, one row each, with the unrounded-enough numbers."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CELL_COLUMNS)
    f6 = lambda x: fmt_float(x, CSV_DECIMALS)  # noqa: E731
    for r in cells.to_dict("records"):
        w.writerow([r["metric"], str(bool(r["higher_is_better"])).lower(), r["protocol"], fmt_ratio(r["obs_ratio"]),
                    r["benchmark"], r["method"], r["status"], f6(r["mean"]), f6(r["std"]), r["n"],
                    *[r[f"n_{s}"] for s in UNFINISHED], f6(r["chance"]), f6(r["floor"]), f6(r["floor_std"]),
                    r["floor_n"], r["floor_status"], str(bool(r["greyed"])).lower(), r["mark"]])
    return buf.getvalue()
