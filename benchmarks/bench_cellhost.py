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
itself costs), the steps in the order `borgusb cell run` takes them.

Goal (issue 14): private memory per added cell < 8 MiB.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_MIB = 8.0
SETTLE_S = 15.0  # how long the cells run (and talk) before they are measured
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


def main() -> int:
    from borgusb.cells import implemented

    cells = implemented()
    with tempfile.TemporaryDirectory(prefix="borgusb-bench-cellhost-") as tmp:
        base = standalone("peerTreeNet", "127.0.0.221", Path(tmp) / "alone")
        host, per = hosted(cells, "127.0.0.222", Path(tmp) / "hosted")
    ladder = floor(cells, "127.0.0.223")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
