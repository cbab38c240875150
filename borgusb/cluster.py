"""`borgusb cluster ...`: a local cluster of real node processes (the command itself: clustercli.py).

Every node gets its own loopback address (127.0.0.2, 127.0.0.3, ...) and so
keeps the DNA ports exactly as on real machines. A cluster of `ALL` is what
people start: each address is one machine running every implemented cell type
under one cell host (`borgusb cellhost run`), as a booted stick or hosted node
does; a cluster of one cell type runs `borgusb cell run` per address (tests of
one type). Processes are tracked in a state file with their pid, address and
start time; `down` kills them even after the tool itself crashed, and checks
each pid's command line first so a recycled pid is never killed. A cluster
keeps its cells' data under its own directory and `down` deletes it: stored
objects and ledger entries do not outlive the cluster (each start makes new
node keys, so the old data would belong to nobody).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from . import dna
from .cells import dna_of, implemented

DEFAULT_DIR = Path(os.environ.get("BORGUSB_CLUSTER_DIR", Path.home() / ".cache" / "borgusb" / "cluster"))
ALL = "all"  # a cluster's `cell` when each address runs every implemented cell type
STOP_GRACE_S = 8.0  # how long a cell host has to stop its cells (it gives them 5 s) before SIGKILL
FIRST_READY_S = 30.0  # how long `up` waits for the first node's cells to listen before it starts the rest anyway


def loopback(index: int, base: int = 2) -> str:
    """The index-th node's address: 127.0.0.2, 127.0.0.3, ... (continues into 127.0.1.x)."""
    return str(ipaddress.IPv4Address("127.0.0.0") + base + index)


@dataclass
class NodeProc:
    ip: str
    pid: int
    log: str
    alive: bool = True
    started: int = 0  # the process's start time (clock ticks after boot): a pid used again has another

    @classmethod
    def spawned(cls, ip: str, pid: int, log: str) -> NodeProc:
        """A node whose process was just started (its start time read now)."""
        stat = _stat(pid)
        return cls(ip=ip, pid=pid, log=log, started=int(stat[19]) if stat else 0)

    def cmdline_matches(self) -> bool:
        try:
            cmd = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return (b"cell" in cmd or b"cellhost" in cmd) and self.ip.encode() in cmd

    def running(self) -> bool:
        """Whether the node's process lives: not a zombie, and the very process started (its start
        time, which a process that got the pid later cannot have; a state file without one falls
        back on the command line, which reads empty while the process is inside an exec, as
        `ip netns exec` is right after the spawn)."""
        stat = _stat(self.pid)
        if stat is None or stat[0] == "Z":
            return False
        return int(stat[19]) == self.started if self.started else self.cmdline_matches()


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command's name (state first), or None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


