"""Comparisons across benchmarks, per metric and observation ratio (Demšar, JMLR 2006).

The unit of the tests is a benchmark: each method's cell mean over seeds on it. The Friedman and Wilcoxon tests
need complete, paired blocks, so methods with no number on any benchmark are left out (they cannot serve the
metric), then benchmarks or methods with gaps, greedily, the one with the largest share of gaps first
(:func:`complete_block`): a method run on one benchmark only does not empty the comparison. Rank 1 is the best method on a benchmark; ties share
the average rank.

* Friedman test (``scipy.stats.friedmanchisquare``): needs at least 3 methods and 2 benchmarks.
* Nemenyi critical difference: ``q_alpha / sqrt(2) * sqrt(k (k + 1) / (6 N))`` with ``q_alpha`` the studentized
  range quantile for k groups and infinite degrees of freedom; two methods whose average ranks differ by less are
  not told apart. Computed under the same conditions as Friedman.
* Pairwise Wilcoxon signed-rank tests over benchmarks, Holm-corrected within one metric and observation ratio
  (``statsmodels.stats.multitest.multipletests``).

One comparison per leaderboard table (metric, evaluation protocol, observation ratio). The untrained floor is not
a compared method: it is every row's reference (:mod:`reports.tables`), so it takes no rank from the others.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from reports.tables import (DEFAULT_PROTOCOL, direction_word, fmt_float, fmt_ratio, md_escape, protocol_suffix,
                            table_protocol, tables)

ALPHA = 0.05
MIN_METHODS_FRIEDMAN = 3
MIN_BENCHMARKS = 2
PAIR_COLUMNS = ["a", "b", "n", "wins_a", "wins_b", "statistic", "p", "p_holm"]


@dataclass
class Comparison:
    metric: str
    obs_ratio: float
    higher_is_better: bool
    scores: pd.DataFrame                  # benchmark x method, complete blocks only
    ranks: pd.Series                      # average rank per method, best first
    friedman: tuple[float, float] | None  # (chi-square, p)
    cd: float | None                      # Nemenyi critical difference at ALPHA
    pairwise: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PAIR_COLUMNS))
    notes: tuple[str, ...] = ()
    protocol: str = DEFAULT_PROTOCOL      # the evaluation protocol of the table compared

    @property
    def k(self) -> int:
        return self.scores.shape[1]

    @property
    def n(self) -> int:
        return self.scores.shape[0]


def complete_block(wide: pd.DataFrame) -> pd.DataFrame:
    """Drop benchmarks (rows) and methods (columns) until no cell is missing: each step drops the row or column with
    the largest share of missing cells, a benchmark before a method on a tie (the methods are what a reader
    compares), and among equals the last in name order."""
    while wide.size and wide.isna().to_numpy().any():
        rows, cols = wide.isna().mean(axis=1), wide.isna().mean(axis=0)
        worst_row = rows[rows == rows.max()].index[-1]
        worst_col = cols[cols == cols.max()].index[-1]
        if rows.max() >= cols.max():
            wide = wide.drop(index=worst_row)
        else:
            wide = wide.drop(columns=worst_col)
    return wide


def score_matrix(cells: pd.DataFrame) -> pd.DataFrame:
    """benchmark x method means of one table's cells, reduced to a complete block (see :func:`complete_block`)."""
    ok = cells[cells["status"] == "ok"]
    wide = ok.pivot_table(index="benchmark", columns="method", values="mean", aggfunc="first")
    wide = wide.reindex(index=sorted(set(cells["benchmark"])), columns=sorted(set(cells["method"])))
    wide = complete_block(wide.dropna(axis=1, how="all").dropna(axis=0, how="all"))
    wide.index.name, wide.columns.name = "benchmark", "method"
    return wide


def rank_matrix(scores: pd.DataFrame, higher_is_better: bool) -> pd.DataFrame:
    return scores.rank(axis=1, ascending=not higher_is_better, method="average")


