"""The report's "Tuning" section: per Optuna study of a sweep, how many trials completed, were pruned, failed or are
still running, and the best value with its parameters.

The storage is only read: a SQLite file is opened with ``mode=ro``, and Optuna is asked to create no table. A
database that holds no Optuna tables (an index-only PostgreSQL database) has no studies, which the section says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bench.errors import BenchError
from bench.store import db_error, mask_url, resolve_url
from reports.tables import md_escape

# the tables without which Optuna's RDBStorage would write on opening (it creates missing tables, inserts the
# version row and stamps the alembic revision): a storage lacking any of them is read as holding no studies
_OPTUNA_TABLES = ("studies", "trials", "version_info", "alembic_version")


@dataclass(frozen=True)
class Study:
    name: str
    direction: str                  # "maximize", "minimize", or several joined by "," (multi-objective)
    complete: int
    pruned: int
    failed: int
    running: int                    # RUNNING and WAITING: not finished
    best_value: float | None = None  # None: no complete trial, or several objectives
    best_params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Tuning:
    source: str                     # the storage URL, password masked
    studies: tuple[Study, ...]
    suite: str | None = None        # the filter applied: studies named "<suite>.*"


def default_url(results: Path, index_url: str | None) -> str | None:
    """The storage a sweep with the same flags used (sweeps/driver.py ``run_sweep``): the index database when it is
    not SQLite, else ``<results>/optuna.sqlite`` when that file exists, else none."""
    if index_url and not index_url.startswith("sqlite"):
        return index_url
    path = Path(results) / "optuna.sqlite"
    return f"sqlite:///{path.resolve()}" if path.is_file() else None


def _read_only_url(url: str) -> str:
    """``url`` that cannot write: SQLite as a read-only URI; any other database with an installed driver."""
    if not url.startswith("sqlite"):
        return resolve_url(url)  # BenchError naming the driver package when none is installed
    path = make_url(url).database
    if not path or path == ":memory:" or not Path(path).is_file():
        raise BenchError(f"no Optuna storage at {mask_url(url)} (no such file; give --optuna-storage URL of the "
                         "sweep's storage, or leave it out)")
    return f"sqlite:///file:{Path(path).resolve()}?mode=ro&uri=true"


def summarize(name: str, directions: list[str], trials: list) -> Study:
    """One study's counts and best trial from its trials (objects with ``state``, ``value``, ``number``,
    ``params``, as Optuna's FrozenTrial). The best of equal values is the earliest trial, as in Optuna."""
    from optuna.trial import TrialState

    states = [t.state for t in trials]
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
                and not math.isnan(t.value)]
    best = None
    if len(directions) == 1 and complete:
        sign = -1.0 if directions[0] == "maximize" else 1.0
        best = min(complete, key=lambda t: (sign * t.value, t.number))
    return Study(name=name, direction=",".join(directions), complete=states.count(TrialState.COMPLETE),
                 pruned=states.count(TrialState.PRUNED), failed=states.count(TrialState.FAIL),
                 running=states.count(TrialState.RUNNING) + states.count(TrialState.WAITING),
                 best_value=None if best is None else float(best.value),
                 best_params=dict(best.params) if best is not None else {})


def read_tuning(url: str, suite: str | None = None) -> Tuning:
    """Every study of the storage at ``url`` (only those named ``<suite>.*`` when ``suite`` is given), sorted by
    name. Raises BenchError, in one line with the password masked, when the storage cannot be read."""
    import optuna

    ro = _read_only_url(url)
    kwargs = {"connect_args": {"connect_timeout": 10}} if make_url(ro).get_backend_name() == "postgresql" else {}
    engine = sa.create_engine(ro, **kwargs)
    try:
        present = set(sa.inspect(engine).get_table_names())
        if not set(_OPTUNA_TABLES) <= present:
            return Tuning(mask_url(url), (), suite)
        storage = optuna.storages.RDBStorage(ro, engine_kwargs=kwargs, skip_table_creation=True)
        studies = []
        for s in storage.get_all_studies():
            if suite is not None and not s.study_name.startswith(f"{suite}."):
                continue
            directions = [d.name.lower() for d in s.directions]
            studies.append(summarize(s.study_name, directions,
                                     storage.get_all_trials(storage.get_study_id_from_name(s.study_name),
                                                            deepcopy=False)))
        storage.remove_session()
        storage.engine.dispose()
    except BenchError:
        raise
    except Exception as e:  # the raw message may echo the URL: never let the password through
        raise BenchError(f"cannot read the Optuna storage {mask_url(url)}: {db_error(e, url)}") from None
    finally:
        engine.dispose()
    return Tuning(mask_url(url), tuple(sorted(studies, key=lambda s: s.name)), suite)


def fmt_value(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def fmt_params(params: dict) -> str:
    return ", ".join(f"{k}={fmt_value(v)}" for k, v in sorted(params.items())) or "-"


def empty_text(t: Tuning) -> str:
    where = f" named {t.suite}.*" if t.suite else ""
    return f"No Optuna studies{where} in {t.source}."


def rows(t: Tuning) -> list[list[str]]:
    """The table's cells as text, one row per study (header: :data:`HEADER`)."""
    return [[s.name, s.direction, str(s.complete), str(s.pruned), str(s.failed), str(s.running),
             fmt_value(s.best_value), fmt_params(s.best_params)] for s in t.studies]


HEADER = ["study", "direction", "complete", "pruned", "failed", "running", "best value", "best params"]


def to_markdown(t: Tuning, title: str) -> str:
    """``tuning.md``: every string from the storage escaped (study names and parameters are data)."""
    out = [f"# {md_escape(title)}", "", f"Optuna storage: {md_escape(t.source)}", ""]
    if not t.studies:
        return "\n".join(out + [md_escape(empty_text(t)), ""])
    out += ["| " + " | ".join(HEADER) + " |", "| " + " | ".join("---" for _ in HEADER) + " |"]
    out += ["| " + " | ".join(map(md_escape, r)) + " |" for r in rows(t)]
    return "\n".join(out + [""])
