"""Starting and joining Ray safely on small machines (RAY_DEEPSPEED.md)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

from bench.errors import BenchError


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
    # a short temp dir: Ray's unix sockets live under it and have a ~107-character path limit
    temp_dir = tempfile.mkdtemp(prefix="mmrl-ray-")
    ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False,
             configure_logging=False, _temp_dir=temp_dir, object_store_memory=256 * 2**20)
    return temp_dir


def stop_ray(started: str | None) -> None:
    import ray

    if started and ray.is_initialized():
        ray.shutdown()
        shutil.rmtree(started, ignore_errors=True)
