"""ResultStore: one parquet file per finished run plus a SQL index of run status.

* ``<root>/runs/<run_id>.parquet`` (the record) and ``<root>/runs/<run_id>.json`` (its RunSpec) are written to a
  temporary name and renamed into place, so a reader never sees a half-written record. The parquet file is the
  truth of "done": the index can lag behind it after a crash, never ahead.
* The index (SQLite file ``<root>/index.sqlite`` by default, any SQLAlchemy URL such as PostgreSQL for several
  drivers and machines) holds one row per run with its status (claimed, running, done, failed, pruned), owner and
  error. Claims are an INSERT of the run's row (the primary key makes it unique) or a compare-and-swap UPDATE of
  a row whose claim is stale, so two processes never train the same run.
* A claim is kept alive by a heartbeat (:class:`Heartbeat`, every ``heartbeat_s``) from the process that trains.
  It is stale, and taken over, when its owner process is gone from this node (seen at once) or when its heartbeat
  is older than ``claim_timeout_s`` (any node: a killed driver on another machine). Node clocks must agree to
  well within the timeout (NTP).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bench.errors import BenchError
from bench.records import SCHEMA, migrate

log = logging.getLogger(__name__)

STATUSES = ("claimed", "running", "done", "failed", "pruned")
RECLAIMABLE = ("failed", "pruned")
HELD = ("claimed", "running")

# A heartbeat every 30 s and a takeover after 5 min of silence: a busy node that misses a few beats keeps its
# claim, and a dead driver's runs wait at most minutes. Both can be set per store or by these variables (tests
# use seconds).
HEARTBEAT_S = float(os.environ.get("MMRL_HEARTBEAT_S", 30.0))
CLAIM_TIMEOUT_S = float(os.environ.get("MMRL_CLAIM_TIMEOUT_S", 300.0))
# an arbitrary constant: the pg_advisory lock under which concurrent drivers create the tables one at a time
_SCHEMA_LOCK = 0x6D6D726C

# DBAPI module of each SQLAlchemy PostgreSQL driver name, and the pip package that provides it
_PG_DRIVERS = {"psycopg": ("psycopg", "'psycopg[binary]'"), "psycopg2": ("psycopg2", "psycopg2-binary"),
               "pg8000": ("pg8000", "pg8000"), "asyncpg": ("asyncpg", "asyncpg")}

_meta = sa.MetaData()
RUNS = sa.Table(
    "runs",
    _meta,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("method", sa.String(64)),
    sa.Column("benchmark", sa.String(64)),
    sa.Column("obs_ratio", sa.Float),
    sa.Column("seed", sa.Integer),
    sa.Column("suite", sa.String(64)),
    sa.Column("owner", sa.String(160)),
    sa.Column("updated_at", sa.Float),
    sa.Column("error", sa.Text),
)
# one row per live sweep driver, refreshed by its heartbeat: says whether the Optuna trials a driver started can
# still finish (a killed driver's RUNNING trials are failed by the next driver, a live one's are left alone)
DRIVERS = sa.Table(
    "drivers",
    _meta,
    sa.Column("owner", sa.String(160), primary_key=True),
    sa.Column("started_at", sa.Float),
    sa.Column("updated_at", sa.Float),
)


class ClaimHeld(BenchError):
    """The run is being trained by another live process."""


class ClaimLost(BenchError):
    """This process's claim on a run was taken over (it stalled past the claim timeout): it must write nothing."""


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, for logs, records and reports."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL still must not leak: drop everything between ':' and '@'
        head, sep, tail = url.rpartition("@")
        if not sep:
            return url
        scheme, _, cred = head.partition("://")
        user = cred.split(":", 1)[0]
        return f"{scheme}://{user}:***@{tail}"


