"""Starting and joining Ray safely on small machines (docs/distributed.md)."""

from __future__ import annotations

import os
import socket

from bench.compat import actor_placement_group_ids
from bench.errors import BenchError
from bench.ray_local import start_local_ray, stop_local_ray


def check_address(address: str) -> None:
    """Fail fast on an unreachable cluster: ray.init would otherwise hang ~14 minutes before failing."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise BenchError(f"--address must be HOST:PORT of a Ray head node (e.g. 127.0.0.1:6379), got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            pass
    except OSError as e:
        raise BenchError(f"cannot reach a Ray cluster at {address}: {e.strerror or e}") from None


def start_ray(address: str | None, num_cpus: int | None) -> str | None:
    """Join ``address`` or start a local instance; returns the temp folder of a Ray this process started (and must
    stop), else None."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if ray.is_initialized():
        return None
    if address:
        check_address(address)
        for k, v in {"RAY_NUM_REDIS_GET_RETRIES": "1", "RAY_py_gcs_connect_timeout_s": "2",
                     "RAY_gcs_rpc_server_connect_timeout_s": "1"}.items():
            os.environ.setdefault(k, v)
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except ConnectionError as e:
            raise BenchError(f"cannot join the Ray cluster at {address}: {str(e).splitlines()[0]}") from None
        return None
    return start_local_ray(num_cpus or os.cpu_count() or 1)


def stop_ray(started: str | None) -> None:
    stop_local_ray(started)


def _orphan_placement_groups() -> set[str]:
    """This job's Ray Train placement groups (several bundles: Tune's own trial groups have one) in which no actor
    lives."""
    import ray

    job = ray.get_runtime_context().get_job_id()
    used = actor_placement_group_ids()
    return {pg for pg, info in ray.util.placement_group_table().items()
            if info.get("state") == "CREATED" and pg.endswith(job) and len(info.get("bundles") or {}) > 1
            and pg not in used}


class PlacementGroupJanitor:
    """Frees the CPUs of multi-worker trials that Tune stopped (ASHA) while this driver tunes.

    Tune ends a stopped trial by killing its process, and with it the trial's Ray Train controller; Ray Train's own
    cleaner then asks the dashboard whether the controller is alive, and without a dashboard (a local Ray here, a
    cluster started without one) it never frees the trial's placement group: the CPUs stay held and the next
    trials wait forever. The janitor removes this job's Ray Train placement groups that have held no actor at two
    looks ``interval_s`` apart (a group being set up holds its workers within seconds). It reads the actors through
    Ray's private GCS accessor (:func:`bench.compat.actor_placement_group_ids`); if that fails (another Ray
    version), it says so once and does nothing."""

    def __init__(self, interval_s: float = 15.0):
        import threading

        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="placement-group-janitor", daemon=True)

    def __enter__(self) -> "PlacementGroupJanitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.sweep(settled=True)

    def sweep(self, settled: bool = False, seen: set[str] | None = None) -> set[str]:
        """Removes the orphans also in ``seen`` (all of them when ``settled``: no trial of this job runs);
        returns the orphans found now."""
        import logging

        from ray import PlacementGroupID
        from ray.util.placement_group import PlacementGroup, remove_placement_group

        try:
            orphans = _orphan_placement_groups()
            for pg in orphans if settled else orphans & (seen or set()):
                remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(pg))))
                logging.getLogger(__name__).info("freed placement group %s of a stopped multi-worker trial", pg)
            return orphans
        except Exception as e:  # noqa: BLE001 - a janitor must never take the sweep down
            if not getattr(self, "_warned", False):
                self._warned = True
                logging.getLogger(__name__).warning(
                    "cannot look for the placement groups of stopped multi-worker trials (%s: %s); their CPUs may "
                    "stay held", type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            return set()

    def _run(self) -> None:
        seen: set[str] = set()
        while not self._stop.wait(self.interval_s):
            seen = self.sweep(seen=seen)
