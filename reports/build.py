"""Build the whole report from records and the run index. Reads nothing but its arguments (and the store, in
:func:`report_from_store`).

Output files under ``out_dir``:

* ``leaderboard.md``, ``leaderboard.tex``, ``leaderboard.csv``: the tables (:mod:`reports.tables`);
* ``stats.md``, ``stats.csv``: average ranks, Friedman, Nemenyi, pairwise Wilcoxon (:mod:`reports.stats`);
* ``figures/*.png``: the figures (:mod:`reports.plots`);
* ``methods.md``: the method notes, which parts follow the paper and which are reconstructed (:mod:`reports.notes`);
* ``tuning.md``: when Optuna studies are given, their trial counts and best trials (:mod:`reports.tuning`);
* ``index.html``: all of it in one self-contained page (:mod:`reports.html`).

The Markdown and CSV files depend on the store's contents only, so the same store gives the same bytes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from reports import html as page
from reports import ladder as ld
from reports import notes as method_notes
from reports import plots
from reports import stats as st
from reports import tables as tb
from reports import tuning as tn



def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="\n")
    return path


def _safe(name: str) -> str:
    # file names are built from metric names, which come from the store
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "metric"


def run_protocols(store, run_ids) -> dict[str, str]:
    """{run_id: evaluation protocol} from the stored specs (``eval.protocol``; a spec without it, or a run without
    a spec, is "default")."""
    out = {}
    for run_id in sorted(set(run_ids)):
        spec = store.get_spec(run_id) or {}
        out[run_id] = str((spec.get("eval") or {}).get("protocol") or tb.DEFAULT_PROTOCOL)
    return out


RUN_KEY = ["suite", "method", "benchmark", "obs_ratio", "missing", "seed"]


def superseded(store, records: pd.DataFrame) -> set[str]:
    """Runs written under an older spec version (docs/run-identity.md) where a run of the same suite, cell and
    seed exists under a newer one: after an upgrade that changed the data splits, a sweep trains every run again
    under new run_ids, and the old records must not be averaged in as extra seeds."""
    runs = records.drop_duplicates("run_id")[["run_id", *RUN_KEY]]
    dup = runs[runs.duplicated(RUN_KEY, keep=False)]
    out: set[str] = set()
    for _, g in dup.groupby(RUN_KEY, dropna=False):
        version = {rid: int((store.get_spec(rid) or {}).get("spec_version", 1)) for rid in g["run_id"]}
        newest = max(version.values())
        out |= {rid for rid, v in version.items() if v < newest}
    return out


def build_figures(records: pd.DataFrame, cells: pd.DataFrame, comparisons: list[st.Comparison],
                  samples: Mapping[str, np.ndarray] | None = None) -> list[page.FigureItem]:
    """One figure per metric (against the observation ratio), one CD figure per metric, the rank heatmap, the
    training curves and, when given, the sample grid. The untrained floor is a line of the metric figures."""
    scores = tb.run_scores(records)
    palette = plots.method_palette(set(records["method"]) | set(cells["method"]))
    directions = dict(zip(cells["metric"], cells["higher_is_better"]))
    items: list[page.FigureItem] = []
    used: set[str] = set()

    def add(stem: str, caption: str, fig) -> None:
        if fig is None:
            return
        name, i = stem, 1
        while name in used:
            i += 1
            name = f"{stem}_{i}"
        used.add(name)
        items.append(page.FigureItem(f"{name}.png", caption, plots.png_bytes(fig)))

    for metric in sorted(directions):
        higher = bool(directions[metric])
        add(f"metric_{_safe(metric)}",
            f"{metric} ({tb.direction_word(higher)}) against the observation ratio: mean over seeds with a 95% "
            "bootstrap confidence band.", plots.metric_vs_ratio(scores, metric, higher, palette))
    for metric in sorted(directions):
        add(f"cd_{_safe(metric)}",
            f"{metric}: critical-difference diagrams (Nemenyi, alpha = {st.ALPHA}); methods joined by a bar are not "
            "significantly different.", plots.cd_figure([c for c in comparisons if c.metric == metric]))
    add("rank_heatmap", "Average rank over benchmarks per metric and observation ratio (1 = best).",
        plots.rank_heatmap(st.rank_table(comparisons)))
    add("training_curves", "Validation loss per epoch (band: one standard deviation over seeds).",
        plots.training_curves(records, palette))
    analyses = (
        ("class_distance_profile", "class_distance", plots.class_distance_heatmaps,
         "class-conditioned cross-modal distance matrix of the per-modality representations (DCMEM poster analysis; "
         "mean over ordered modality pairs and seeds). A diagonal darker than the rest means same-class cross-modal "
         "pairs are closest."),
        ("w2_profile", "w2", plots.w2_histograms,
         "distances between the two modalities' representations of the same test instance (paired) and of two "
         "different instances (unpaired), as equal-mass histograms (DCMEM poster analysis; point-mass W2, pooled "
         "over modality pairs, quantiles averaged over seeds)."),
    )
    for bench in sorted(set(records["benchmark"])):
        for metric, stem, draw, what in analyses:
            found = plots.profile_frame(records, metric, bench)
            if found is not None:
                prof, ratio = found
                add(f"{stem}_{_safe(bench)}", f"{bench}, observation ratio {tb.fmt_ratio(ratio)}: {what}",
                    draw(prof, bench))
    if samples:
        add("samples", "Generated samples per method.", plots.sample_grid(samples))
    return items


def write_report(records: pd.DataFrame, index: pd.DataFrame, out_dir: Path, *, expected: pd.DataFrame | None = None,
                 config: dict | None = None, title: str = "mmrl-bench report",
                 samples: Mapping[str, np.ndarray] | None = None,
                 protocols: Mapping[str, str] | None = None, ladder: Sequence = (),
                 tuning: tn.Tuning | None = None) -> dict[str, Path]:
    """Write the report; returns {file name relative to ``out_dir``: path}.

    ``records``: rows of :data:`bench.records.SCHEMA` (``ResultStore.load()``); ``index``: ``ResultStore.index_frame()``;
    ``expected``: optional frame with method, benchmark, obs_ratio, seed of the runs the suite plans, so that absent
    ones read "missing"; ``config``: the suite's configuration, shown on the page; ``samples``: optional
    {method: array of images} for the sample grid; ``protocols``: {run_id: evaluation protocol} (missing: "default");
    ``ladder``: the suite's sanity rungs (:class:`sweeps.suite.Rung`), judged into ``ladder.md`` / ``ladder.csv`` and
    the page's first section; ``tuning``: the sweep's Optuna studies (:func:`reports.tuning.read_tuning`), written
    to ``tuning.md`` and the page's "Tuning" section.
    """
    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    records, index = tb.final_phase(records, index)
    cells = tb.leaderboard(records, index, expected, protocols=protocols)
    comparisons = st.compare(cells)
    states = tb.run_states(records, index, expected, protocols)
    written = {
        "leaderboard.md": _write(out_dir / "leaderboard.md", tb.to_markdown(cells, f"{title}: leaderboard")),
        "leaderboard.tex": _write(out_dir / "leaderboard.tex", tb.to_latex(cells)),
        "leaderboard.csv": _write(out_dir / "leaderboard.csv", tb.to_csv(cells)),
        "stats.md": _write(out_dir / "stats.md", st.to_markdown(comparisons, f"{title}: statistics across benchmarks")),
        "stats.csv": _write(out_dir / "stats.csv", st.to_csv(comparisons)),
    }
    floor = {tb.FLOOR} & set(records["method"])   # the floor is no column, but a reader may want its note
    notes = method_notes.method_notes(set(cells["method"]) | floor) if len(cells) else {}
    written["methods.md"] = _write(out_dir / "methods.md", method_notes.to_markdown(notes, f"{title}: method notes"))
    figures = build_figures(records, cells, comparisons, samples)
    for old in fig_dir.glob("*.png"):  # a figure of a metric no longer in the store must not linger
        old.unlink()
    for f in figures:
        path = fig_dir / f.name
        path.write_bytes(f.png)
        written[f"figures/{f.name}"] = path
    judged = None
    if ladder:
        planned = set(expected["method"]) if expected is not None and len(expected) else None
        judged = ld.evaluate_ladder(records, ladder, methods=planned)
        written["ladder.md"] = _write(out_dir / "ladder.md", ld.to_markdown(judged, f"{title}: sanity ladder"))
        written["ladder.csv"] = _write(out_dir / "ladder.csv", ld.to_csv(judged))
    if tuning is not None:
        written["tuning.md"] = _write(out_dir / "tuning.md", tn.to_markdown(tuning, f"{title}: tuning"))
    elif (out_dir / "tuning.md").exists():  # an earlier report's studies must not sit beside a page without them
        (out_dir / "tuning.md").unlink()
    html_text = page.render_page(title=title, cells=cells, comparisons=comparisons, figures=figures, states=states,
                                 records=records, config=config, notes=notes, ladder=judged, tuning=tuning)
    written["index.html"] = _write(out_dir / "index.html", html_text)
    return written


def report_from_store(store, out_dir: Path, suite: str | None = None, expected: pd.DataFrame | None = None,
                      config: dict | None = None, ladder: Sequence = (),
                      tuning: tn.Tuning | None = None) -> dict[str, Path]:
    """Load ``store`` (a :class:`bench.store.ResultStore`), keep one suite when ``suite`` is given, write the report
    (``tuning``: as in :func:`write_report`, already filtered to the suite by its reader)."""
    records, index = store.load(), store.index_frame()
    if suite is not None:
        records = records[records["suite"] == suite]
        index = index[index["suite"] == suite]
        if expected is not None and "suite" in expected.columns:
            expected = expected[expected["suite"] == suite]
    records = records[~records["run_id"].isin(superseded(store, records))]
    title = f"mmrl-bench report: {suite}" if suite else "mmrl-bench report"
    return write_report(records, index, Path(out_dir), expected=expected, config=config, title=title,
                        protocols=run_protocols(store, records["run_id"]), ladder=ladder, tuning=tuning)