def average_ranks(scores: pd.DataFrame, higher_is_better: bool) -> pd.Series:
    """Mean rank per method over benchmarks, best first (ties in name order)."""
    r = rank_matrix(scores, higher_is_better).mean(axis=0)
    return r.sort_index().sort_values(kind="mergesort")


def friedman(scores: pd.DataFrame) -> tuple[float, float]:
    """(statistic, p); NaN for both when every benchmark ties every method (the tie correction divides by 0:
    there is nothing to test, e.g. a metric that does not depend on the method)."""
    cols = [scores[c].to_numpy(float) for c in scores.columns]
    if all(np.ptp(row) == 0 for row in np.column_stack(cols)):
        return math.nan, math.nan
    res = sps.friedmanchisquare(*cols)
    return float(res.statistic), float(res.pvalue)


def critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    q = sps.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6 * n)))


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the input's order (statsmodels' ``multipletests``; Holm, Scand. J.
    Statist. 1979: the i-th smallest of m p-values times m - i + 1, never below the one before it, capped at 1)."""
    p = np.asarray(pvalues, dtype=float)
    if p.size == 0:  # a table with fewer than two methods has no pair
        return np.empty(0)
    return multipletests(p, method="holm")[1]


def pairwise_wilcoxon(scores: pd.DataFrame, higher_is_better: bool) -> pd.DataFrame:
    rows = []
    for a, b in itertools.combinations(sorted(scores.columns), 2):
        d = scores[a].to_numpy(float) - scores[b].to_numpy(float)
        wins_a, wins_b = (int((d > 0).sum()), int((d < 0).sum()))
        if not higher_is_better:
            wins_a, wins_b = wins_b, wins_a
        if np.all(d == 0):  # identical on every benchmark: nothing to test, and scipy would refuse
            stat, p = math.nan, 1.0
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # small-sample and zero-difference warnings: N is small by nature
                res = sps.wilcoxon(scores[a].to_numpy(float), scores[b].to_numpy(float), zero_method="wilcox")
            stat, p = float(res.statistic), float(res.pvalue)
        rows.append({"a": a, "b": b, "n": len(d), "wins_a": wins_a, "wins_b": wins_b, "statistic": stat, "p": p})
    out = pd.DataFrame(rows, columns=PAIR_COLUMNS[:-1])
    out["p_holm"] = holm(out["p"]) if len(out) else []
    return out


def cliques(ranks: pd.Series, cd: float) -> list[tuple[str, ...]]:
    """Maximal runs of methods (in rank order) whose average ranks lie within the critical difference: the bars of a
    critical-difference diagram."""
    names, r = list(ranks.index), ranks.to_numpy(float)
    out, last_end = [], -1
    for i in range(len(r)):
        j = i
        while j + 1 < len(r) and r[j + 1] - r[i] < cd:
            j += 1
        if j > i and j > last_end:  # not inside the previous bar
            out.append(tuple(names[i:j + 1]))
            last_end = j
    return out


def compare_table(metric: str, obs_ratio: float, higher: bool, cells: pd.DataFrame,
                  alpha: float = ALPHA) -> Comparison:
    scores = score_matrix(cells)
    k, n = scores.shape[1], scores.shape[0]
    notes, fr, cd, pairs = [], None, None, pd.DataFrame(columns=PAIR_COLUMNS)
    dropped = sorted(set(cells.loc[cells["status"] == "ok", "method"]) - set(scores.columns))
    if dropped:
        notes.append(f"left out for gaps on the other methods' benchmarks: {', '.join(dropped)}")
    ranks = average_ranks(scores, higher) if k >= 2 and n >= 1 else pd.Series(dtype=float)
    if k < 2 or n < MIN_BENCHMARKS:
        notes.append(f"not enough data to compare: {k} method(s) on {n} complete benchmark(s)")
    else:
        if k < MIN_METHODS_FRIEDMAN:
            notes.append(f"Friedman test: not enough methods ({k}; it needs {MIN_METHODS_FRIEDMAN})")
        else:
            fr = friedman(scores)
            cd = critical_difference(k, n, alpha)
        pairs = pairwise_wilcoxon(scores, higher)
    return Comparison(metric, obs_ratio, higher, scores, ranks, fr, cd, pairs, tuple(notes), table_protocol(cells))


def compare(cells: pd.DataFrame, alpha: float = ALPHA) -> list[Comparison]:
    """One comparison per leaderboard table, in table order."""
    return [compare_table(m, r, h, g, alpha) for m, r, h, g in tables(cells)]


def rank_table(comparisons: list[Comparison]) -> pd.DataFrame:
    """method x "metric, r=ratio" average ranks (NaN where a method was not compared): the rank heatmap's data."""
    cols = {f"{c.metric}\nr={fmt_ratio(c.obs_ratio)}{protocol_suffix(c.protocol)}": c.ranks
            for c in comparisons if len(c.ranks)}
    out = pd.DataFrame(cols)
    return out.sort_index() if len(out) else out


