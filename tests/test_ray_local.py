"""The local Ray folders of bench/ray_local.py: a killed process's folder is removed at the next start, a live
process's folder (this one's, another's, or one whose Ray still listens) and a folder made by something else are
kept."""

import os
import signal
import socket
import subprocess

from bench.ray_local import LOCK_NAME, claim_folder, release_folder, remove_stale_folders
from conftest import python

CLAIM_AND_WAIT = """
import sys, time
from bench.ray_local import claim_folder
print(claim_folder(sys.argv[1]), flush=True)
time.sleep(600)
"""


def _claimed_by_a_child(base) -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen([python(), "-c", CLAIM_AND_WAIT, str(base)], stdout=subprocess.PIPE, text=True)
    return child, child.stdout.readline().strip()


def test_a_killed_processs_folder_is_removed_and_live_ones_are_kept(tmp_path):
    killed, gone = _claimed_by_a_child(tmp_path)
    alive, kept = _claimed_by_a_child(tmp_path)
    try:
        mine = claim_folder(tmp_path)
        foreign = tmp_path / "mmrl-ray-made-by-a-test"   # no lock file: not ours to judge
        foreign.mkdir()
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
        assert remove_stale_folders(tmp_path, min_age_s=60) == []   # too young to be judged
        assert remove_stale_folders(tmp_path, min_age_s=0) == [gone]
        assert not os.path.exists(gone)
        assert all(os.path.isdir(f) for f in (kept, mine, foreign))
        release_folder(mine)
        assert not os.path.exists(mine)
    finally:
        for child in (killed, alive):
            if child.poll() is None:
                child.kill()
            child.wait()


def test_a_folder_whose_ray_still_listens_is_kept():
    import shutil
    import tempfile

    base = tempfile.mkdtemp(prefix="mmrl-t-")   # short: a unix socket's path has a ~107-character limit
    try:
        folder = os.path.join(base, "mmrl-ray-orphan")
        os.makedirs(os.path.join(folder, "session_1", "sockets"))
        open(os.path.join(folder, LOCK_NAME), "w").close()   # unlocked: its process is gone, its Ray is not
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(os.path.join(folder, "session_1", "sockets", "raylet"))
            listener.listen(1)
            assert remove_stale_folders(base, min_age_s=0) == []
        # the socket file stays behind, but nobody listens on it any more
        assert remove_stale_folders(base, min_age_s=0) == [folder]
    finally:
        shutil.rmtree(base, ignore_errors=True)
