"""The self-contained ``index.html``: tables, statistics, figures (PNG data URIs), configuration and provenance.

Every string that comes from the store or the caller goes through :func:`esc`; ids and classes are made here from
counters and fixed words, never from data. The page carries a Content-Security-Policy that forbids scripts and any
network fetch, so even a missed escape could not run code or leak the page.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from reports import stats as st
from reports.tables import (FLOOR, LEGEND, UNFINISHED, caption, cell_parts, chance_text, direction_word, floor_parts,
                            fmt_float, fmt_ratio, protocol_suffix, table_protocol, tables)

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1200px;
 padding:0 1rem;color:#1d1d1f;line-height:1.4}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
h3{margin-bottom:.4rem}
table{border-collapse:collapse;margin:.4rem 0 1rem;font-size:.9rem}
th,td{border-top:1px solid #ddd;border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:right;
 vertical-align:top}
th:first-child,td:first-child{text-align:left}
thead th{border-bottom:2px solid #444}
td small{color:#666;white-space:nowrap}
.scroll{overflow-x:auto}
td.na{color:#888} td.failed{color:#b00020;font-weight:600} td.missing,td.pruned,td.running{color:#a15c00}
td.empty{color:#aaa}
td.greyed,td.greyed small,span.greyed{color:#9a9a9a} td.reference{background:#f7f7f7}
p.caption{color:#555;font-size:.85rem;margin:-.6rem 0 1.2rem}
.legend,.note{color:#555;font-size:.9rem;max-width:60rem}
figure{margin:1rem 0 2rem} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9rem}
pre{background:#f6f8fa;padding:.6rem;overflow:auto;font-size:.8rem;max-height:30rem;text-align:left;
 white-space:pre-wrap}
nav a{margin-right:1rem}
table.plain td,table.plain th{text-align:left} table.plain td{overflow-wrap:anywhere}
table.pairs td:nth-child(2),table.pairs th:nth-child(2){text-align:left}
"""