# --- formatting ---------------------------------------------------------------------------------------------------

def fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _friedman_line(c: Comparison) -> str:
    if c.friedman is None:
        return ""
    chi2, p = c.friedman
    return (f"Friedman chi² = {fmt_float(chi2)}, p = {fmt_p(p)} (k = {c.k} methods, N = {c.n} benchmarks); "
            f"Nemenyi critical difference (alpha = {ALPHA}) = {fmt_float(c.cd)}.")


def to_markdown(comparisons: list[Comparison], title: str = "Statistics across benchmarks") -> str:
    out = [f"# {md_escape(title)}", "",
           "Per metric and observation ratio, over benchmarks where every compared method has a number. Rank 1 is "
           "best; ties share the average rank. Pairwise Wilcoxon signed-rank p-values are Holm-corrected within "
           "each table.", ""]
    for c in comparisons:
        out += [f"## {md_escape(c.metric)}, observation ratio {fmt_ratio(c.obs_ratio)}"
                f"{md_escape(protocol_suffix(c.protocol))} ({direction_word(c.higher_is_better)})", ""]
        out += [f"Benchmarks compared: {', '.join(md_escape(b) for b in c.scores.index) or 'none'}.", ""]
        out += [f"{md_escape(n)}." for n in c.notes] + ([""] if c.notes else [])
        if len(c.ranks):
            out += ["| method | average rank |", "| --- | --- |"]
            out += [f"| {md_escape(m)} | {fmt_float(r)} |" for m, r in c.ranks.items()] + [""]
        if c.friedman is not None:
            out += [_friedman_line(c), ""]
        if len(c.pairwise):
            out += ["| A | B | wins A | wins B | W | p | p (Holm) |", "| --- | --- | --- | --- | --- | --- | --- |"]
            out += [f"| {md_escape(r['a'])} | {md_escape(r['b'])} | {r['wins_a']} | {r['wins_b']} | "
                    f"{fmt_float(r['statistic'])} | {fmt_p(r['p'])} | {fmt_p(r['p_holm'])} |"
                    for r in c.pairwise.to_dict("records")] + [""]
    return "\n".join(out)


def to_csv(comparisons: list[Comparison]) -> str:
    """Long format: one row per (table, quantity). kind is rank, friedman, cd or wilcoxon."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["metric", "protocol", "obs_ratio", "kind", "a", "b", "n_benchmarks", "value", "p", "p_holm"])
    f6 = lambda x: fmt_float(x, 6)  # noqa: E731
    for c in comparisons:
        head = [c.metric, c.protocol, fmt_ratio(c.obs_ratio)]
        for m, r in c.ranks.items():
            w.writerow([*head, "rank", m, "", c.n, f6(r), "", ""])
        if c.friedman is not None:
            w.writerow([*head, "friedman", "", "", c.n, f6(c.friedman[0]), f6(c.friedman[1]), ""])
            w.writerow([*head, "cd", "", "", c.n, f6(c.cd), "", ""])
        for r in c.pairwise.to_dict("records"):
            w.writerow([*head, "wilcoxon", r["a"], r["b"], r["n"], f6(r["statistic"]), f6(r["p"]), f6(r["p_holm"])])
    return buf.getvalue()
