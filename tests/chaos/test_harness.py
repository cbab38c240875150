"""The chaos harness itself: its faults act on node-to-node traffic only, and a process it
did not start is reported as a leak and still removed (a few seconds, no cells)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.chaos.harness import ChaosNet, leaks, node_ip, node_ns, our_namespaces

pytestmark = pytest.mark.slow

PORT = 18080
LISTEN = (
    "import socket, sys\n"
    "s = socket.create_server((sys.argv[2], int(sys.argv[3])))\n"
    "while True:\n"
    "    s.accept()[0].close()\n"
)
CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5).close()"


def reaches(ns: str | None, ip: str) -> bool:
    """Whether a TCP connection from ns (None: the observer) to ip:PORT opens (with retries:
    the listener may still be starting, and a cut must hold for all of them)."""
    cmd = (["ip", "netns", "exec", ns] if ns else []) + [sys.executable, "-c", CONNECT, ip, str(PORT)]
    return any(subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0 for _ in range(3))


def test_cut_loss_and_leaks(chaos_net) -> None:
    net: ChaosNet = chaos_net(2)
    # a stray process the net does not track, named like a node's cell
    stray = subprocess.Popen(
        ["ip", "netns", "exec", node_ns(1), sys.executable, "-c", LISTEN, "borgusb", node_ip(1), str(PORT)],
        stdin=subprocess.DEVNULL,
    )
    try:
        assert reaches(node_ns(0), node_ip(1)) and reaches(None, node_ip(1))
        net.cut([0], [1])
        assert not reaches(node_ns(0), node_ip(1)) and reaches(None, node_ip(1))
        net.heal()
        assert reaches(node_ns(0), node_ip(1))
        net.set_loss(100)  # every packet a node sends to another node: none gets through
        assert not reaches(node_ns(0), node_ip(1)) and reaches(None, node_ip(1))
        net.set_loss(0)
        assert reaches(node_ns(0), node_ip(1))
        left = net.teardown()
        assert any(w.startswith("process ") for w in left), left  # reported ...
        assert stray.wait(timeout=10) is not None  # ... and killed
        assert not leaks() and not our_namespaces()
    finally:
        if stray.poll() is None:
            stray.kill()
        stray.wait()
