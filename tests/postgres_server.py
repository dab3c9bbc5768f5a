"""A throwaway PostgreSQL server for the tests that need one, from the installed Debian binaries
(``/usr/lib/postgresql/*/bin``): ``initdb`` into a temporary folder, ``pg_ctl start`` on a free loopback port with
password authentication, stopped and deleted when the test process exits.

One server per test process, started on first use; a test that stops the server (an outage) gets one of its own
(``restartable_pg``). ``initdb`` refuses to run as root, so as root the server runs as
the ``postgres`` user that the Debian package creates. Where no server can be started the tests skip with the
reason, unless ``MMRL_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which turns that skip into a failure.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass

import pytest

USER, PASSWORD = "bench", "s3cret-pw"


@dataclass
class PgServer:
    port: int
    datadir: str
    bindir: str
    run_as: str | None

    def url(self, db: str = "postgres", user: str = USER, password: str = PASSWORD) -> str:
        return f"postgresql+psycopg://{user}:{password}@127.0.0.1:{self.port}/{db}"

    def create_database(self) -> str:
        """A new empty database (one per test keeps tests independent); returns its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        _run(self, [os.path.join(self.bindir, "pg_ctl"), "stop", "-D", self.datadir, "-m", "immediate", "-w"],
             check=False)
        shutil.rmtree(os.path.dirname(self.datadir), ignore_errors=True)


_server: PgServer | None = None
_error: str | None = None


def _bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    path = shutil.which("initdb")
    return os.path.dirname(path) if path else None


def _run(server_or_user, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    user = server_or_user.run_as if isinstance(server_or_user, PgServer) else server_or_user
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if check and out.returncode != 0:
        raise RuntimeError(f"{os.path.basename(cmd[0] if not user else cmd[4])} failed: "
                           f"{(out.stderr or out.stdout).strip().splitlines()[-1:] or out.returncode}")
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init() -> tuple[str, str, str | None]:
    """``initdb`` of a new cluster in a temporary folder; returns (bindir, datadir, the user the server runs as)."""
    bindir = _bindir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server binaries (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise RuntimeError("psycopg is not installed (pip install 'psycopg[binary]')") from None
    run_as = None
    if os.geteuid() == 0:
        try:
            run_as = pwd.getpwnam("postgres").pw_name
        except KeyError:
            raise RuntimeError("running as root and there is no 'postgres' user for initdb") from None
    top = tempfile.mkdtemp(prefix="mmrl-pg-")
    datadir, pwfile = os.path.join(top, "data"), os.path.join(top, "pw")
    with open(pwfile, "w") as f:
        f.write(PASSWORD + "\n")
    if run_as:
        ent = pwd.getpwnam(run_as)
        for p in (top, pwfile):
            os.chown(p, ent.pw_uid, ent.pw_gid)
    try:
        _run(run_as, [os.path.join(bindir, "initdb"), "-D", datadir, "-U", USER, f"--pwfile={pwfile}",
                      "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"])
    except Exception:
        shutil.rmtree(top, ignore_errors=True)
        raise
    return bindir, datadir, run_as


def _pg_ctl_start(server: PgServer) -> subprocess.CompletedProcess:
    # a test server: durability off for speed, enough connections for several drivers and their Ray workers
    opts = ("-c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=300 -c shared_buffers=32MB")
    return _run(server, [os.path.join(server.bindir, "pg_ctl"), "start", "-D", server.datadir, "-w", "-t", "60",
                         "-l", os.path.join(os.path.dirname(server.datadir), "log"),
                         "-o", f"{opts} -c port={server.port}"], check=False)


def _start(cls: type[PgServer] = PgServer) -> PgServer:
    bindir, datadir, run_as = _init()
    last = None
    for _ in range(3):  # the free port can be taken between choosing it and binding it
        server = cls(_free_port(), datadir, bindir, run_as)
        out = _pg_ctl_start(server)
        if out.returncode == 0:
            atexit.register(server.destroy if isinstance(server, RestartableServer) else server.stop)
            return server
        last = (out.stderr or out.stdout).strip()
    shutil.rmtree(os.path.dirname(datadir), ignore_errors=True)
    raise RuntimeError(f"pg_ctl start failed: {last}")


class RestartableServer(PgServer):
    """A server of its own (own data folder and port) that a test may stop, as an outage, and start again with its
    data intact; the shared server of the other tests is never touched."""

    def stop(self) -> None:
        """A fast shutdown, as an administrator's or a crashed host's would look to clients: sessions are cut,
        new connections refused; the data stays."""
        _run(self, [os.path.join(self.bindir, "pg_ctl"), "stop", "-D", self.datadir, "-m", "fast", "-w"])

    def start(self) -> None:
        """Back on the same port with the same data."""
        out = _pg_ctl_start(self)
        if out.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {(out.stderr or out.stdout).strip()}")

    def destroy(self) -> None:
        PgServer.stop(self)


def get_server() -> PgServer:
    """The test process's server; skips the calling test (or fails it under MMRL_REQUIRE_POSTGRES=1) when no
    server can be started."""
    global _server, _error
    if _server is None and _error is None:
        try:
            _server = _start()
        except Exception as e:  # noqa: BLE001 - any reason is a reason to skip, and it is shown
            _error = str(e)
    if _server is None:
        _unavailable(_error)
    return _server


def _unavailable(why: str | None) -> None:
    msg = f"no PostgreSQL server for this test: {why}"
    if os.environ.get("MMRL_REQUIRE_POSTGRES") == "1":
        pytest.fail(msg + " (MMRL_REQUIRE_POSTGRES=1: CI must not skip it)", pytrace=False)
    pytest.skip(msg)


@pytest.fixture
def pg_url() -> str:
    """URL of a fresh database on the test server."""
    return get_server().create_database()


@pytest.fixture
def restartable_pg():
    """A dedicated server (:class:`RestartableServer`) for one test, with one database in it: yields (server,
    URL); deleted after the test. Skips, or fails under MMRL_REQUIRE_POSTGRES=1, as ``pg_url`` does."""
    try:
        server = _start(RestartableServer)
    except Exception as e:  # noqa: BLE001 - as in get_server
        _unavailable(str(e))
    try:
        yield server, server.create_database()
    finally:
        server.destroy()
