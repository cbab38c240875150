"""A cluster of real node processes, each node in its own network namespace, for chaos scenarios.

    root ns (the observer: this test) ── cx-obs 10.98.0.100 ──┐
                                                              │ cx-sw: bridge br0
    cx-n1: eth0 10.98.0.2 (every cell type of the scenario) ──┤
    cx-n2: eth0 10.98.0.3 ────────────────────────────────────┤
    ...                                                       ┘

A node is a namespace with one address; each cell type runs as its own `borgusb cell run`
process there (`borgusb.cluster.Cluster` with an ``ip netns exec`` prefix), so the cells of a
node share its address and its fate. Faults are what a real network does to a node:
`ChaosNet.cut` drops everything between two groups (nftables in each node's namespace),
`ChaosNet.set_loss` drops a share of every packet a node sends to another node (``numgen
random``, this kernel has no netem: ../shared/notes/machine-facts.md), `ChaosNet.set_delay`
holds a node's outgoing TCP traffic for a random time (a relay in its namespace, jitter.py: the
stand-in for netem's delay), `ChaosNet.signal` kills or freezes a node's processes. The
observer's own traffic (monitoring, requests) is never cut, dropped or delayed: the scenarios
judge the nodes, not their view of them.

`ChaosNet.teardown` kills every process and deletes every namespace, also after a failure
(the pytest fixture) or an interrupt (atexit); `leaks` names what is still there, and the
fixture fails the scenario when the list is not empty. Needs root, ``ip`` and ``nft``. Names
(cx-*) and addresses (10.98.0.0/24) differ from tests/integration's netns.py (bn-*) and
shaped_net.py (ds-*, 10.99.0.0/24); run under ``flock /tmp/borgusb-cluster.lock``.
"""

from __future__ import annotations

import atexit
import json
import os
import signal as sig
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from borgusb import dna
from borgusb.cluster import Cluster, NodeProc
from borgusb.keys import SigningKey

PREFIX = "cx-"
SWITCH = f"{PREFIX}sw"
NET = "10.98.0"
OBSERVER = f"{NET}.100"
OBS_LINK = f"{PREFIX}obs"
MAX_NODES = 40  # 10.98.0.2 .. .41, below the observer
RELAY_PORT = 9797  # the jitter relay's port in each node's namespace (no cell listens there)


def sh(*args: str, ns: str | None = None, check: bool = True, stdin: str | None = None) -> str:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, input=stdin, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc.stdout


def node_ns(index: int) -> str:
    return f"{PREFIX}n{index + 1}"


def node_ip(index: int) -> str:
    return f"{NET}.{2 + index}"


def our_namespaces() -> list[str]:
    return [line.split()[0] for line in sh("ip", "netns", "list").splitlines() if line.startswith(PREFIX)]


def our_processes() -> list[int]:
    """Pids of processes bound to a chaos address (a node's cell, whoever started it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        ours = f"\0{NET}.".encode() in cmd and b"borgusb" in cmd or b"\0tests.chaos.jitter\0" in cmd
        if state != "Z" and ours:
            found.append(int(entry.name))
    return found


def teardown_all() -> None:
    """Kill every chaos process and delete every chaos namespace and link (idempotent)."""
    for pid in our_processes():
        try:
            os.kill(pid, sig.SIGKILL)
        except ProcessLookupError:
            pass
    for ns in our_namespaces():
        sh("ip", "netns", "delete", ns, check=False)
    sh("ip", "link", "delete", OBS_LINK, check=False)


def leaks() -> list[str]:
    """What a scenario left behind: namespaces, the observer's link, live processes."""
    found = [f"namespace {ns}" for ns in our_namespaces()]
    found += [f"process {pid}" for pid in our_processes()]
    if sh("ip", "link", "show", OBS_LINK, check=False):
        found.append(f"link {OBS_LINK}")
    return found


