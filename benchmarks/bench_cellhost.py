"""Private memory per cell: forked from the cell host against a process of its own, in one run.

Baseline: `borgusb cell run NAME` as a plain process (what every cell cost
before the cell host). Then the cell host running every implemented cell
type (supervised mode, as hosted mode runs it), each cell's private memory
(Private_Clean + Private_Dirty: the pages no other process maps) measured
after the cells have talked to each other for a while (registry, clock,
heartbeats), split by where the pages are: anonymous memory (Python's object
arenas: a page is copied as soon as the cell writes a reference count of an
object on it), the malloc heap (larger objects, OpenSSL) and libraries.
Then the floor, in this process: one fork of the loaded host measured after
each step a cell takes before it talks to anyone (what the required work
itself costs), the steps in the order `borgusb cell run` takes them. And
why: the same node forked from this process, each cell's pages that only it
maps (/proc/PID/pagemap), split into pages that hold the host's objects
(copied because the cell wrote to one of them) and the cell's own allocations.

Goal (issue 14): private memory per added cell < 8 MiB.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

GOAL_MIB = 8.0
SETTLE_S = 15.0  # how long the cells run (and talk) before they are measured
PAGE = os.sysconf("SC_PAGE_SIZE")
BORGUSB = [sys.executable, "-c", "import sys; from borgusb.cli import main; sys.exit(main())"]


def private_mib(pid: int) -> float:
    kib = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            kib += int(line.split()[1])
    return kib / 1024


def private_parts(pid: int) -> dict[str, float]:
    """Private MiB by kind of mapping: anonymous (Python's object arenas), the malloc heap, files."""
    parts = {"anon": 0, "heap": 0, "files": 0}
    kind = "files"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if not fields[0].endswith(":"):  # a mapping's header: range, perms, offset, dev, inode[, name]
            name = fields[5] if len(fields) > 5 else ""
            kind = "heap" if name == "[heap]" else "anon" if name in ("", "[stack]") else "files"
        elif fields[0] in ("Private_Clean:", "Private_Dirty:"):
            parts[kind] += int(fields[1])
    return {k: v / 1024 for k, v in parts.items()}


def wait_ready(proc: subprocess.Popen, count: int, timeout_s: float = 120.0) -> None:
    assert proc.stdout is not None
    seen, deadline = 0, time.monotonic() + timeout_s
    while seen < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_cellhost: only {seen} of {count} cells became ready")
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("bench_cellhost: the process ended before its cells were ready")
        seen += "BORGUSB-READY" in line


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def standalone(name: str, ip: str, data: Path) -> float:
    proc = subprocess.Popen(
        [*BORGUSB, "cell", "run", name, "--ip", ip, "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_ready(proc, 1)
        time.sleep(SETTLE_S)
        return private_mib(proc.pid)
    finally:
        stop(proc)


def hosted(cells: list[str], ip: str, data: Path) -> tuple[float, dict[str, dict[str, float]]]:
    proc = subprocess.Popen(
        [*BORGUSB, "cellhost", "run", "--cells", ",".join(cells), "--data-root", str(data), "--ip", ip],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_ready(proc, len(cells))
        time.sleep(SETTLE_S)
        children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        per = {Path(f"/proc/{pid}/comm").read_text().strip(): private_parts(pid) for pid in children}
        return private_mib(proc.pid), per
    finally:
        stop(proc)


def floor(cells: list[str], ip: str) -> list[tuple[str, float]]:
    """One fork of the loaded, warmed and frozen host: its private MiB after each step of starting
    peerTreeNet on an address where no registry or clock answers (so: no traffic)."""
    from borgusb.cellhost.host import preload
    from borgusb.cells import spec
    from borgusb.net.tls import make_tls_identity
    from borgusb.node import build_parser, start_cell

    preload(cells)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        steps: list[tuple[str, float]] = []

        def mark(stage: str) -> None:
            steps.append((stage, private_mib(os.getpid())))

        async def run() -> None:
            mark("an event loop")
            args = build_parser("peerTreeNet").parse_args(["run", "peerTreeNet", "--ip", ip])
            cell = await start_cell(spec("peerTreeNet"), args)
            mark("the cell built (settings, keys, clients, a clock sync tried)")
            make_tls_identity("borgusb-bench")
            mark("a TLS identity (fresh P-256 key, certificate, context)")
            await cell.start()
            mark("started: three doors listening, tree started")
            await asyncio.sleep(5)
            mark("5 s alone")
            await cell.stop()

        try:
            mark("the fork itself")
            asyncio.run(run())
            os.write(write_fd, json.dumps(steps).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return [(stage, mib) for stage, mib in json.loads(data or b"[]")]


def exclusive_pages(pid: int) -> set[int]:
    """Page numbers of pid's anonymous and heap memory that only pid maps (pagemap bit 56)."""
    found: set[int] = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            fields = line.split()
            if (fields[5] if len(fields) > 5 else "") not in ("", "[heap]"):
                continue
            start, end = (int(x, 16) // PAGE for x in fields[0].split("-"))
            pagemap.seek(start * 8)
            for i, (entry,) in enumerate(struct.iter_unpack("<Q", pagemap.read((end - start) * 8))):
                if entry >> 63 and entry >> 56 & 1:  # present, exclusively mapped
                    found.add(start + i)
    return found


def object_pages() -> dict[int, Counter[str]]:
    """Every object reachable in this process, by the page its header is on: how many of each type."""
    pages: dict[int, Counter[str]] = defaultdict(Counter)
    seen: set[int] = set()
    stack: list[object] = [sys.modules, *gc.get_objects()]
    while stack:
        obj = stack.pop()
        if id(obj) not in seen:
            seen.add(id(obj))
            pages[id(obj) // PAGE][type(obj).__name__] += 1
            stack.extend(gc.get_referents(obj))
    return pages


def why(cells: list[str], ip: str, data: Path) -> tuple[dict[str, tuple[float, float, dict[str, float]]], float]:
    """Fork every cell of a node from this (loaded) process, let them talk for SETTLE_S, then split
    each cell's exclusive pages: per cell (MiB own pages, MiB of them holding this process's objects,
    MiB by object type shared among a page's objects), and the MiB of pages that hold objects here."""
    from borgusb.cellhost.host import PR_SET_PDEATHSIG, run_cell

    pids: dict[str, int] = {}
    try:
        for name in cells:
            (data / name).mkdir(parents=True)
            pid = os.fork()
            if pid == 0:
                ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # never outlive the bench
                quiet = os.open(os.devnull, os.O_WRONLY)
                os.dup2(quiet, 1)
                os.dup2(quiet, 2)
                try:
                    run_cell(["run", name, "--ip", ip, "--data", str(data / name)])
                finally:
                    os._exit(0)
            pids[name] = pid
        time.sleep(SETTLE_S)
        copied = {name: exclusive_pages(pid) for name, pid in pids.items()}
    finally:
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    pages = object_pages()
    out: dict[str, tuple[float, float, dict[str, float]]] = {}
    for name, found in copied.items():
        shares: dict[str, float] = defaultdict(float)
        held = [pages[page] for page in found if page in pages]
        for on in held:
            for kind, count in on.items():
                shares[kind] += count / sum(on.values()) * PAGE / 2**20
        out[name] = (len(found) * PAGE / 2**20, len(held) * PAGE / 2**20, shares)
    return out, len(pages) * PAGE / 2**20


def main() -> int:
    from borgusb.cells import implemented

    cells = implemented()
    with tempfile.TemporaryDirectory(prefix="borgusb-bench-cellhost-") as tmp:
        base = standalone("peerTreeNet", "127.0.0.221", Path(tmp) / "alone")
        host, per = hosted(cells, "127.0.0.222", Path(tmp) / "hosted")
        ladder = floor(cells, "127.0.0.223")
        reasons, object_mib = why(cells, "127.0.0.224", Path(tmp) / "why")
    print(f"Private memory per cell (Private_Clean + Private_Dirty), after {SETTLE_S:.0f} s of running")
    print(f"  baseline: peerTreeNet as a process of its own    {base:6.1f} MiB")
    print(f"  the cell host ({len(cells)} cell types loaded once)        {host:6.1f} MiB")
    total = {name: sum(parts.values()) for name, parts in per.items()}
    for name, parts in sorted(per.items()):
        verdict = "met" if total[name] < GOAL_MIB else "NOT MET"
        print(
            f"    {name:<22} forked from it             {total[name]:6.1f} MiB  goal < {GOAL_MIB:.0f}: {verdict}  "
            f"(anonymous {parts['anon']:.1f}, malloc heap {parts['heap']:.1f}, files {parts['files']:.1f})"
        )
    mean = sum(total.values()) / max(1, len(total))
    print(f"  ratio forked cell / own process                  {mean / base:6.2f}  (mean {mean:.1f} MiB)")
    print(
        f"  {len(cells)} cells: {host + sum(total.values()):.1f} MiB with the host, against {base * len(cells):.1f} as "
        "processes of their own"
    )
    print("Floor: one fork of the loaded, warmed-up, frozen host, after each step of starting a cell:")
    last = 0.0
    for stage, mib in ladder:
        print(f"  {stage:<62} {mib:6.1f} MiB  (+{mib - last:.1f})")
        last = mib
    started = dict(ladder).get("started: three doors listening, tree started", 0.0)
    print(
        f"  the started cell alone: {started:.1f} MiB; its traffic (registry, clock, peers over TLS) adds "
        f"{mean - started:.1f} MiB in the cell host's run (mean {mean:.1f} against the goal's {GOAL_MIB:.0f})"
    )
    print(f"Why: the same node forked from this process, each cell's own pages after {SETTLE_S:.0f} s:")
    for name, (own, held, shares) in sorted(reasons.items()):
        kinds = ", ".join(f"{kind} {mib:.1f}" for kind, mib in sorted(shares.items(), key=lambda kv: -kv[1])[:4])
        print(
            f"  {name:<22} {own:5.1f} MiB: {held:4.1f} copied from the host for a write to an object on them "
            f"({kinds}), {own - held:.1f} its own allocations"
        )
    held_mean = sum(held for _, held, _ in reasons.values()) / max(1, len(reasons))
    files_mean = sum(parts["files"] for parts in per.values()) / max(1, len(per))
    print(
        f"  a cell copies {held_mean:.1f} MiB of the host's {object_mib:.1f} MiB of object pages "
        f"({held_mean / object_mib:.0%}): CPython 3.11 writes an object's reference count into the object "
        "whenever code uses it (a call: its function and code; a constant; a global; a key), so running the "
        "code copies the pages it lives on"
    )
    print(
        f"  floor set by the required work: {held_mean:.1f} (objects used) + {files_mean:.1f} (libraries' data) = "
        f"{held_mean + files_mean:.1f} MiB per cell before any allocation of its own; goal < {GOAL_MIB:.0f}: "
        + ("reachable" if held_mean + files_mean < GOAL_MIB else "NOT reachable this way")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
