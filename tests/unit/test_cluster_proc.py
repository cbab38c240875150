"""`NodeProc.running`: a node's process is known by its pid and start time, from its first moment.

The command line read from /proc is empty while a process is inside an exec (as a node started
through ``ip netns exec`` is right after the spawn): a check by command line said such a node had
died, and a test waiting for it gave up at once (a clean-clone run's NAT test, stop 45).
"""

from __future__ import annotations

import subprocess
import sys

from borgusb.cluster import NodeProc

SLEEPER = [sys.executable, "-c", "import time; time.sleep(30)"]


def test_a_node_is_running_through_the_exec_that_follows_its_spawn() -> None:
    for _ in range(20):
        proc = subprocess.Popen(["env", *SLEEPER])  # env execs the sleeper: the window above
        try:
            node = NodeProc.spawned("127.0.0.1", proc.pid, "/dev/null")
            assert node.started > 0
            assert all(node.running() for _ in range(200))
        finally:
            proc.kill()
            proc.wait()
        assert not node.running()


def test_a_pid_held_by_another_process_is_not_the_node() -> None:
    proc = subprocess.Popen(SLEEPER)
    try:
        node = NodeProc.spawned("127.0.0.1", proc.pid, "/dev/null")
        assert node.running()
        node.started += 1  # as a process that got the pid after the node's ended
        assert not node.running()
    finally:
        proc.kill()
        proc.wait()
