"""``python -m bench data check``: which benchmarks of a suite have their data, which do not, and where to get it.

Per benchmark: present / missing / incomplete (with the files that are absent or wrong), the samples found against
the full release's counts where they are known, and the state of the decode cache. Embedded benchmarks ship with the
package and are always present. The suite is complete, and the command exits 0, only when every benchmark is present.
Nothing is decoded: the check lists and stats files and reads headers, so it stays quick on the real datasets.
It composes the suite's configurations (bench.compose), so it sits beside the composer rather than in bench.data,
which the composer's schemas depend on (an import cycle that lint-imports refuses).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.data.formats.base import Probe
from bench.data.root import data_root
from bench.errors import BenchError


@dataclass
class Row:
    benchmark: str
    kind: str                   # paper | embedded | unknown
    probe: Probe | None = None
    source: str = ""

    @property
    def state(self) -> str:
        if self.kind == "embedded":
            return "present"
        return self.probe.state if self.probe else "unknown"


def benchmark_instance(name: str, overrides: tuple[str, ...], root: str | None):
    """The benchmark ``name`` configured as the suite runs it (its overrides), reading from ``root``."""
    from bench.build import benchmark_from
    from bench.compose import compose
    from bench.registry import BENCHMARKS

    values = {}
    try:
        values = dict(compose([*overrides, f"benchmark={name}"])["benchmark"])
    except BenchError:
        pass  # an override aimed at other config groups: the defaults still say where the files are
    if getattr(BENCHMARKS.get(name), "needs_data", False):
        values["root"] = str(data_root(root))
    return benchmark_from(name, values, f"benchmark {name}")


def benchmark_overrides(suite, entry) -> tuple[str, ...]:
    """The overrides of the suite that concern the benchmark config group."""
    return tuple(o for o in (*suite.overrides, *entry.overrides) if o.startswith("benchmark."))


def check_suite(suite, root: str | None = None) -> list[Row]:
    from bench.registry import BENCHMARKS

    rows = []
    for entry in suite.benchmarks:
        if entry.name not in BENCHMARKS:
            rows.append(Row(entry.name, "unknown"))
            continue
        cls = BENCHMARKS.get(entry.name)
        if not getattr(cls, "needs_data", False):
            rows.append(Row(entry.name, "embedded"))
            continue
        bench = benchmark_instance(entry.name, benchmark_overrides(suite, entry), root)
        rows.append(Row(entry.name, "paper", bench.probe(), cls.source))
    return rows


def complete(rows: list[Row]) -> bool:
    return all(r.state == "present" for r in rows)


STYLE = {"present": "green", "missing": "red", "incomplete": "yellow", "unknown": "red"}


def _samples(p: Probe) -> str:
    parts = []
    for key in dict.fromkeys([*p.expected, *p.found]):
        found, want = p.found.get(key), p.expected.get(key)
        if found is None:
            continue
        parts.append(f"{key} {found}" + (f"/{want}" if want is not None else ""))
    return ", ".join(parts) or "-"


def table(rows: list[Row], suite_name: str, root: Path):
    from rich.table import Table

    t = Table(title=f"suite {suite_name}: data under {root}")
    for c in ("benchmark", "state", "format", "samples found/expected", "cache", "what is missing or wrong"):
        t.add_column(c, overflow="fold")
    for r in rows:
        state = f"[{STYLE.get(r.state, 'white')}]{r.state}[/]"
        if r.kind == "embedded":
            t.add_row(r.benchmark, state, "embedded (ships with the package)", "-", "-", "")
        elif r.kind == "unknown":
            t.add_row(r.benchmark, state, "-", "-", "-", "not a registered benchmark")
        else:
            p = r.probe
            if p.state == "missing":
                detail = f"nothing in {p.folder.name}/ (expected files below)"
            else:
                detail = ", ".join(p.missing_files) if p.missing_files else p.message
            t.add_row(r.benchmark, state, p.variant or "-", _samples(p), p.cache if p.state != "missing" else "-",
                      detail if p.state != "present" else "")
    return t


def report(rows: list[Row], suite_name: str, root: str | None, console) -> int:
    """Print the table and, for every benchmark not present, where its data comes from; 0 when complete."""
    resolved = data_root(root)
    console.print(table(rows, suite_name, resolved))
    for r in rows:
        if r.state == "missing" and r.kind == "paper":
            console.print(f"[bold]{r.benchmark}[/]: expected {', '.join(r.probe.missing_files)} in {r.probe.folder}; "
                          f"get it from {r.source}", soft_wrap=True)
        elif r.state != "present" and r.kind == "paper":
            console.print(f"[bold]{r.benchmark}[/]: in {r.probe.folder}; source: {r.source}", soft_wrap=True)
    n_ok = sum(r.state == "present" for r in rows)
    console.print(f"{n_ok} of {len(rows)} benchmarks present"
                  + ("" if n_ok == len(rows) else " (root: --root DIR, else $MMRL_DATA, else ~/.mmrl-bench/data)"),
                  soft_wrap=True)
    return 0 if complete(rows) else 1
