"""The chaos harness itself: its faults act on node-to-node traffic only, and a process it
did not start is reported as a leak and still removed (a few seconds, no cells); the jitter
relay delays a node's streams in order and loses no byte."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from tests.chaos import jitter
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


ECHO = (
    "import socket, sys\n"
    "s = socket.create_server((sys.argv[1], int(sys.argv[2])))\n"
    "while True:\n"
    "    c = s.accept()[0]\n"
    "    while data := c.recv(65536):\n"
    "        c.sendall(data)\n"
    "    c.close()\n"
)
# one small round trip, then 2 MB echoed back: prints the round trip's seconds and whether the bytes came back intact
ROUND_TRIP = (
    "import os, socket, sys, threading, time\n"
    "c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)\n"
    "t = time.monotonic(); c.sendall(b'x'); assert c.recv(1) == b'x'; rtt = time.monotonic() - t\n"
    "data = os.urandom(2_000_000); back = bytearray()\n"
    "threading.Thread(target=c.sendall, args=(data,)).start()\n"
    "while len(back) < len(data):\n"
    "    back += c.recv(65536)\n"
    "print(rtt, bytes(back) == data)\n"
)


def round_trip(ns: str | None, ip: str) -> tuple[float, bool]:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + [sys.executable, "-c", ROUND_TRIP, ip, str(PORT)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout.split()
    return float(out[0]), out[1] == "True"


def test_delay_holds_a_nodes_streams_in_order_and_loses_nothing(chaos_net) -> None:
    net: ChaosNet = chaos_net(2)
    echo = subprocess.Popen(
        ["ip", "netns", "exec", node_ns(1), sys.executable, "-c", ECHO, node_ip(1), str(PORT)],
        stdin=subprocess.DEVNULL,
    )
    try:
        assert reaches(node_ns(0), node_ip(1))  # the echo server is up
        net.set_delay(150, 150)
        rtt, intact = round_trip(node_ns(0), node_ip(1))
        assert rtt >= 0.3 and intact, (rtt, intact)  # held 150 ms each way, every byte back in order
        relayed = net.delayed_connections(0)
        assert relayed == 1 and net.delayed_connections(1) == 0  # one connection opened, by node 1
        _, intact = round_trip(None, node_ip(1))  # the observer's own connections are not relayed
        assert intact and net.delayed_connections(0) == relayed and net.delayed_connections(1) == 0
    finally:
        echo.kill()
        echo.wait()
    assert not net.teardown()


def test_delay_line_never_reorders_and_stays_in_bounds() -> None:
    line = jitter.DelayLine(20, 250, random.Random(7))
    now, last = 0.0, 0.0
    for step in range(1000):
        now += random.Random(step).uniform(0, 0.05)
        at = line.release_at(now)
        assert at >= last and at >= now + 0.020
        assert at <= max(last, now + 0.250)
        last = at
    with pytest.raises(ValueError):
        jitter.DelayLine(30, 10, random.Random())