def _installed(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None  # None: imports of it are blocked
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def resolve_url(url: str) -> str:
    """``url`` with a PostgreSQL driver that is installed: a plain ``postgresql://`` uses psycopg2 in SQLAlchemy,
    and psycopg (3) when only that one is present. Raises BenchError naming the package to install."""
    try:
        u = make_url(url)
    except Exception:
        raise BenchError(f"not a database URL: {mask_url(url)!r} (e.g. postgresql://user:password@host/db or "
                         "sqlite:///path/index.sqlite)") from None
    if u.get_backend_name() != "postgresql":
        return url
    _, plus, named = u.drivername.partition("+")
    if plus:
        module, package = _PG_DRIVERS.get(named, (named, named))
        if not _installed(module):
            raise BenchError(f"{mask_url(url)} needs the {named} driver, which is not installed: pip install {package}")
        return url
    for name in ("psycopg2", "psycopg"):
        if _installed(_PG_DRIVERS[name][0]):
            return u.set(drivername=f"postgresql+{name}").render_as_string(hide_password=False)
    raise BenchError(f"{mask_url(url)} needs a PostgreSQL driver, and none is installed: pip install 'psycopg[binary]' "
                     "(or psycopg2-binary; both come with pip install 'mmrl-bench[postgres]')")


def db_error(e: BaseException, url: str) -> str:
    """The first line of a database error, with the URL's password blanked (drivers may echo connection
    details)."""
    orig = getattr(e, "orig", None) or e
    lines = [ln.strip() for ln in str(orig).strip().splitlines() if ln.strip()]
    text = lines[0] if lines else type(orig).__name__
    try:
        password = make_url(url).password
    except Exception:
        password = None
    if password:
        from urllib.parse import quote_plus

        for form in {password, quote_plus(password)}:
            text = text.replace(form, "***")
    text = text.replace(url, mask_url(url))
    return text[:300]


def engine_for(url: str, connect_timeout_s: int = 10) -> sa.Engine:
    """An engine that fails within ``connect_timeout_s`` on an unreachable server (libpq otherwise waits for the
    operating system's TCP timeout, minutes)."""
    url = resolve_url(url)
    if url.startswith("sqlite"):
        return sa.create_engine(url, connect_args={"timeout": 60})
    connect_args = {"connect_timeout": connect_timeout_s} if make_url(url).get_backend_name() == "postgresql" else {}
    # no pool: every store of every Ray worker would otherwise keep idle connections open against the server's
    # max_connections; index operations are rare (claims, heartbeats, status), so a connection each is cheap
    return sa.create_engine(url, connect_args=connect_args, poolclass=NullPool)


@contextlib.contextmanager
def advisory_lock(url: str, key: int):
    """Holds the PostgreSQL advisory lock ``key`` (a bigint) of the database at ``url`` while the block runs, across
    every process using that database; elsewhere (SQLite: one machine) nothing."""
    engine = engine_for(url)
    try:
        if engine.dialect.name != "postgresql":
            yield
            return
        with engine.connect() as c:
            c.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            c.commit()
            try:
                yield
            finally:
                c.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                c.commit()
    finally:
        engine.dispose()


def schema_lock(url: str):
    """Held while tables are created: drivers that open the same Optuna storage at the same moment otherwise
    collide in the catalog or in Optuna's version row."""
    return advisory_lock(url, _SCHEMA_LOCK)


def results_dir(arg: str | os.PathLike | None = None, configured: str | os.PathLike | None = None) -> Path:
    """The results folder: the command line's ``--results``, else the config's ``results_dir``, else
    ``$MMRL_RESULTS``, else ``./results``."""
    return Path(arg or configured or os.environ.get("MMRL_RESULTS") or "results")


def node_name() -> str:
    """This node's name in claims: ``MMRL_NODE_NAME`` or the hostname plus the PID namespace, since containers on
    one machine can share a hostname and still not see each other's processes."""
    name = os.environ.get("MMRL_NODE_NAME")
    if name:
        return name
    try:
        ns = os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]")
    except OSError:
        ns = ""
    return f"{socket.gethostname()}/{ns}" if ns else socket.gethostname()


def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name in parentheses may hold spaces
    return fields[19] if len(fields) > 19 else None


def owner_id() -> str:
    """``node:pid.start``: the start time tells this process from a later one that reuses its pid, so a claim of a
    dead process is never mistaken for a live one's. (Claims written before it, ``node:pid``, still parse.)"""
    pid = os.getpid()
    start = _proc_start(pid)
    return f"{node_name()}:{pid}.{start}" if start else f"{node_name()}:{pid}"


