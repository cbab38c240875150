"""`borgusb cluster ...`: a local cluster of real node processes.

Every node gets its own loopback address (127.0.0.2, 127.0.0.3, ...) and so
keeps the DNA ports exactly as on real machines. Processes are tracked in a
state file with their pid, address and start time; `down` kills them even
after the tool itself crashed, and checks each pid's command line first so
a recycled pid is never killed.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from . import dna
from .cells import dna_of

DEFAULT_DIR = Path(os.environ.get("BORGUSB_CLUSTER_DIR", Path.home() / ".cache" / "borgusb" / "cluster"))


def loopback(index: int, base: int = 2) -> str:
    """The index-th node's address: 127.0.0.2, 127.0.0.3, ... (continues into 127.0.1.x)."""
    return str(ipaddress.IPv4Address("127.0.0.0") + base + index)


@dataclass
class NodeProc:
    ip: str
    pid: int
    log: str
    alive: bool = True

    def cmdline_matches(self) -> bool:
        try:
            cmd = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return b"cell" in cmd and self.ip.encode() in cmd

    def running(self) -> bool:
        if not self.cmdline_matches():
            return False
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            return False
        return state != "Z"


@dataclass
class Cluster:
    """A set of node processes of one cell type, described by a state file."""

    name: str = "default"
    cell: str = "peerTreeNet"
    root_dir: Path = DEFAULT_DIR
    heartbeat_ms: int = 1000
    confirm_misses: int = 3
    nodes: list[NodeProc] = field(default_factory=list)
    # optional per-IP command prefix that must exec the node (e.g. `env LD_PRELOAD=libfaketime ...`
    # for a skewed clock in tests); not saved in the state file
    prefix: dict[str, list[str]] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.root_dir / self.name

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def dna(self) -> dna.CellDNA:
        return dna_of(self.cell)

    # -------------------------------------------------------------- state

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        doc = {
            "cell": self.cell,
            "heartbeat_ms": self.heartbeat_ms,
            "confirm_misses": self.confirm_misses,
            "nodes": [vars(n) for n in self.nodes],
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, self.state_file)

    @classmethod
    def load(cls, name: str = "default", root_dir: Path = DEFAULT_DIR) -> Cluster:
        cluster = cls(name=name, root_dir=root_dir)
        if cluster.state_file.exists():
            doc = json.loads(cluster.state_file.read_text())
            cluster.cell = doc["cell"]
            cluster.heartbeat_ms = doc.get("heartbeat_ms", 1000)
            cluster.confirm_misses = doc.get("confirm_misses", 3)
            cluster.nodes = [NodeProc(**n) for n in doc["nodes"]]
        return cluster

    # -------------------------------------------------------------- processes

    def spawn(self, ip: str, join: list[str]) -> NodeProc:
        self.dir.mkdir(parents=True, exist_ok=True)
        log = self.dir / f"node-{ip}.log"
        cmd = [
            sys.executable,
            "-m",
            "borgusb.cli",
            "cell",
            "run",
            self.cell,
            "--ip",
            ip,
            "--heartbeat-ms",
            str(self.heartbeat_ms),
            "--confirm-misses",
            str(self.confirm_misses),
        ]
        for contact in join:
            cmd += ["--join", contact]
        cmd = list(self.prefix.get(ip, ())) + cmd
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        node = NodeProc(ip=ip, pid=proc.pid, log=str(log))
        self.nodes.append(node)
        self.save()
        return node

    def up(self, count: int, *, base: int = 2, join: list[str] | None = None, stagger_s: float = 0.0) -> list[NodeProc]:
        """Start count nodes; all but the first join through the first (or through join)."""
        used = {n.ip for n in self.nodes}
        started: list[NodeProc] = []
        index = 0
        while len(started) < count:
            ip = loopback(index, base)
            index += 1
            if ip in used:
                continue
            contacts = (
                join
                if join is not None
                else ([] if not started and not self.nodes else [(self.nodes or started)[0].ip])
            )
            started.append(self.spawn(ip, contacts))
            if stagger_s:
                time.sleep(stagger_s)
        return started

    def kill(self, node: NodeProc, sig: int = signal.SIGKILL) -> None:
        if node.running():
            try:
                os.kill(node.pid, sig)
            except ProcessLookupError:
                pass
        node.alive = False
        self.save()

    def down(self) -> int:
        killed = 0
        for node in self.nodes:
            if node.running():
                os.kill(node.pid, signal.SIGKILL)
                killed += 1
        deadline = time.monotonic() + 5
        while any(n.running() for n in self.nodes) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.nodes = []
        if self.state_file.exists():
            self.state_file.unlink()
        return killed

    def live(self) -> list[NodeProc]:
        return [n for n in self.nodes if n.alive and n.running()]

    # -------------------------------------------------------------- observation

    async def status(self, timeout_s: float = 2.0) -> list[dict[str, Any]]:
        """Each live node's monitoring JSON (or an error entry)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:

            async def one(node: NodeProc) -> dict[str, Any]:
                url = f"http://{node.ip}:{self.dna.mon_port}/status"
                try:
                    async with session.get(url) as resp:
                        doc = await resp.json()
                        doc["pid"] = node.pid
                        return doc
                except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
                    return {"ip": node.ip, "pid": node.pid, "error": exc.__class__.__name__}

            return list(await asyncio.gather(*(one(n) for n in self.live())))

    async def wait_ready(self, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            docs = await self.status()
            if docs and all("error" not in d for d in docs):
                return docs
            if time.monotonic() > deadline:
                raise TimeoutError(f"nodes not answering: {[d['ip'] for d in docs if 'error' in d]}")
            await asyncio.sleep(0.2)

    async def wait_one_tree(self, timeout_s: float = 60.0, expect: int | None = None) -> dict[str, Any]:
        """Wait until every live node is online in one consistent tree; return the summary."""
        deadline = time.monotonic() + timeout_s
        summary: dict[str, Any] = {}
        while time.monotonic() < deadline:
            summary = summarize(await self.status())
            if summary["consistent"] and (expect is None or summary["size"] == expect):
                return summary
            await asyncio.sleep(0.2)
        raise TimeoutError(f"no single consistent tree within {timeout_s}s: {json.dumps(summary)[:800]}")


def summarize(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Check that the nodes form one tree: one root, positions 1..N unique, parents right."""
    from .tree.positions import parent as parent_of

    nodes = []
    problems: list[str] = []
    for d in docs:
        if "error" in d:
            problems.append(f"{d['ip']} not answering ({d['error']})")
            continue
        t = d["tree"]
        nodes.append(
            {
                "ip": d["ip"],
                "node": d["node"],
                "status": t.get("status"),
                "tree": t.get("tree_id"),
                "position": t.get("position"),
                "size": t.get("size"),
                "depth": t.get("depth"),
                "parent": t.get("parent"),
                "children": len(t.get("children") or {}),
            }
        )
    trees = {n["tree"] for n in nodes}
    roots = [n for n in nodes if n["status"] == "root"]
    positions = sorted(n["position"] for n in nodes if isinstance(n["position"], int))
    k = docs[0]["cell"]["maxChildren"] if docs and "cell" in docs[0] else 1
    by_pos = {n["position"]: n for n in nodes}
    if len(trees) != 1:
        problems.append(f"{len(trees)} tree ids")
    if len(roots) != 1:
        problems.append(f"{len(roots)} roots")
    if positions != list(range(1, len(nodes) + 1)):
        problems.append("positions not unique and contiguous")
    for n in nodes:
        if n["status"] not in ("online", "root"):
            problems.append(f"{n['ip']} is {n['status']}")
        if isinstance(n["position"], int) and n["position"] > 1:
            want = by_pos.get(parent_of(n["position"], k))
            if want is None or n["parent"] != want["node"]:
                problems.append(f"{n['ip']} has the wrong parent")
    ip_of = {n["node"]: n["ip"] for n in nodes}
    for n in nodes:
        n["parent"] = ip_of.get(n["parent"], n["parent"] and n["parent"][:12])
    return {
        "consistent": not problems and bool(nodes),
        "size": len(nodes),
        "trees": len(trees),
        "roots": [r["ip"] for r in roots],
        "depth": max((n["depth"] or 0 for n in nodes), default=0),
        "problems": problems[:20],
        "nodes": sorted(nodes, key=lambda n: n["position"] or 0),
    }


