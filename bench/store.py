"""ResultStore: one parquet file per finished run plus a SQL index of run status.

* ``<root>/runs/<run_id>.parquet`` (the record) and ``<root>/runs/<run_id>.json`` (its RunSpec) are written to a
  temporary name and renamed into place, so a reader never sees a half-written record. The parquet file is the
  truth of "done": the index can lag behind it after a crash, never ahead.
* The index (SQLite file ``<root>/index.sqlite`` by default, any SQLAlchemy URL such as PostgreSQL) holds one
  row per run with its status (claimed, running, done, failed, pruned), owner and error. Claims are
  compare-and-swap updates, so two processes never train the same run.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bench.records import SCHEMA, migrate

log = logging.getLogger(__name__)

STATUSES = ("claimed", "running", "done", "failed", "pruned")
RECLAIMABLE = ("failed", "pruned")

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
    sa.Column("owner", sa.String(128)),
    sa.Column("updated_at", sa.Float),
    sa.Column("error", sa.Text),
)


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


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str | None) -> bool:
    """False only when we can tell that the owner process is gone (same host, pid not running)."""
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True  # cannot tell across hosts; a heartbeat would (cluster stores)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class ResultStore:
    def __init__(self, root: str | os.PathLike, index_url: str | None = None):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.index_url = index_url or f"sqlite:///{(self.root / 'index.sqlite').resolve()}"
        connect_args = {"timeout": 60} if self.index_url.startswith("sqlite") else {}
        try:
            self.engine = sa.create_engine(self.index_url, connect_args=connect_args, future=True)
            _meta.create_all(self.engine)
        except Exception as e:  # the raw message may echo the URL: never let the password through
            raise RuntimeError(f"cannot open the store index {mask_url(self.index_url)}: {type(e).__name__}") from None

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
        if self.record_path(run_id).exists():
            return "done"
        with self.engine.connect() as c:
            row = c.execute(sa.select(RUNS.c.status).where(RUNS.c.run_id == run_id)).first()
        return row[0] if row else None

    def index_row(self, run_id: str) -> dict | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(RUNS).where(RUNS.c.run_id == run_id)).mappings().first()
        return dict(row) if row else None

    def is_done(self, run_id: str) -> bool:
        return self.record_path(run_id).exists()

    def claim(self, run_id: str, meta: dict | None = None, force: bool = False) -> bool:
        """Take the run for this process. False if it is done (unless ``force``) or another live process has it."""
        if self.is_done(run_id) and not force:
            return False
        me, now = owner_id(), time.time()
        values = {"status": "claimed", "owner": me, "updated_at": now, "error": None, **(meta or {})}
        with self.engine.begin() as c:
            try:
                c.execute(sa.insert(RUNS).values(run_id=run_id, **values))
                return True
            except sa.exc.IntegrityError:
                pass
        with self.engine.begin() as c:
            row = c.execute(sa.select(RUNS.c.status, RUNS.c.owner).where(RUNS.c.run_id == run_id)).first()
            if row is None:
                return self.claim(run_id, meta, force)
            status, owner = row
            takeable = (
                status in RECLAIMABLE
                or (status == "done" and (force or not self.is_done(run_id)))
                or (status in ("claimed", "running") and not _owner_alive(owner))
            )
            if not takeable:
                return False
            res = c.execute(
                sa.update(RUNS)
                .where(RUNS.c.run_id == run_id, RUNS.c.status == status, RUNS.c.owner == owner)
                .values(**values)
            )
            return res.rowcount == 1

    def mark(self, run_id: str, status: str, error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"status {status!r} not in {STATUSES}")
        with self.engine.begin() as c:
            c.execute(sa.update(RUNS).where(RUNS.c.run_id == run_id)
                      .values(status=status, error=error, updated_at=time.time()))

    def release(self, run_id: str) -> None:
        """Give a claim back (e.g. interrupted by the user) without marking the run failed."""
        with self.engine.begin() as c:
            c.execute(sa.delete(RUNS).where(RUNS.c.run_id == run_id, RUNS.c.owner == owner_id(),
                                            RUNS.c.status.in_(("claimed", "running"))))

    def index_frame(self) -> pd.DataFrame:
        with self.engine.connect() as c:
            return pd.read_sql(sa.select(RUNS), c)

    # --- records -----------------------------------------------------------------------------------------
    def put(self, run_id: str, spec: dict, rows: pd.DataFrame, status: str = "done") -> Path:
        """Write the spec and the record atomically, then mark the index."""
        spec_path, path = self.spec_path(run_id), self.record_path(run_id)
        _atomic_write(spec_path, lambda p: p.write_text(json.dumps(spec, sort_keys=True, indent=2)))
        table = pa.Table.from_pandas(rows, schema=SCHEMA, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"mmrl_spec": json.dumps(spec).encode()})
        _atomic_write(path, lambda p: pq.write_table(table, p))
        self.mark(run_id, status)
        return path

    def get(self, run_id: str) -> pd.DataFrame | None:
        path = self.record_path(run_id)
        if not path.exists():
            return None
        return migrate(pq.read_table(path).to_pandas())

    def get_spec(self, run_id: str) -> dict | None:
        path = self.spec_path(run_id)
        return json.loads(path.read_text()) if path.exists() else None

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