@dataclass
class Cluster:
    """A set of node processes of one cell type (or of every type: `ALL`), described by a state file."""

    name: str = "default"
    cell: str = "peerTreeNet"
    root_dir: Path = DEFAULT_DIR
    heartbeat_ms: int = 1000
    confirm_misses: int = 3
    nodes: list[NodeProc] = field(default_factory=list)
    # optional per-IP command prefix that must exec the node (e.g. `env LD_PRELOAD=libfaketime ...`
    # for a skewed clock in tests); not saved in the state file
    prefix: dict[str, list[str]] = field(default_factory=dict)
    # optional per-IP arguments appended to the node's command (e.g. `--key-file K --data D`:
    # a node restarted with its identity and data, in tests); not saved either
    args: dict[str, list[str]] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.root_dir / self.name

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def cell_types(self) -> list[str]:
        """The cell types each node runs."""
        return implemented() if self.cell == ALL else [self.cell]

    @property
    def dna(self) -> dna.CellDNA:
        """The DNA of the cell whose tree `status` shows (peerTreeNet first on a whole machine)."""
        return dna_of(self.cell_types[0])

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
        if self.cell == ALL:  # one machine: the cell host forks every cell type, each with its own --data
            data = self.dir / "data" / ip
            for name in self.cell_types:
                (data / name).mkdir(parents=True, exist_ok=True, mode=0o700)
            what = ["cellhost", "run", "--data-root", str(data)]
        else:
            what = ["cell", "run", self.cell]
        cmd = [
            sys.executable,
            "-m",
            "borgusb.cli",
            *what,
            "--ip",
            ip,
            "--heartbeat-ms",
            str(self.heartbeat_ms),
            "--confirm-misses",
            str(self.confirm_misses),
        ]
        for contact in join:
            cmd += ["--join", contact]
        cmd = list(self.prefix.get(ip, ())) + cmd + list(self.args.get(ip, ()))
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        node = NodeProc.spawned(ip, proc.pid, str(log))
        self.nodes.append(node)
        self.save()
        return node

    def up(
        self,
        count: int,
        *,
        base: int = 2,
        join: list[str] | None = None,
        stagger_s: float = 0.0,
        avoid: set[str] | frozenset[str] = frozenset(),
        first_ready: bool = True,
    ) -> list[NodeProc]:
        """Start count nodes; all but the first join through the first (or through join).

        When the others join through a first node started here, they are started once its cells
        listen (first_ready, up to FIRST_READY_S): a joiner whose only contact does not answer yet
        founds a tree of its own, and lone trees only meet at their next contact probe (3.5 s)
        and then merge. With first_ready=False, and for cell hosts (ALL), every process starts at once.
        Addresses in avoid (another cluster's nodes) are skipped."""
        used = {n.ip for n in self.nodes} | set(avoid)
        # the others join through the first; cell hosts (`borgusb cluster up`) still start at once
        lead = first_ready and self.cell != ALL and join is None and not self.nodes and count > 1
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
            log = self.dir / f"node-{ip}.log"
            offset = log.stat().st_size if log.exists() else 0  # a node that ran here before wrote its lines
            started.append(self.spawn(ip, contacts))
            if lead and len(started) == 1:
                self.wait_listening(started[0], offset)
            if stagger_s:
                time.sleep(stagger_s)
        return started

    def wait_listening(self, node: NodeProc, offset: int = 0, timeout_s: float = FIRST_READY_S) -> bool:
        """Wait until each of the node's cells has said it listens (its BORGUSB-READY line in the
        node's log past offset); False if its process ended first or timeout_s passed."""
        want = [f"BORGUSB-READY cell={name} " for name in self.cell_types]
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with open(node.log, "rb") as f:
                    f.seek(offset)
                    text = f.read().decode(errors="replace")
            except OSError:
                text = ""
            if all(w in text for w in want):
                return True
            if not node.running() or time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def kill(self, node: NodeProc, sig: int = signal.SIGKILL) -> None:
        if node.running():
            try:
                os.kill(node.pid, sig)
            except ProcessLookupError:
                pass
        node.alive = False
        self.save()

    def down(self) -> int:
        """Stop every node; a cell host first gets SIGTERM (its cells withdraw from the registry)."""
        running = [n for n in self.nodes if n.running()]
        gentle = self.cell == ALL
        for node in running:
            os.kill(node.pid, signal.SIGTERM if gentle else signal.SIGKILL)
        deadline = time.monotonic() + (STOP_GRACE_S if gentle else 5)
        while any(n.running() for n in running) and time.monotonic() < deadline:
            time.sleep(0.05)
        for node in running:
            if node.running():
                os.kill(node.pid, signal.SIGKILL)  # its cells follow (PR_SET_PDEATHSIG)
        deadline = time.monotonic() + 5
        while any(n.running() for n in running) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.nodes = []
        if self.state_file.exists():
            self.state_file.unlink()
        shutil.rmtree(self.dir / "data", ignore_errors=True)
        return len(running)

    def live(self) -> list[NodeProc]:
        return [n for n in self.nodes if n.alive and n.running()]

    # -------------------------------------------------------------- observation

    async def status(self, timeout_s: float = 2.0, cell: str | None = None) -> list[dict[str, Any]]:
        """Each live node's monitoring JSON of `cell` (default: the first of cell_types), or an error entry."""
        mon_port = dna_of(cell).mon_port if cell else self.dna.mon_port
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:

            async def one(node: NodeProc) -> dict[str, Any]:
                url = f"http://{node.ip}:{mon_port}/status"
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
        """Wait until, for each cell type, every live node is online in one consistent tree;
        return the summary of the first type's tree."""
        deadline = time.monotonic() + timeout_s
        summaries: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            for cell in self.cell_types:
                if cell not in summaries:
                    summary = summarize(await self.status(cell=cell))
                    if summary["consistent"] and (expect is None or summary["size"] == expect):
                        summaries[cell] = summary
            if len(summaries) == len(self.cell_types):
                return summaries[self.cell_types[0]]
            await asyncio.sleep(0.2)
        waiting = [c for c in self.cell_types if c not in summaries]
        summary = summarize(await self.status(cell=waiting[0]))
        problems = "; ".join(summary["problems"][:8]) or "no node answers"
        raise TimeoutError(
            f"the {waiting[0]} cells formed no single consistent tree within {timeout_s:g} s "
            f"({summary['size']} of {len(self.live())} nodes answer): {problems}"
        )


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
                "root": t.get("root"),
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
        if len(roots) == 1 and n["status"] == "online" and n["root"] != roots[0]["node"]:
            problems.append(f"{n['ip']} follows another root")
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