@dataclass(frozen=True)
class FigureItem:
    name: str
    caption: str
    png: bytes


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def img_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def _row(cells: list[str], tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


def leaderboard_html(cells: pd.DataFrame) -> str:
    if cells.empty:
        return "<p>No finished test results.</p>"
    out = [f'<p class="legend">{esc(LEGEND)}</p>']
    for i, (metric, ratio, higher, g) in enumerate(tables(cells)):
        benchmarks, methods = sorted(set(g["benchmark"])), sorted(set(g["method"]))
        at = {(r["benchmark"], r["method"]): r for r in g.to_dict("records")}
        protocol = table_protocol(g)
        out.append(f'<h3 id="table-{i}">{esc(metric)}, observation ratio {esc(fmt_ratio(ratio))}'
                   f'{esc(protocol_suffix(protocol))} <small>({direction_word(higher)})</small></h3>')
        out.append('<div class="scroll"><table class="leaderboard"><thead>'
                   + _row(["benchmark", "chance", f"floor ({esc(FLOOR)})", *map(esc, methods)], "th")
                   + "</thead><tbody>")
        for b in benchmarks:
            ref = at[(b, methods[0])]
            tds = [f"<td>{esc(b)}</td>", f'<td class="reference">{esc(chance_text(ref))}</td>',
                   _reference_td(*floor_parts(ref))] + [_cell_td(at[(b, m)]) for m in methods]
            out.append("<tr>" + "".join(tds) + "</tr>")
        out.append("</tbody></table></div>")
        grey = '<span class="greyed">Grey</span>:'
        out.append(f'<p class="caption">{caption(esc(protocol), grey)}</p>')
    return "\n".join(out)


_STATUS_CLASS = {"n/a": "na", "-": "empty", **{s: s for s in UNFINISHED}}


def _reference_td(number: str, note: str) -> str:
    return f'<td class="reference">{esc(number)}' + (f" <small>({esc(note)})</small>" if note else "") + "</td>"


def _cell_td(cell) -> str:
    number, note = cell_parts(cell)
    if cell["status"] != "ok":
        return f'<td class="{_STATUS_CLASS.get(cell["status"], "empty")}">{esc(number)}</td>'
    text = esc(number)
    if cell["greyed"]:
        return f'<td class="greyed">{text} <small>({esc(note)})</small></td>'
    if cell["mark"] == "best":
        text = f"<strong>{text}</strong>"
    elif cell["mark"] == "second":
        text = f"<u>{text}</u>"
    return f"<td>{text} <small>({esc(note)})</small></td>"


def stats_html(comparisons: list[st.Comparison]) -> str:
    if not comparisons:
        return "<p>No comparisons.</p>"
    out = ['<p class="note">Per metric and observation ratio, over the benchmarks where every compared method has a '
           "number. Rank 1 is best. Pairwise Wilcoxon signed-rank p-values are Holm-corrected within each table.</p>"]
    for c in comparisons:
        out.append(f"<h3>{esc(c.metric)}, observation ratio {esc(fmt_ratio(c.obs_ratio))}"
                   f"{esc(protocol_suffix(c.protocol))} <small>({direction_word(c.higher_is_better)})</small></h3>")
        out.append(f'<p class="note">Benchmarks compared: {esc(", ".join(c.scores.index)) or "none"}.</p>')
        out += [f'<p class="note">{esc(n)}.</p>' for n in c.notes]
        if c.friedman is not None:
            chi2, p = c.friedman
            out.append(f'<p class="note">Friedman chi² = {fmt_float(chi2)}, p = {esc(st.fmt_p(p))} '
                       f"(k = {c.k}, N = {c.n}); Nemenyi critical difference (alpha = {st.ALPHA}) = "
                       f"{fmt_float(c.cd)}.</p>")
        if len(c.ranks):
            out.append('<table><thead>' + _row(["method", "average rank"], "th") + "</thead><tbody>")
            out += [_row([esc(m), fmt_float(r)]) for m, r in c.ranks.items()]
            out.append("</tbody></table>")
        if len(c.pairwise):
            out.append('<table class="pairs"><thead>' + _row(["A", "B", "wins A", "wins B", "W", "p", "p (Holm)"], "th")
                       + "</thead><tbody>")
            out += [_row([esc(r["a"]), esc(r["b"]), str(r["wins_a"]), str(r["wins_b"]), fmt_float(r["statistic"]),
                          esc(st.fmt_p(r["p"])), esc(st.fmt_p(r["p_holm"]))]) for r in c.pairwise.to_dict("records")]
            out.append("</tbody></table>")
    return "\n".join(out)


def figures_html(figures: list[FigureItem]) -> str:
    if not figures:
        return "<p>No figures.</p>"
    return "\n".join(f"<figure>{img_tag(f.png, f.caption)}<figcaption>{esc(f.caption)}</figcaption></figure>"
                     for f in figures)


def unfinished_html(states: pd.DataFrame) -> str:
    todo = states[states["state"] != "done"]
    if todo.empty:
        return "<p>Every known run finished.</p>"
    out = ['<table class="plain"><thead>'
           + _row(["state", "method", "benchmark", "obs ratio", "seed", "run", "error"], "th") + "</thead><tbody>"]
    for r in todo.sort_values(["state", "method", "benchmark", "obs_ratio", "seed"], kind="mergesort").itertuples():
        err = str(r.error or "")
        first = err.strip().splitlines()[0] if err.strip() else ""
        detail = (f"<details><summary>{esc(first)}</summary><pre>{esc(err)}</pre></details>" if err.strip() else "")
        out.append(_row([esc(r.state), esc(r.method), esc(r.benchmark), esc(fmt_ratio(r.obs_ratio)), esc(r.seed),
                         f"<code>{esc(r.run_id)}</code>", detail]))
    out.append("</tbody></table>")
    return "\n".join(out)


def config_html(config: dict | None) -> str:
    if not config:
        return "<p>No suite configuration given.</p>"
    try:
        text = json.dumps(config, indent=2, sort_keys=True, default=str)
    except TypeError:  # keys of mixed types cannot be sorted
        text = json.dumps(config, indent=2, default=str)
    return f"<pre>{esc(text)}</pre>"


def _versions_text(raw: str) -> str:
    try:
        vs = json.loads(raw) if raw else {}
        return ", ".join(f"{k} {v}" for k, v in sorted(vs.items()) if v) if isinstance(vs, dict) else str(raw)
    except (ValueError, TypeError):
        return str(raw)


def provenance(records: pd.DataFrame) -> pd.DataFrame:
    """Distinct (git_sha, hardware, versions) of the runs with how many runs each."""
    cols = ["git_sha", "hardware", "versions"]
    if records.empty:
        return pd.DataFrame(columns=[*cols, "runs"])
    per_run = records.drop_duplicates("run_id")[["run_id", *cols]].fillna("")
    out = per_run.groupby(cols, sort=True).size().rename("runs").reset_index()
    return out


def provenance_html(prov: pd.DataFrame) -> str:
    if prov.empty:
        return "<p>No runs.</p>"
    out = ['<table class="plain"><thead>' + _row(["git sha", "hardware", "versions", "runs"], "th")
           + "</thead><tbody>"]
    out += [_row([f"<code>{esc(r.git_sha) or '?'}</code>", esc(r.hardware), esc(_versions_text(r.versions)),
                  str(r.runs)]) for r in prov.itertuples()]
    out.append("</tbody></table>")
    return "\n".join(out)


def summary_html(states: pd.DataFrame) -> str:
    counts = states["state"].value_counts()
    parts = [f"{int(counts.get(s, 0))} {s}" for s in ("done", *UNFINISHED) if counts.get(s, 0)]
    methods, benchmarks = sorted(set(states["method"])), sorted(set(states["benchmark"]))
    return (f'<p class="note">Runs: {esc(", ".join(parts)) or "none"}. Methods: {esc(", ".join(methods)) or "none"}. '
            f'Benchmarks: {esc(", ".join(benchmarks)) or "none"}.</p>')


def notes_html(notes: dict[str, str]) -> str:
    if not notes:
        return "<p>No methods.</p>"
    return "\n".join(f"<details><summary>{esc(name)}</summary><pre>{esc(text)}</pre></details>"
                     for name, text in notes.items())


def ladder_html(ladder: pd.DataFrame) -> str:
    """The sanity ladder (reports/ladder.py): one row per rung and method, failures marked."""
    from reports import ladder as ld

    out = [f'<p class="note">{esc(ld.summary(ladder))}</p>', '<table class="plain"><thead>'
           + _row(["rung", "benchmark", "metric", "method", "value", "untrained floor", "test", "result"], "th")
           + "</thead><tbody>"]
    for r in ladder.itertuples():
        result = f"<strong>{esc(r.result)}</strong>" if r.result == "FAIL" else esc(r.result)
        out.append(_row([esc(r.rung), esc(r.benchmark), esc(r.metric), esc(r.method), esc(ld.fmt(r.value)),
                         esc(ld.fmt(r.floor)), esc(r.test), result]))
    out.append("</tbody></table>")
    whys = {int(r.rung): r.why for r in ladder.itertuples() if r.why}
    if whys:
        out.append("<ul>" + "".join(f"<li>rung {k}: {esc(v)}</li>" for k, v in sorted(whys.items())) + "</ul>")
    return "\n".join(out)


def tuning_html(tuning) -> str:
    """The Optuna studies (:class:`reports.tuning.Tuning`): trial counts and the best trial of each."""
    from reports import tuning as tn

    out = [f'<p class="note">Optuna storage: <code>{esc(tuning.source)}</code></p>']
    if not tuning.studies:
        return "\n".join(out + [f"<p>{esc(tn.empty_text(tuning))}</p>"])
    out.append('<table class="plain"><thead>' + _row([esc(h) for h in tn.HEADER], "th") + "</thead><tbody>")
    out += [_row([f"<code>{esc(r[0])}</code>", *map(esc, r[1:])]) for r in tn.rows(tuning)]
    out.append("</tbody></table>")
    return "\n".join(out)


def render_page(*, title: str, cells: pd.DataFrame, comparisons: list[st.Comparison], figures: list[FigureItem],
                states: pd.DataFrame, records: pd.DataFrame, config: dict | None,
                notes: dict[str, str] | None = None, ladder: pd.DataFrame | None = None, tuning=None) -> str:
    """``tuning``: a :class:`reports.tuning.Tuning`, shown as the "Tuning" section (none: no section)."""
    sections = [
        *([("ladder", "Sanity ladder", ladder_html(ladder))] if ladder is not None else []),
        ("leaderboard", "Leaderboard", leaderboard_html(cells)),
        ("figures", "Figures", figures_html(figures)),
        ("statistics", "Statistics across benchmarks", stats_html(comparisons)),
        ("unfinished", "Unfinished runs", unfinished_html(states)),
        *([("tuning", "Tuning", tuning_html(tuning))] if tuning is not None else []),
        ("methods", "Method notes ([paper] / [reconstructed])", notes_html(notes or {})),
        ("configuration", "Suite configuration", config_html(config)),
        ("software", "Software and hardware", provenance_html(provenance(records))),
    ]
    nav = "<nav>" + "".join(f'<a href="#{sid}">{name}</a>' for sid, name, _ in sections) + "</nav>"
    body = "\n".join(f'<section id="{sid}"><h2>{name}</h2>\n{content}\n</section>' for sid, name, content in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{esc(title)}</h1>\n{summary_html(states)}\n{nav}\n{body}\n</body>\n</html>\n")