# ------------------------------------------------------------------ CLI


def _print_summary(summary: dict[str, Any]) -> None:
    state = "one consistent tree" if summary["consistent"] else "NOT consistent"
    print(f"{summary['size']} nodes, {state}, depth {summary['depth']}, root {', '.join(summary['roots']) or '-'}")
    print(f"{'pos':>4}  {'ip':<15} {'status':<8} {'parent':<15} {'children':>8}")
    for n in summary["nodes"]:
        pos, status, parent = n["position"] or "-", n["status"] or "-", n["parent"] or "-"
        print(f"{pos:>4}  {n['ip']:<15} {status:<8} {parent:<15} {n['children']:>8}")
    for p in summary["problems"]:
        print(f"  ! {p}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="borgusb cluster", description="A local cluster of real node processes, one per loopback address."
    )
    parser.add_argument("--name", default="default", help="cluster name (several can coexist)")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"state directory (default {DEFAULT_DIR})")
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    up = sub.add_parser("up", help="start nodes (127.0.0.2, .3, ...) and wait until they form one tree")
    up.add_argument("--nodes", type=int, required=True)
    up.add_argument(
        "--cell", default="peerTreeNet", metavar="NAME", help="the cell type each node runs (see 'borgusb cell list')"
    )
    up.add_argument("--heartbeat-ms", type=int, default=1000)
    up.add_argument("--base", type=int, default=2, help="first address is 127.0.0.BASE (default 2)")
    up.add_argument("--join", action="append", default=None, metavar="HOST", help="contacts for the new nodes")
    up.add_argument("--no-wait", action="store_true", help="return without waiting for one tree")
    st = sub.add_parser("status", help="positions, parents, children, root and depth")
    st.add_argument("--json", action="store_true")
    kill = sub.add_parser("kill", help="kill nodes at random (SIGKILL)")
    kill.add_argument("--count", type=int, default=1)
    kill.add_argument("--root", action="store_true", help="include the root")
    sub.add_parser("down", help="stop every node of the cluster and forget it")
    args = parser.parse_args(argv)

    cluster = Cluster.load(args.name, args.dir)
    if args.cmd == "up":
        if cluster.nodes and cluster.cell != args.cell:
            print(f"borgusb: cluster {args.name} runs {cluster.cell}; use another --name", file=sys.stderr)
            return 1
        cluster.cell, cluster.heartbeat_ms = args.cell, args.heartbeat_ms
        cluster.up(args.nodes, base=args.base, join=args.join)
        if args.no_wait:
            return 0
        try:
            summary = asyncio.run(cluster.wait_one_tree(timeout_s=30 + args.nodes))
        except TimeoutError as exc:
            print(f"borgusb: {exc}", file=sys.stderr)
            return 1
        _print_summary(summary)
    elif args.cmd == "status":
        summary = summarize(asyncio.run(cluster.status()))
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            _print_summary(summary)
    elif args.cmd == "kill":
        docs = asyncio.run(cluster.status())
        root_ips = {d["ip"] for d in docs if d.get("status") == "root"}
        live = cluster.live()
        victims = [n for n in live if n.ip in root_ips] if args.root else []
        others = [n for n in live if n not in victims]
        victims += random.sample(others, max(0, min(len(others), args.count - len(victims))))
        for node in victims:
            cluster.kill(node)
        print("killed " + ", ".join(n.ip for n in victims))
    elif args.cmd == "down":
        print(f"stopped {cluster.down()} nodes")
    return 0
