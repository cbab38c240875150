"""A newcomer's local network, driven as a person drives it: `borgusb` subprocesses only (issue 22).

`borgusb cluster up` makes each address one machine running every implemented cell type, so
`put/stat/get/rm`, `pay` and `conduit` find a node by themselves, without --node; a second `up`
changes nothing; `down` stops it all and says the data is gone; afterwards every command says
that no node runs and what to start. Run under `flock /tmp/borgusb-cluster.lock` (fixed
addresses 127.0.0.170 onwards); the fixture stops the cluster even when the test fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from borgusb.cells import implemented
from borgusb.cluster import ALL, Cluster
from borgusb.conduit.web import SECRET_HEADER
from borgusb.shard import model

pytestmark = pytest.mark.slow
NAME = "newcomer"
BASE = 170  # 127.0.0.170-172: off the addresses other cluster tests start at
NODES = 3
INTERNALS = re.compile(r"Traceback|Errno|\b[A-Z][A-Za-z]*(Error|Exception)\b")
START = "Start a local network with 'borgusb cluster up --nodes 5'"


class Person:
    """Runs `borgusb` as a person would, in one environment, and keeps the transcript."""

    def __init__(self, tmp_path: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if k != "BORGUSB_NODE"}
        self.env.update(BORGUSB_CLUSTER_DIR=str(tmp_path / "clusters"), BORGUSB_PAY_DIR=str(tmp_path / "pay"))
        self.clusters = tmp_path / "clusters"
        self.transcript: list[str] = []

    def __call__(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "borgusb.cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )
        self.transcript.append(f"$ borgusb {' '.join(args)}  -> {proc.returncode}\n{proc.stdout}{proc.stderr}")
        assert not INTERNALS.search(proc.stdout + proc.stderr), self.transcript[-1]
        return proc

    def conduit_says(self, meanwhile: Callable[[str], None] | None = None) -> tuple[str, str]:
        """Start `borgusb conduit` (no --node), read up to its ready line, run meanwhile(link) if
        given, stop it: (its first line, its stderr)."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "borgusb.cli", "conduit", "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        said: list[str] = []
        try:
            while not said or "BorgHUIConduit is ready" not in said[-1]:  # a generous deadline, no sleep
                said.append(lines.get(timeout=60))
                assert said[-1], f"the conduit ended: {proc.wait(timeout=30)}"
            if meanwhile is not None:
                meanwhile(said[-1].split("open ", 1)[1].strip())
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=60)
        self.transcript.append(f"$ borgusb conduit\n{''.join(said)}{err}")
        assert not INTERNALS.search("".join(said) + err), self.transcript[-1]
        return said[0], err


def _pump(stream: IO[str] | None, into: queue.Queue[str]) -> None:
    """Lines of a child's output into a queue, then "" at its end."""
    for line in stream or ():
        into.put(line)
    into.put("")


@pytest.fixture
def person(tmp_path: Path) -> Iterator[Person]:
    who = Person(tmp_path)
    yield who
    subprocess.run(
        [sys.executable, "-m", "borgusb.cli", "cluster", "down", "--name", NAME],
        env=who.env,
        capture_output=True,
        timeout=120,
    )
    Cluster.load(NAME, who.clusters).down()  # in case the command itself failed


def _tree_seen_by_conduit(link: str, timeout_s: float = 90) -> int:
    """The size of the PeerTree the conduit's Home page shows, once it shows one (as the page asks)."""
    base, _, secret = link.partition("/#k=")
    request = urllib.request.Request(f"{base}/api/tree", data=b"", headers={SECRET_HEADER: secret}, method="POST")
    deadline = time.monotonic() + timeout_s
    doc: dict = {}
    while time.monotonic() < deadline:
        with urllib.request.urlopen(request, timeout=30) as resp:
            doc = json.loads(resp.read())
        if doc.get("members"):
            return len(doc["members"])
        time.sleep(0.5)  # polling the condition, with the deadline above
    raise TimeoutError(f"the conduit never saw the network: {doc}")