def _owner_alive(owner: str | None) -> bool:
    """False only when we can tell that the owner process is gone (same node: pid not running, or running but
    started at another time, i.e. reused)."""
    if not owner or ":" not in owner:
        return False
    host, _, proc = owner.rpartition(":")
    if host != node_name():
        return True  # cannot tell across nodes: the heartbeat's age decides
    pid, _, start = proc.partition(".")
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    if start and _proc_start(int(pid)) not in (None, start):
        return False
    return True


def _fsync_dir(folder: Path) -> None:
    """Makes a rename in ``folder`` durable (POSIX: the new name lives in the folder's own data)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a platform that cannot open folders: the rename is still atomic, only less durable
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


STAGED_GLOB = ".*.tmp-*"   # what _staged's temporary names look like (rebuild_index removes stale ones)


def _staged(path: Path, write) -> Path:
    """Writes ``path``'s content to a temporary name beside it and fsyncs it; the caller renames it into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


# a record must have these columns to be counted (older schemas are migrated on read; these were always there)
_RECORD_CORE = ("run_id", "method", "benchmark", "metric", "value", "split")


def record_problem(path: Path) -> str | None:
    """None when ``path`` is a readable record (parquet footer and schema); else why it is not: "missing" or one
    line naming the damage. Reads the footer only, not the data."""
    if not path.exists():
        return "missing"
    try:
        names = set(pq.read_schema(path).names)
    except Exception as e:
        text = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]
        return f"unreadable ({text[:80]})"
    lacking = [c for c in _RECORD_CORE if c not in names]
    return f"unreadable (no column {', '.join(lacking)})" if lacking else None


