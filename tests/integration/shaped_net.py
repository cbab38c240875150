"""Holders behind real, rate-limited links, one network namespace each (for bench_dstream.py).

    root ns (the reader) ── ds-rd 10.99.0.100 ──┐
                                                │ ds-sw: bridge br0 (the network)
    ds-h1: eth0 10.99.0.2 ── 100 Mbit/s ────────┤
    ds-h2: eth0 10.99.0.3 ── 100 Mbit/s ────────┤
    ds-h3: eth0 10.99.0.4 ── 100 Mbit/s ────────┘

Each holder's link is limited both ways with ``tc tbf`` (this kernel has no ``netem``:
../shared/notes/machine-facts.md); `set_loss` adds random drops on every holder link with
nftables ``numgen random`` (both directions, in the holder's namespace). The reader's own
link is not limited: a person's bytes come from the whole network at once. Everything is
torn down on exit, also when the run fails. Needs root, ``ip``, ``tc`` and ``nft``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

SWITCH = "ds-sw"
NET = "10.99.0"
READER_IP = f"{NET}.100"
RATE = "100mbit"


def sh(*args: str, ns: str | None = None, check: bool = True, stdin: str | None = None) -> None:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, input=stdin)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")


def holder_ns(index: int) -> str:
    return f"ds-h{index + 1}"


def teardown(holders: int) -> None:
    for i in range(holders):
        sh("ip", "netns", "delete", holder_ns(i), check=False)
    sh("ip", "netns", "delete", SWITCH, check=False)
    sh("ip", "link", "delete", "ds-rd", check=False)


def _shape(dev: str, ns: str) -> None:
    sh("tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", RATE, "burst", "64kb", "latency", "50ms", ns=ns)


def set_loss(holders: int, percent: int, *, spare_handshakes: bool = False) -> None:
    """Drop `percent` % of packets at random in and out of every holder (0: no drops).

    `spare_handshakes`: TCP SYNs pass. A lost SYN costs a connection a whole second (the initial
    retransmission timeout), longer than a 40 MiB read on these links, so a test of *how* the reader
    spreads its work across holders spares them; the benchmark drops them like any packet."""
    spare = "tcp flags & syn == syn accept; " if spare_handshakes else ""
    for i in range(holders):
        ns = holder_ns(i)
        sh("nft", "delete", "table", "inet", "dsloss", ns=ns, check=False)
        if percent:
            rules = f"""
table inet dsloss {{
  chain in {{ type filter hook input priority 0; policy accept; {spare}numgen random mod 100 < {percent} drop; }}
  chain out {{ type filter hook output priority 0; policy accept; {spare}numgen random mod 100 < {percent} drop; }}
}}
"""
            sh("nft", "-f", "-", ns=ns, stdin=rules)


@contextmanager
def shaped_holders(holders: int = 3) -> Iterator[list[str]]:
    """The holders' addresses (run each holder with ``ip netns exec`` `holder_ns`(i))."""
    teardown(holders)  # a previous crash may have left pieces behind
    try:
        sh("ip", "netns", "add", SWITCH)
        sh("ip", "link", "add", "br0", "type", "bridge", ns=SWITCH)
        sh("ip", "link", "set", "br0", "up", ns=SWITCH)
        sh("ip", "link", "add", "ds-rd", "type", "veth", "peer", "name", "rd", "netns", SWITCH)
        sh("ip", "link", "set", "rd", "master", "br0", "up", ns=SWITCH)
        sh("ip", "addr", "add", f"{READER_IP}/24", "dev", "ds-rd")
        sh("ip", "link", "set", "ds-rd", "up")
        ips = []
        for i in range(holders):
            ns, port, ip = holder_ns(i), f"h{i + 1}", f"{NET}.{2 + i}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
            sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", SWITCH)
            sh("ip", "link", "set", port, "master", "br0", "up", ns=SWITCH)
            sh("ip", "addr", "add", f"{ip}/24", "dev", "eth0", ns=ns)
            sh("ip", "link", "set", "eth0", "up", ns=ns)
            _shape("eth0", ns)  # holder -> network
            _shape(port, SWITCH)  # network -> holder
            ips.append(ip)
        yield ips
    finally:
        teardown(holders)