@dataclass
class ChaosNet:
    """N node namespaces on one bridge; `start` runs the given cell types in each."""

    size: int
    root_dir: Path
    heartbeat_ms: int = 1000
    confirm_misses: int = 3
    clusters: dict[str, Cluster] = field(default_factory=dict)
    prefix: dict[int, list[str]] = field(default_factory=dict)  # per node index: e.g. libfaketime's env
    relays: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.size <= MAX_NODES:
            raise ValueError(f"1..{MAX_NODES} nodes")

    @property
    def ips(self) -> list[str]:
        return [node_ip(i) for i in range(self.size)]

    def build(self) -> None:
        teardown_all()  # a previous crash may have left pieces behind
        atexit.register(teardown_all)
        sh("ip", "netns", "add", SWITCH)
        sh("ip", "link", "add", "br0", "type", "bridge", ns=SWITCH)
        sh("ip", "link", "set", "br0", "up", ns=SWITCH)
        sh("ip", "link", "add", OBS_LINK, "type", "veth", "peer", "name", "obs", "netns", SWITCH)
        sh("ip", "link", "set", "obs", "master", "br0", "up", ns=SWITCH)
        sh("ip", "addr", "add", f"{OBSERVER}/24", "dev", OBS_LINK)
        sh("ip", "link", "set", OBS_LINK, "up")
        for i in range(self.size):
            ns, port = node_ns(i), f"n{i + 1}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
            sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", SWITCH)
            sh("ip", "link", "set", port, "master", "br0", "up", ns=SWITCH)
            sh("ip", "addr", "add", f"{node_ip(i)}/24", "dev", "eth0", ns=ns)
            sh("ip", "link", "set", "eth0", "up", ns=ns)

    def start(self, cells: list[str], keep_identity: bool = False) -> None:
        """Run each cell type on every node; node 1 is every other node's join contact (its cells
        are started first, in the order of cells, each once the one before listens).

        With keep_identity, each node has a node key file (shared by its cells, as on a machine)
        and a data directory per cell, kept across `restart`."""
        for cell in cells:
            cluster = Cluster(
                name=f"chaos-{cell}",
                cell=cell,
                root_dir=self.root_dir,
                heartbeat_ms=self.heartbeat_ms,
                confirm_misses=self.confirm_misses,
            )
            cluster.prefix = {
                node_ip(i): ["ip", "netns", "exec", node_ns(i), *self.prefix.get(i, [])] for i in range(self.size)
            }
            if keep_identity:
                cluster.args = {ip: self._identity(i, cell) for i, ip in enumerate(self.ips)}
            self.clusters[cell] = cluster
            # node 1 first, listening before the others start: a joiner whose only contact does not
            # answer yet founds a lone tree, met and merged only at a later contact probe
            cluster.wait_listening(cluster.spawn(node_ip(0), []))
        for cluster in self.clusters.values():
            for ip in self.ips[1:]:
                cluster.spawn(ip, [node_ip(0)])

    def _identity(self, index: int, cell: str) -> list[str]:
        node_dir = self.root_dir / "nodes" / node_ns(index)
        (node_dir / cell).mkdir(parents=True, exist_ok=True, mode=0o700)
        key = node_dir / "node.key"
        if not key.exists():
            key.write_text(SigningKey.generate().secret_bytes().hex())
            key.chmod(0o600)
        return ["--key-file", str(key), "--data", str(node_dir / cell)]

    def restart(self, index: int) -> None:
        """SIGKILL a node's cells and start them again (same key and data with keep_identity),
        joining through the first other node."""
        self.signal(index, sig.SIGKILL)
        for node in self.procs(index):
            deadline = time.monotonic() + 10
            while node.running() and time.monotonic() < deadline:  # its ports free again
                time.sleep(0.02)
        contact = node_ip(1 if index == 0 else 0)
        for cluster in self.clusters.values():
            cluster.spawn(node_ip(index), [contact])

    def observer_address(self, n: int) -> str:
        """A further address of the observer's side (10.98.0.100+n, n >= 1), for a process that must
        come from an address of its own (a hostile peer); it goes with the link at teardown."""
        ip = f"{NET}.{100 + n}"
        sh("ip", "addr", "add", f"{ip}/24", "dev", OBS_LINK)
        return ip

    def procs(self, index: int) -> list[NodeProc]:
        return [n for c in self.clusters.values() for n in c.nodes if n.ip == node_ip(index)]

    def signal(self, index: int, signum: int) -> None:
        """SIGKILL, SIGSTOP or SIGCONT every cell process of one node."""
        for node in self.procs(index):
            if node.running():
                os.kill(node.pid, signum)
            if signum == sig.SIGKILL:
                node.alive = False

    # ------------------------------------------------------------------ the network's faults

    def _table(self, index: int, name: str, body: str) -> None:
        ns = node_ns(index)
        sh("nft", "delete", "table", "inet", name, ns=ns, check=False)
        if body:
            sh("nft", "-f", "-", ns=ns, stdin=f"table inet {name} {{\n{body}\n}}\n")

    def cut(self, side_a: list[int], side_b: list[int]) -> None:
        """Drop every packet between the two groups of nodes, both ways (the observer still sees both)."""
        for mine, other in ((side_a, side_b), (side_b, side_a)):
            others = ", ".join(node_ip(i) for i in other)
            body = (
                f"chain in {{ type filter hook input priority 0; policy accept; ip saddr {{ {others} }} drop; }}\n"
                f"chain out {{ type filter hook output priority 0; policy accept; ip daddr {{ {others} }} drop; }}"
            )
            for i in mine:
                self._table(i, "chaoscut", body)

    def heal(self) -> None:
        for i in range(self.size):
            self._table(i, "chaoscut", "")

    def set_loss(self, percent: int) -> None:
        """Drop percent % of the packets each node sends to another node (0: none); each packet
        crosses one sender, so every link loses percent % each way."""
        if not 0 <= percent <= 100:
            raise ValueError("a share in percent")
        share = f"numgen random mod 100 < {percent} " if percent < 100 else ""  # nft: 0-99 only
        body = (
            f"chain out {{ type filter hook output priority 0; policy accept; "
            f'oifname != "lo" ip daddr != {OBSERVER} {share}drop; }}'
        )
        for i in range(self.size):
            self._table(i, "chaosloss", body if percent else "")

    def set_delay(self, min_ms: float, max_ms: float) -> None:
        """Hold every TCP stream a node opens to another node for min_ms..max_ms each way, per chunk
        and in order (jitter.py's relay, one per namespace; the observer's connections pass as they
        are). Set once per net; teardown stops the relays."""
        from tests.chaos import jitter

        if self.relays:
            raise RuntimeError("the delay is already set")
        for i in range(self.size):
            self.relays.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", node_ns(i), sys.executable, "-m", "tests.chaos.jitter"]
                    + ["--port", str(RELAY_PORT), "--min-ms", str(min_ms), "--max-ms", str(max_ms)],
                    stdout=subprocess.DEVNULL,
                )
            )
        for i, relay in enumerate(self.relays):
            deadline = time.monotonic() + 30
            while not sh("ss", "-Hltn", f"sport = :{RELAY_PORT}", ns=node_ns(i)).strip():
                if relay.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the jitter relay of {node_ns(i)} did not start ({relay.returncode})")
                time.sleep(0.1)
            self._table(
                i,
                "chaosdelay",
                f"chain out {{ type nat hook output priority -100; policy accept; meta mark != {jitter.MARK:#x} "
                f'oifname != "lo" ip daddr != {OBSERVER} meta l4proto tcp counter redirect to :{RELAY_PORT}; }}',
            )

    def delayed_connections(self, index: int) -> int:
        """Connections the node opened to other nodes through its jitter relay since `set_delay`."""
        doc = json.loads(sh("nft", "-j", "list", "table", "inet", "chaosdelay", ns=node_ns(index)))
        return sum(
            int(e["counter"]["packets"])
            for o in doc["nftables"]
            if "rule" in o
            for e in o["rule"]["expr"]
            if "counter" in e
        )

    def meter(self) -> None:
        """Count the bytes each node sends to other nodes on each cell's netPort (its tree traffic)."""
        rules = []
        for cell in self.clusters:
            port = dna.get(cell).net_port
            to_nodes = f'oifname != "lo" ip daddr != {OBSERVER}'
            rules += [
                f"{to_nodes} tcp dport {port} counter name c{port}",
                f"{to_nodes} tcp sport {port} counter name c{port}",
            ]
        counters = "\n".join(f"counter c{dna.get(cell).net_port} {{}}" for cell in self.clusters)
        chain = "chain out { type filter hook output priority 10; policy accept;\n" + "\n".join(rules) + "\n}"
        for i in range(self.size):
            self._table(i, "chaosmeter", counters + "\n" + chain)

    def metered(self, index: int, cell: str) -> int:
        """Bytes the node sent on the cell's netPort since `meter` (the packets the loss rule let through)."""
        doc = json.loads(
            sh("nft", "-j", "list", "counter", "inet", "chaosmeter", f"c{dna.get(cell).net_port}", ns=node_ns(index))
        )
        return next(int(o["counter"]["bytes"]) for o in doc["nftables"] if "counter" in o)

    def teardown(self) -> list[str]:
        """Stop what this net started and delete its namespaces; return what was left anyway
        (processes it did not track, links), which is then removed too."""
        for cluster in self.clusters.values():
            for node in cluster.nodes:
                if node.running():
                    os.kill(node.pid, sig.SIGKILL)  # also a frozen one
            cluster.down()
        for relay in self.relays:
            relay.kill()
            relay.wait(timeout=10)
        for ns in [SWITCH, *(node_ns(i) for i in range(self.size))]:
            sh("ip", "netns", "delete", ns, check=False)
        sh("ip", "link", "delete", OBS_LINK, check=False)  # gone with its peer in cx-sw, normally
        left = leaks()
        teardown_all()
        return left
