"""The cell host with real processes: cells forked from one loaded host, supervised, or handed to a unit.

The systemd mode is checked here without systemd: the test plays the service
manager's part (a NOTIFY_SOCKET it reads), puts the stub in a cgroup, a mount
namespace and a user of its own, and checks the forked cell ends up in each.
The QEMU image test checks the same with systemd itself.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from borgusb.cellhost.placement import cgroup2_root, cgroup_of
from borgusb.dna import get as dna_get

BORGUSB = [sys.executable, "-c", "import sys; from borgusb.cli import main; sys.exit(main())"]
REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"  # the unit's user must be able to run it (the venv's may sit in /root)
READY = re.compile(r"BORGUSB-READY cell=(\S+) ip=\S+ node=(\S+)")


def status(ip: str, cell: str) -> dict:
    with urllib.request.urlopen(f"http://{ip}:{dna_get(cell).mon_port}/status", timeout=5) as resp:
        return json.load(resp)


def read_lines_until(stream, pattern: re.Pattern[str], count: int, timeout_s: float) -> list[re.Match[str]]:
    """Lines from a pipe until `count` of them match (generous deadline; the pipe never blocks us)."""
    found: list[re.Match[str]] = []
    deadline = time.monotonic() + timeout_s
    buf = seen = b""
    fd = stream.fileno()
    while len(found) < count:
        left = deadline - time.monotonic()
        assert left > 0, (
            f"only {len(found)} of {count} lines matching {pattern.pattern} in {timeout_s}s: {seen[-2000:]!r}"
        )
        if not select.select([fd], [], [], left)[0]:
            continue
        chunk = os.read(fd, 65536)
        assert chunk, f"the stream ended after {len(found)} of {count} lines"
        buf += chunk
        seen += chunk
        *lines, buf = buf.split(b"\n")
        found += [m for line in lines if (m := pattern.search(line.decode(errors="replace")))]
    return found


def private_kib(pid: int) -> int:
    rows = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    return sum(int(r.split()[1]) for r in rows if r.startswith(("Private_Clean:", "Private_Dirty:")))


@pytest.fixture
def host_run(tmp_path: Path) -> Iterator[list[subprocess.Popen]]:
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def children_of(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_supervised_cells_share_the_host_and_come_back(tmp_path: Path, host_run: list[subprocess.Popen]) -> None:
    ip = "127.0.0.71"
    host = subprocess.Popen(
        [
            *BORGUSB,
            "cellhost",
            "run",
            "--cells",
            "peerTreeNet,serviceMgrCell",
            "--data-root",
            str(tmp_path / "cells"),
            "--ip",
            ip,
            "--heartbeat-ms",
            "300",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    host_run.append(host)
    ready = read_lines_until(host.stdout, READY, 2, 120)
    assert sorted(m[1] for m in ready) == ["peerTreeNet", "serviceMgrCell"]
    kids = children_of(host.pid)
    assert len(kids) == 2
    # each cell is a process of its own whose code pages are the host's: its private memory is what it
    # changed since the fork, far below what a process importing everything itself holds
    for pid in kids:
        assert private_kib(pid) < private_kib(host.pid) * 2
    assert status(ip, "peerTreeNet")["status"] == "root" and status(ip, "serviceMgrCell")["status"] == "root"
    # a cell that dies is started again, alone
    victim = kids[0]
    survivor = kids[1]
    os.kill(victim, signal.SIGKILL)
    again = read_lines_until(host.stdout, READY, 1, 120)
    assert len(again) == 1
    new_kids = children_of(host.pid)
    assert survivor in new_kids and victim not in new_kids and len(new_kids) == 2
    # SIGTERM to the host stops every cell
    host.send_signal(signal.SIGTERM)
    assert host.wait(timeout=60) == 0
    for pid in new_kids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


@pytest.mark.skipif(os.geteuid() != 0, reason="placing a cell in another cgroup, namespace and user needs root")
@pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK), reason=f"the stub runs as nobody with {SYSTEM_PYTHON}")
def test_a_unit_stub_gets_its_cell_in_its_own_cgroup_namespace_and_user(host_run: list[subprocess.Popen]) -> None:
    # a folder the unit's user can reach, as /run/borgusb-cellhost is (pytest's tmp_path is root's alone)
    tmp_path = Path(tempfile.mkdtemp(prefix="borgusb-cellhost-test-"))
    tmp_path.chmod(0o755)
    # the stub's code where the unit's user can read it, as on the image (a checkout may sit in a private home)
    shutil.copytree(REPO / "borgusb", tmp_path / "site" / "borgusb", ignore=shutil.ignore_patterns("__pycache__"))
    for path in [tmp_path / "site", *(tmp_path / "site").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    sock = str(tmp_path / "cellhost.sock")
    host = subprocess.Popen(
        [*BORGUSB, "cellhost", "serve", "--socket", sock, "--cells", "peerTreeNet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    host_run.append(host)
    read_lines_until(host.stdout, re.compile(r"BORGUSB-CELLHOST ready"), 1, 120)
    # the service manager's side: a notify socket, and a cgroup for "the unit"
    notify_path = str(tmp_path / "notify")
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(notify_path)
    os.chmod(notify_path, 0o666)
    group = f"/borgusb-test-{uuid.uuid4().hex[:8]}"
    (cgroup2_root() / group.lstrip("/")).mkdir()
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 65534, 65534)
    child_pid = 0
    try:

        def enter() -> None:  # the stub as systemd would start it: in the unit's cgroup (user: unshare below)
            (cgroup2_root() / group.lstrip("/") / "cgroup.procs").write_text(str(os.getpid()))

        ip = "127.0.0.72"
        stub = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--setgid",
                "65534",
                "--setuid",
                "65534",
                "--",
                SYSTEM_PYTHON,
                "-m",
                "borgusb.cellhost.spawn",
                "--socket",
                sock,
                "peerTreeNet",
                "--ip",
                ip,
                "--data",
                str(data),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
            env={"PATH": os.environ["PATH"], "PYTHONPATH": str(tmp_path / "site"), "NOTIFY_SOCKET": notify_path},
            preexec_fn=enter,
        )
        manager.settimeout(1)
        messages: list[str] = []
        deadline = time.monotonic() + 120
        while not any(m.startswith("READY=1") for m in messages):
            if time.monotonic() > deadline:
                os.set_blocking(stub.stdout.fileno(), False)
                os.set_blocking(stub.stderr.fileno(), False)
                said = (stub.stdout.read() or b"") + (stub.stderr.read() or b"")
                raise AssertionError(f"no READY=1 from the cell: {messages}; it said {said[-3000:]!r}")
            if stub.poll() not in (None, 0):
                raise AssertionError(f"the stub failed: {stub.stderr.read().decode(errors='replace')}")
            try:
                msg, fds, _, _ = socket.recv_fds(manager, 4096, 4)
            except TimeoutError:
                continue
            for fd in fds:  # the barrier's pipe: closing it tells the stub its MAINPID was taken
                os.close(fd)
            messages.append(msg.decode())
        mainpid = next(int(m.split("=", 1)[1]) for m in messages if m.startswith("MAINPID="))
        assert "BARRIER=1" in messages and messages.index("BARRIER=1") > 0
        assert stub.wait(timeout=60) == 0
        child_pid = mainpid
        line = read_lines_until(stub.stdout, READY, 1, 60)  # the cell writes to the stub's own stdout
        assert line[0][1] == "peerTreeNet"
        proc = Path(f"/proc/{mainpid}")
        uids = next(r for r in (proc / "status").read_text().splitlines() if r.startswith("Uid:")).split()[1:]
        assert uids == ["65534"] * 4
        assert cgroup_of(mainpid) == group
        assert os.stat(proc / "ns" / "mnt").st_ino != os.stat("/proc/self/ns/mnt").st_ino
        nnp = next(r for r in (proc / "status").read_text().splitlines() if r.startswith("NoNewPrivs:"))
        assert nnp.split()[1] == "1"
        assert status(ip, "peerTreeNet")["status"] == "root"
    finally:
        manager.close()
        if child_pid:
            try:
                os.kill(child_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 30
            while Path(f"/proc/{child_pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        host.send_signal(signal.SIGTERM)
        host.wait(timeout=30)
        cg = cgroup2_root() / group.lstrip("/")
        for pid in (cg / "cgroup.procs").read_text().split():
            os.kill(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while (cg / "cgroup.procs").read_text().split() and time.monotonic() < deadline:
            time.sleep(0.05)
        cg.rmdir()
        shutil.rmtree(tmp_path, ignore_errors=True)