async def _shard_directories_full(cluster: Cluster, timeout_s: float = 60) -> None:
    """Every shard cell has heard of every other (a put then finds its R holders)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        docs = await cluster.status(cell="shardTreeCell")
        if len(docs) == NODES and all(d.get("shard", {}).get("directory") == NODES for d in docs):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("the shard cells' directories did not fill")


def test_a_local_network_that_behaves_like_the_real_one(person: Person, tmp_path: Path) -> None:
    up = person("cluster", "up", "--nodes", str(NODES), "--base", str(BASE), "--heartbeat-ms", "300", "--name", NAME)
    assert up.returncode == 0, person.transcript[-1]
    assert all(cell in up.stdout for cell in implemented())  # every address runs every cell type
    assert "is deleted when the cluster stops" in up.stdout and "one consistent tree" in up.stdout
    cluster = Cluster.load(NAME, person.clusters)
    pids = sorted(n.pid for n in cluster.nodes)
    assert len(pids) == NODES and [n.ip for n in cluster.nodes][0] == f"127.0.0.{BASE}" and cluster.cell == ALL

    again = person("cluster", "--name", NAME, "up", "--nodes", "2")  # --name before the command this time
    assert again.returncode == 1 and f"the cluster '{NAME}' already runs" in again.stderr
    assert "nothing was changed" in again.stderr and f"borgusb cluster down --name {NAME}" in again.stderr
    assert sorted(n.pid for n in Cluster.load(NAME, person.clusters).nodes) == pids
    assert all(n.running() for n in cluster.nodes)

    status = person("cluster", "status", "--name", NAME, "--json")
    assert status.returncode == 0, person.transcript[-1]
    doc = json.loads(status.stdout)
    assert doc["consistent"] and doc["size"] == NODES
    assert doc["cells"] == {cell: {"consistent": True, "size": NODES} for cell in implemented()}

    # the README's commands, without --node: they find the cluster by themselves
    asyncio.run(_shard_directories_full(cluster))
    src = tmp_path / "notes.txt"
    src.write_bytes(os.urandom(300_000))
    key = ("--key-file", str(tmp_path / "key"))
    put = person("put", str(src), *key, "-q")
    assert put.returncode == 0, person.transcript[-1]
    oid = put.stdout.strip()
    assert oid == model.object_id(300_000, model.SHARD_SIZE, [model.sha256_hex(src.read_bytes())])  # one shard
    stat = person("stat", oid)
    assert stat.returncode == 0 and "min 3 of R=3" in stat.stdout, person.transcript[-1]
    assert all(f"127.0.0.{BASE + i}" in stat.stdout for i in range(NODES))
    out = tmp_path / "back.txt"
    got = person("get", oid, "-o", str(out), "-q")
    assert got.returncode == 0 and out.read_bytes() == src.read_bytes(), person.transcript[-1]
    rm = person("rm", oid, *key)
    assert rm.returncode == 0, person.transcript[-1]
    # the ledger's cell is found too: it answers, and says why 3 machines cannot hold an account
    pay = person("pay", "balance", *key)
    assert pay.returncode == 1 and "(too_few_members)" in pay.stderr, person.transcript[-1]
    line, _ = person.conduit_says()
    assert line.startswith("network: through 127.0.0.") and f"127.0.0.{BASE}" in line, line

    down = person("cluster", "down", "--name", NAME)
    assert down.returncode == 0 and f"stopped {NODES} nodes; their data (stored files, payments) is deleted" in (
        down.stdout
    )
    assert not any(n.running() for n in cluster.nodes)
    assert not (cluster.dir / "data").exists() and not cluster.state_file.exists()

    # nothing runs now: each command says so and what to start, with the exit code for "no node"
    gone = person("stat", oid)
    assert gone.returncode == 3 and "no shardTreeCell runs on this machine" in gone.stderr and START in gone.stderr
    gone = person("put", str(src), *key, "-q")
    assert gone.returncode == 3 and START in gone.stderr
    gone = person("pay", "balance", *key)
    assert gone.returncode == 3 and "no peerPaysCell runs on this machine" in gone.stderr and START in gone.stderr
    status = person("cluster", "status", "--name", NAME)
    assert status.returncode == 1 and f"no cluster '{NAME}' runs" in status.stderr

    # a conduit started with nothing running says what to start, and finds the network once it runs
    def start_then_look(link: str) -> None:
        again = person("cluster", "up", "--name", NAME, "--nodes", str(NODES), "--base", str(BASE))
        assert again.returncode == 0, person.transcript[-1]
        assert _tree_seen_by_conduit(link) == NODES

    line, err = person.conduit_says(start_then_look)
    assert "BorgHUIConduit is ready" in line  # the wallet pages work without a network
    assert "no node runs on this machine" in err and START in err