def error_chain(e: BaseException | None) -> Iterator[BaseException]:
    """``e`` and its causes and contexts, each once."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def connection_lost(e: BaseException) -> BaseException | None:
    """The database error behind ``e`` when it says that the database could not be reached or the connection
    broke (server down, network cut), else None: a bug in a query is not a lost database."""
    for x in error_chain(e):
        if isinstance(x, (sa.exc.OperationalError, sa.exc.InterfaceError)) or getattr(x, "connection_invalidated", False):
            return x
    return None


def open_error(url: str, e: BaseException) -> str:
    """One line for an index that cannot be opened; a damaged SQLite file gets the command that rebuilds it."""
    text = f"cannot open the store index {mask_url(url)}: {db_error(e, url)}"
    if url.startswith("sqlite") and isinstance(e, sa.exc.DatabaseError) and "not a database" in str(e):
        text += ("; the records beside it are the truth: `python -m bench store rebuild --results <folder>` "
                 "moves the damaged file aside and rebuilds the index from them")
    return text


def _read_only_engine(url: str) -> sa.Engine | None:
    """An engine that cannot write: SQLite opened with mode=ro (None when the file does not exist: nothing was
    indexed yet); any other database as given, for reads only."""
    if not url.startswith("sqlite"):
        return engine_for(url)
    path = make_url(url).database
    if not path or not Path(path).exists():
        return None
    return sa.create_engine(f"sqlite:///file:{Path(path).resolve()}?mode=ro&uri=true")


def index_url_for(root: str | os.PathLike, index_url: str | None = None) -> str:
    """``index_url``, or the default index of the results folder ``root``: SQLite in ``<root>/index.sqlite``."""
    return index_url or f"sqlite:///{(Path(root) / 'index.sqlite').resolve()}"


class ResultStore:
    def __init__(self, root: str | os.PathLike, index_url: str | None = None, claim_timeout_s: float | None = None,
                 heartbeat_s: float | None = None, read_only: bool = False):
        """``read_only``: for readers (the report, ``bench ls runs``): creates no folder, no index file and no table;
        an index that does not exist yet reads as empty; every write raises BenchError."""
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.read_only = read_only
        if read_only:
            if not self.root.is_dir():
                raise BenchError(f"no results folder at {self.root} (give --results or set MMRL_RESULTS)")
        else:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.index_url = index_url_for(self.root, index_url)
        self.heartbeat_s = float(heartbeat_s if heartbeat_s is not None else HEARTBEAT_S)
        self.claim_timeout_s = float(claim_timeout_s if claim_timeout_s is not None else CLAIM_TIMEOUT_S)
        if not (self.heartbeat_s > 0 and self.claim_timeout_s >= 2 * self.heartbeat_s):
            raise BenchError(f"the claim timeout ({self.claim_timeout_s:g} s) must be at least twice the heartbeat "
                             f"interval ({self.heartbeat_s:g} s), which must be positive")
        if read_only:
            self.engine = _read_only_engine(self.index_url)
            return
        self.engine = engine_for(self.index_url)  # BenchError for a URL without its driver
        try:
            with self.engine.begin() as c:
                if self.engine.dialect.name == "postgresql":
                    # two drivers creating the tables at the same moment collide in PostgreSQL's catalog
                    c.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
                _meta.create_all(c)
        except Exception as e:  # the raw message may echo the URL: never let the password through
            raise BenchError(open_error(self.index_url, e)) from None

    def handle(self) -> dict:
        """Keyword arguments that open this same store in another process (a Ray worker on another node)."""
        return {"root": str(self.root.resolve()), "index_url": self.index_url, "claim_timeout_s": self.claim_timeout_s,
                "heartbeat_s": self.heartbeat_s, "read_only": self.read_only}

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r}, index={mask_url(self.index_url)!r})"

    # --- paths -------------------------------------------------------------------------------------------
    def record_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.parquet"

    def spec_path(self, run_id: str) -> Path:
        return self.runs_dir / f"{run_id}.json"

    def checkpoint_dir(self, run_id: str) -> Path:
        return self.root / "checkpoints" / run_id

    # --- index -------------------------------------------------------------------------------------------
    def status(self, run_id: str) -> str | None:
        """done (a readable record), corrupt (a record file that cannot be read: it is trained again), else the
        index's status, None when the run is unknown."""
        problem = record_problem(self.record_path(run_id))
        if problem is None:
            return "done"
        if problem != "missing":
            return "corrupt"
        if self.engine is None:
            return None
        with self.engine.connect() as c:
            row = c.execute(sa.select(RUNS.c.status).where(RUNS.c.run_id == run_id)).first()
        # "done" in the index without a readable record is not done: the index lags behind the records, never
        # ahead of them, unless something lost the file
        return None if row is None or row[0] == "done" else row[0]

    def index_row(self, run_id: str) -> dict | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(RUNS).where(RUNS.c.run_id == run_id)).mappings().first()
        return dict(row) if row else None

    def is_done(self, run_id: str) -> bool:
        """Done means a readable record, not a file that exists: a torn record is trained again."""
        return record_problem(self.record_path(run_id)) is None

    def record_problem(self, run_id: str) -> str | None:
        return record_problem(self.record_path(run_id))

    def quarantine(self, run_id: str) -> Path | None:
        """Moves an unreadable record aside (``<run_id>.parquet.corrupt-<time>``, kept for inspection) before the
        run is trained again; returns its new path, None when there was nothing to move."""
        path = self.record_path(run_id)
        if record_problem(path) in (None, "missing"):
            return None
        dest = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        os.replace(path, dest)
        return dest

    def claim(self, run_id: str, meta: dict | None = None, force: bool = False) -> bool:
        """Take the run for this process. False if it is done (unless ``force``) or another live process has it."""
        self._writable()
        if self.is_done(run_id) and not force:
            return False
        values = {"status": "claimed", "owner": owner_id(), "updated_at": time.time(), "error": None, **(meta or {})}
        try:
            with self.engine.begin() as c:
                c.execute(sa.insert(RUNS).values(run_id=run_id, **values))
            return True
        except sa.exc.IntegrityError:
            pass  # the row exists: take it over below if its claim is stale
        with self.engine.begin() as c:
            row = c.execute(sa.select(RUNS.c.status, RUNS.c.owner, RUNS.c.updated_at)
                            .where(RUNS.c.run_id == run_id)).first()
            if row is None:  # released in between
                return self.claim(run_id, meta, force)
            status, owner, updated_at = row
            takeable = (
                status in RECLAIMABLE
                or (status == "done" and (force or not self.is_done(run_id)))
                or (status in HELD and self.claim_is_stale(owner, updated_at))
            )
            if not takeable:
                return False
            # compare-and-swap on everything read: a heartbeat or another taker in between makes it miss
            res = c.execute(
                sa.update(RUNS)
                .where(RUNS.c.run_id == run_id, RUNS.c.status == status, RUNS.c.owner == owner,
                       RUNS.c.updated_at == updated_at)
                .values(**values)
            )
            return res.rowcount == 1

    def claim_is_stale(self, owner: str | None, updated_at: float | None) -> bool:
        if updated_at is None or time.time() - float(updated_at) > self.claim_timeout_s:
            return True
        return not _owner_alive(owner)

    def held_by_other(self, run_id: str) -> str | None:
        """The owner of a live claim on the run by another process, else None (free, done, failed or stale)."""
        row = self.index_row(run_id)
        if row and row["status"] in HELD and row["owner"] != owner_id() \
                and not self.claim_is_stale(row["owner"], row["updated_at"]):
            return row["owner"]
        return None

    def touch(self, run_id: str) -> bool:
        """One heartbeat of this process's claim; False when the claim is no longer ours (taken over)."""
        with self.engine.begin() as c:
            res = c.execute(sa.update(RUNS)
                            .where(RUNS.c.run_id == run_id, RUNS.c.owner == owner_id(), RUNS.c.status.in_(HELD))
                            .values(updated_at=time.time()))
        return res.rowcount == 1

    def heartbeat(self, run_id: str) -> "Heartbeat":
        return Heartbeat(self, f"run {run_id}", lambda: self.touch(run_id))

    # --- drivers ---------------------------------------------------------------------------------------------
    def _touch_driver(self) -> bool:
        me, now = owner_id(), time.time()
        with self.engine.begin() as c:
            if c.execute(sa.update(DRIVERS).where(DRIVERS.c.owner == me).values(updated_at=now)).rowcount == 0:
                c.execute(sa.insert(DRIVERS).values(owner=me, started_at=now, updated_at=now))
        return True

    def driver_heartbeat(self) -> "Heartbeat":
        """Registers this process as a live sweep driver for as long as the ``with`` block runs."""
        self._touch_driver()
        return Heartbeat(self, "driver", self._touch_driver, on_exit=self._drop_driver)

    def _drop_driver(self) -> None:
        with self.engine.begin() as c:
            c.execute(sa.delete(DRIVERS).where(DRIVERS.c.owner == owner_id()))

    def live_drivers(self) -> list[str]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(DRIVERS.c.owner, DRIVERS.c.updated_at)).all()
        return [o for o, t in rows if not self.claim_is_stale(o, t)]

    def driver_alive(self, owner: str | None) -> bool:
        if owner == owner_id():
            return True
        with self.engine.connect() as c:
            row = c.execute(sa.select(DRIVERS.c.updated_at).where(DRIVERS.c.owner == owner)).first()
        return row is not None and not self.claim_is_stale(owner, row[0])

    def fail_if_stale(self, run_id: str, error: str) -> bool:
        """Mark a run failed only when its claim is stale: a driver that lost a worker must not overwrite a claim
        that another driver's live process holds."""
        with self.engine.begin() as c:
            row = c.execute(sa.select(RUNS.c.status, RUNS.c.owner, RUNS.c.updated_at)
                            .where(RUNS.c.run_id == run_id)).first()
            if row is None or row[0] not in HELD or not self.claim_is_stale(row[1], row[2]):
                return False
            res = c.execute(sa.update(RUNS).where(RUNS.c.run_id == run_id, RUNS.c.owner == row[1],
                                                  RUNS.c.updated_at == row[2])
                            .values(status="failed", error=error, updated_at=time.time()))
            return res.rowcount == 1

    def owns(self, run_id: str, owner: str | None = None) -> bool:
        """Whether ``owner`` (default: this process) still holds the run's claim."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(RUNS.c.owner, RUNS.c.status).where(RUNS.c.run_id == run_id)).first()
        return row is not None and row[0] == (owner or owner_id()) and row[1] in HELD

    def mark(self, run_id: str, status: str, error: str | None = None, owner: str | None = None) -> bool:
        """Set the status of a run that ``owner`` (default: this process) holds: a compare-and-swap on (run_id,
        owner, held), so a process whose claim was taken over changes nothing. True when it was written."""
        if status not in STATUSES:
            raise ValueError(f"status {status!r} not in {STATUSES}")
        self._writable()
        with self.engine.begin() as c:
            res = c.execute(sa.update(RUNS)
                            .where(RUNS.c.run_id == run_id, RUNS.c.owner == (owner or owner_id()),
                                   RUNS.c.status.in_(HELD))
                            .values(status=status, error=error, updated_at=time.time()))
        return res.rowcount == 1

    def holder(self, run_id: str) -> str:
        row = self.index_row(run_id) or {}
        return f"{row.get('owner') or 'nobody'} ({row.get('status') or 'no index row'})"

    def _writable(self) -> None:
        if self.read_only:
            raise BenchError(f"{self!r} was opened read-only")

    def release(self, run_id: str) -> None:
        """Give a claim back (e.g. interrupted by the user) without marking the run failed."""
        with self.engine.begin() as c:
            c.execute(sa.delete(RUNS).where(RUNS.c.run_id == run_id, RUNS.c.owner == owner_id(),
                                            RUNS.c.status.in_(HELD)))

    def index_frame(self) -> pd.DataFrame:
        if self.engine is None or (self.read_only and not sa.inspect(self.engine).has_table("runs")):
            return pd.DataFrame(columns=[c.name for c in RUNS.columns])  # a read-only store with no index yet
        with self.engine.connect() as c:
            return pd.read_sql(sa.select(RUNS), c)

    # --- records -----------------------------------------------------------------------------------------
    def put(self, run_id: str, spec: dict, rows: pd.DataFrame, owner: str | None = None) -> Path:
        """Store a finished run: the spec and the record are written and fsynced under temporary names, then, while
        the index row is locked by a compare-and-swap on (run_id, ``owner``), renamed into place, the folder
        fsynced and the row marked done. A run held by another owner raises :class:`ClaimLost` and writes
        nothing; a run nobody holds (no index row: a rebuilt index, a test) is inserted as done."""
        self._writable()
        owner = owner or owner_id()
        spec_path, path = self.spec_path(run_id), self.record_path(run_id)
        table = pa.Table.from_pandas(rows, schema=SCHEMA, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"mmrl_spec": json.dumps(spec).encode()})
        staged = [(_staged(spec_path, lambda p: p.write_text(json.dumps(spec, sort_keys=True, indent=2))), spec_path)]
        try:
            staged.append((_staged(path, lambda p: pq.write_table(table, p)), path))
            with self.engine.begin() as c:
                # the UPDATE locks the row (PostgreSQL) or the database (SQLite) until commit: no takeover can
                # slip in between the ownership check and the rename
                now = time.time()
                held = c.execute(sa.update(RUNS)
                                 .where(RUNS.c.run_id == run_id, RUNS.c.owner == owner, RUNS.c.status.in_(HELD))
                                 .values(updated_at=now)).rowcount == 1
                if not held:
                    row = c.execute(sa.select(RUNS.c.owner, RUNS.c.status).where(RUNS.c.run_id == run_id)).first()
                    if row is not None:
                        raise ClaimLost(f"run {run_id} is held by {row[0]} ({row[1]}), not by {owner}: "
                                        "this process's result is not stored")
                    c.execute(sa.insert(RUNS).values(run_id=run_id, status="running", owner=owner, updated_at=now,
                                                     **_meta_of(spec)))
                for tmp, final in staged:
                    os.replace(tmp, final)
                _fsync_dir(self.runs_dir)
                c.execute(sa.update(RUNS).where(RUNS.c.run_id == run_id)
                          .values(status="done", error=None, updated_at=time.time()))
        finally:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
        return path

    def get(self, run_id: str) -> pd.DataFrame | None:
        path = self.record_path(run_id)
        if not path.exists():
            return None
        return migrate(pq.read_table(path).to_pandas())

    def get_spec(self, run_id: str) -> dict | None:
        path = self.spec_path(run_id)
        return json.loads(path.read_text()) if path.exists() else None

    def settle(self, run_ids) -> list[str]:
        """Index rows that lag behind their records: a run with a readable record whose row does not say done (the
        process died, or lost the database, between the rename and the commit in :meth:`put`) is marked done,
        unless a live claim holds it (a forced retraining). Returns the run_ids settled. Only the rows that do not
        say done have their records read: normally none, where reading every footer first cost a sweep of
        thousands of cached runs a read per run."""
        self._writable()
        ids = list(run_ids)
        settled = []
        for i in range(0, len(ids), 500):  # bounded IN lists
            chunk = ids[i:i + 500]
            with self.engine.begin() as c:
                rows = c.execute(sa.select(RUNS.c.run_id, RUNS.c.status, RUNS.c.owner, RUNS.c.updated_at)
                                 .where(RUNS.c.run_id.in_(chunk), RUNS.c.status != "done")).all()
                for rid, status, owner, updated_at in rows:
                    if (status in HELD and not self.claim_is_stale(owner, updated_at)) or not self.is_done(rid):
                        continue
                    c.execute(sa.update(RUNS).where(RUNS.c.run_id == rid, RUNS.c.status == status)
                              .values(status="done", error=None, updated_at=time.time()))
                    settled.append(rid)
        return settled

    def rebuild_index(self) -> dict[str, list[str]]:
        """Make the index agree with the records, which are the truth: every readable record becomes a done row
        (its spec gives method, benchmark, ratio, seed, suite); a done row without a readable record is deleted,
        so the run counts as not done and is trained again; claims in flight are left to their heartbeats (an
        empty, rebuilt index has none: those runs are not done). The temporary files of writers killed before
        their rename (:func:`_staged`) are deleted once older than the claim timeout: a live writer renames its
        files seconds after writing them, and one that stalled that long has lost its claim, so the files could
        never be renamed into place. Returns {"done": [...], "dropped": [...], "unreadable": [...]} run_ids and
        "removed": the temporary file names deleted."""
        self._writable()
        out: dict[str, list[str]] = {"done": [], "dropped": [], "unreadable": [], "removed": []}
        stale_before = time.time() - self.claim_timeout_s
        for tmp in sorted(self.runs_dir.glob(STAGED_GLOB)):
            try:
                if tmp.stat().st_mtime < stale_before:
                    tmp.unlink()
                    out["removed"].append(tmp.name)
            except FileNotFoundError:   # its writer finished (renamed or cleaned it) meanwhile
                pass
        readable = {}
        for path in sorted(self.runs_dir.glob("*.parquet")):
            rid = path.name[: -len(".parquet")]
            if record_problem(path) is None:
                readable[rid] = path
            else:
                out["unreadable"].append(rid)
        with self.engine.begin() as c:
            rows = {r.run_id: r for r in c.execute(sa.select(RUNS.c.run_id, RUNS.c.status))}
            for rid, row in rows.items():
                if row.status == "done" and rid not in readable:
                    c.execute(sa.delete(RUNS).where(RUNS.c.run_id == rid))
                    out["dropped"].append(rid)
            now = time.time()
            for rid, path in readable.items():
                meta = _meta_of(self._spec_or_record(rid, path))
                values = {"status": "done", "owner": None, "error": None, "updated_at": now, **meta}
                if rid in rows:
                    c.execute(sa.update(RUNS).where(RUNS.c.run_id == rid).values(**values))
                else:
                    c.execute(sa.insert(RUNS).values(run_id=rid, **values))
                out["done"].append(rid)
        return out

    def _spec_or_record(self, run_id: str, path: Path) -> dict:
        try:
            spec = self.get_spec(run_id)
        except (OSError, ValueError):
            spec = None
        if spec:
            return spec
        first = pq.read_table(path, columns=["method", "benchmark", "obs_ratio", "seed", "suite"]).slice(0, 1).to_pylist()
        r = first[0] if first else {}
        return {"method": {"name": r.get("method")}, "benchmark": {"name": r.get("benchmark")},
                "obs_ratio": r.get("obs_ratio"), "seed": r.get("seed"), "suite": r.get("suite")}

    def iter_records(self) -> Iterator[pd.DataFrame]:
        """Every readable record; an unreadable one is reported on the log and skipped."""
        for path in sorted(self.runs_dir.glob("*.parquet")):
            try:
                yield migrate(pq.read_table(path).to_pandas())
            except Exception as e:
                log.warning("skipping unreadable record %s: %s", path.name, str(e).splitlines()[0] if str(e) else type(e).__name__)

    def load(self) -> pd.DataFrame:
        frames = list(self.iter_records())
        if not frames:
            return pd.DataFrame(columns=SCHEMA.names)
        return pd.concat(frames, ignore_index=True)


def _meta_of(spec: dict) -> dict:
    """The index columns that place a run in a table, from its spec."""
    return {"method": (spec.get("method") or {}).get("name"), "benchmark": (spec.get("benchmark") or {}).get("name"),
            "obs_ratio": spec.get("obs_ratio"), "seed": spec.get("seed"), "suite": spec.get("suite")}


def run_listing(store: ResultStore) -> list[dict]:
    """Every run the store knows, from its records (checked readable) and its index: one dict each with run_id,
    method, benchmark, obs_ratio, seed, suite, status and detail. A torn or unreadable record is listed as
    ``corrupt``, with why, never left out."""
    index = store.index_frame().set_index("run_id", drop=False)
    ids = sorted(set(index.index) | {p.name[: -len(".parquet")] for p in store.runs_dir.glob("*.parquet")})
    out = []
    for rid in ids:
        row = index.loc[rid].to_dict() if rid in index.index else {}
        problem = record_problem(store.record_path(rid))
        status, detail = row.get("status") or "unindexed", ""
        if problem is None:
            status = "done"
        elif problem != "missing":
            status, detail = "corrupt", f"record {problem}; a sweep trains it again"
        elif status == "done":
            status, detail = "lost", "indexed done but the record is missing; a sweep trains it again"
        elif status in HELD:
            stale = store.claim_is_stale(row.get("owner"), row.get("updated_at"))
            detail = f"{row.get('owner')}{' (stale: will be taken over)' if stale else ''}"
        elif row.get("error"):
            detail = str(row["error"]).strip().splitlines()[0][:120]
        meta = row
        if not row.get("method"):   # a claim made without meta, or a record the index does not know
            meta = _meta_of((store.get_spec(rid) if store.spec_path(rid).exists() else None) or {})
        out.append({"run_id": rid, **{k: meta.get(k) for k in ("method", "benchmark", "obs_ratio", "seed", "suite")},
                    "status": status, "detail": detail})
    return out


def rebuild(root: str | os.PathLike, index_url: str | None = None) -> tuple["ResultStore", dict, Path | None]:
    """``bench store rebuild``: a SQLite index that cannot be opened (damaged, or not a database) is moved aside to
    ``index.sqlite.damaged-<time>`` and made anew; then :meth:`ResultStore.rebuild_index`. Returns the store, what
    changed and where the damaged file went (None if it was readable)."""
    root = Path(root)
    if not root.is_dir():
        raise BenchError(f"no results folder at {root}")
    moved = None
    url = index_url_for(root, index_url)
    try:
        store = ResultStore(root, index_url)
        with store.engine.connect() as c:  # a damaged page may only show on a read
            c.execute(sa.select(sa.func.count()).select_from(RUNS)).scalar()
    except (BenchError, sa.exc.DatabaseError):
        path = make_url(url).database if url.startswith("sqlite") else None
        if not path or not Path(path).exists():
            raise
        moved = Path(path).with_name(f"{Path(path).name}.damaged-{int(time.time())}")
        os.replace(path, moved)
        for side in ("-journal", "-wal", "-shm"):  # a stale journal would be applied to the new file
            Path(path + side).unlink(missing_ok=True)
        store = ResultStore(root, index_url)
    return store, store.rebuild_index(), moved


class Heartbeat:
    """Calls ``touch`` every ``store.heartbeat_s`` from a daemon thread while a ``with`` block runs (a run's claim,
    a driver's registration). A failed beat is logged and retried at the next one; ``touch`` returning False (the
    claim was taken over: this process stalled past the timeout) sets ``lost`` and stops beating."""

    def __init__(self, store: ResultStore, what: str, touch, on_exit=None):
        self.store, self.what, self.touch, self.on_exit = store, what, touch, on_exit
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {what}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.store.heartbeat_s + 15)
        if self.on_exit is not None:
            try:
                self.on_exit()
            except Exception as e:  # leaving a row behind is harmless: it goes stale
                log.warning("%s: could not unregister: %s", self.what, db_error(e, self.store.index_url))

    def _beat(self) -> None:
        while not self._stop.wait(self.store.heartbeat_s):
            try:
                if not self.touch():
                    self.lost = True
                    log.info("%s: this process's claim was taken over (no heartbeat for %g s); another process "
                                "is training it", self.what, self.store.claim_timeout_s)
                    return
            except Exception as e:  # a network blip must not kill the run; the next beat retries
                log.warning("%s: heartbeat failed: %s", self.what, db_error(e, self.store.index_url))
