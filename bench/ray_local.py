"""A local Ray instance of this process: started under a short folder of its own, stopped with the folder removed,
and the folders of killed processes removed at the next start (docs/distributed.md).

Why a folder of our own: Ray's unix sockets live under its temporary folder and their paths are limited to about
107 characters, which Ray's default under a long ``$TMPDIR`` can exceed; a folder per instance is also removed
whole when the instance stops. A process killed with SIGKILL cannot remove it, so each folder holds a lock file,
locked (``flock``) by the process that started the instance for as long as it runs: the kernel releases the lock
when that process dies, however it dies. A later start removes every folder whose lock it can take and whose Ray
sockets nobody listens on (a Ray started by a killed process dies with it, so its sockets are dead too).
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from bench.compat import ray_temp_dir_kwargs

log = logging.getLogger(__name__)

PREFIX = "mmrl-ray-"
LOCK_NAME = "mmrl-owner.lock"
# a folder younger than this is never taken for stale: between mkdtemp and the flock of its new lock file another
# process could otherwise take the lock first (and Ray adds its session folder within seconds of the claim)
MIN_AGE_S = 60.0
_held: dict[str, int] = {}   # folder -> the open, locked descriptor of its lock file (closed when it is removed)


def claim_folder(base: str | os.PathLike | None = None) -> str:
    """A new ``mmrl-ray-*`` folder under ``base`` (default: the system's temporary folder), locked by this process
    until :func:`release_folder`."""
    folder = tempfile.mkdtemp(prefix=PREFIX, dir=base)
    fd = os.open(os.path.join(folder, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # new and ours: cannot be held by anyone else
    _held[folder] = fd
    return folder


def release_folder(folder: str | None) -> None:
    """Remove a folder of :func:`claim_folder` and drop its lock."""
    if not folder:
        return
    shutil.rmtree(folder, ignore_errors=True)
    fd = _held.pop(folder, None)
    if fd is not None:
        os.close(fd)


def _listening(folder: Path) -> bool:
    """Whether any Ray socket under ``folder`` accepts a connection (its instance is alive)."""
    for path in folder.glob("session_*/sockets/*"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            try:
                s.connect(str(path))
                return True
            except OSError:
                continue
    return False


def _owner_gone(folder: Path) -> bool:
    """Whether the process that claimed ``folder`` has ended: its lock can be taken (and is released at once).
    A folder without a lock file (made by something else) is never taken for stale."""
    if str(folder) in _held:
        return False
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)   # closing drops a lock taken here


def remove_stale_folders(base: str | os.PathLike | None = None, min_age_s: float = MIN_AGE_S) -> list[str]:
    """Delete the ``mmrl-ray-*`` folders under ``base`` left by killed processes; returns their paths."""
    removed = []
    for folder in sorted(Path(base or tempfile.gettempdir()).glob(f"{PREFIX}*")):
        try:
            old = time.time() - folder.stat().st_mtime >= min_age_s
            if old and folder.is_dir() and _owner_gone(folder) and not _listening(folder):
                shutil.rmtree(folder)
                removed.append(str(folder))
        except OSError as e:   # another user's folder, or one being removed by its owner right now
            log.debug("left %s: %s", folder, e)
    if removed:
        log.info("removed %d Ray folders of killed processes", len(removed))
    return removed


def start_local_ray(num_cpus: int, object_store_mb: int = 256) -> str:
    """``ray.init`` of a local instance with ``num_cpus`` CPUs, no dashboard and its files in a folder of its own;
    returns the folder, for :func:`stop_local_ray`."""
    import ray

    remove_stale_folders()
    folder = claim_folder()
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 object_store_memory=object_store_mb * 2**20, **ray_temp_dir_kwargs(folder))
    except BaseException:
        release_folder(folder)
        raise
    return folder


def stop_local_ray(folder: str | None) -> None:
    """Stop the instance :func:`start_local_ray` started (``folder`` None: this process joined one; nothing)."""
    import ray

    if not folder:
        return
    if ray.is_initialized():
        ray.shutdown()
    release_folder(folder)
