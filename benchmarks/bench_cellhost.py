"""Private memory per cell: forked from the cell host against a process of its own, in one run.

Baseline: `borgusb cell run NAME` as a plain process (what every cell cost
before the cell host). Then the cell host running every implemented cell
type (supervised mode, as hosted mode runs it), each cell's private memory
(Private_Clean + Private_Dirty: the pages no other process maps) measured
after the cells have talked to each other for a while (registry, clock,
heartbeats). Then the floors, in this process: a fork of the loaded host
that does nothing, one that only runs an event loop, and one that starts a
cell that has not yet talked to anyone: what the required work itself costs.

Goal (issue 14): private memory per added cell < 8 MiB.
"""

from __future__ import annotations

import asyncio
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


def hosted(cells: list[str], ip: str, data: Path) -> tuple[float, dict[str, float]]:
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
        per = {Path(f"/proc/{pid}/comm").read_text().strip(): private_mib(pid) for pid in children}
        return private_mib(proc.pid), per
    finally:
        stop(proc)


def floors(cells: list[str], ip: str) -> dict[str, float]:
    """Forks of a loaded, warmed and frozen host, measured after a few seconds each."""
    from borgusb.cellhost.host import preload
    from borgusb.cells import spec
    from borgusb.node import build_parser, start_cell

    preload(cells)
    out: dict[str, float] = {}
    for stage in ("idle fork", "event loop", "cell started, no traffic yet"):
        pid = os.fork()
        if pid == 0:
            if stage == "idle fork":
                time.sleep(60)
            elif stage == "event loop":
                asyncio.run(asyncio.sleep(60))
            else:

                async def run() -> None:
                    args = build_parser("peerTreeNet").parse_args(["run", "peerTreeNet", "--ip", ip])
                    cell = await start_cell(spec("peerTreeNet"), args)
                    await cell.start()
                    await asyncio.sleep(60)

                asyncio.run(run())
            os._exit(0)
        time.sleep(6)
        out[stage] = private_mib(pid)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return out


def main() -> int:
    from borgusb.cells import implemented

    cells = implemented()
    with tempfile.TemporaryDirectory(prefix="borgusb-bench-cellhost-") as tmp:
        base = standalone("peerTreeNet", "127.0.0.221", Path(tmp) / "alone")
        host, per = hosted(cells, "127.0.0.222", Path(tmp) / "hosted")
    floor = floors(cells, "127.0.0.223")
    print(f"Private memory per cell (Private_Clean + Private_Dirty), after {SETTLE_S:.0f} s of running")
    print(f"  baseline: peerTreeNet as a process of its own    {base:6.1f} MiB")
    print(f"  the cell host ({len(cells)} cell types loaded once)        {host:6.1f} MiB")
    for name, mib in sorted(per.items()):
        verdict = "met" if mib < GOAL_MIB else "NOT MET"
        print(f"    {name:<22} forked from it             {mib:6.1f} MiB  goal < {GOAL_MIB:.0f}: {verdict}")
    mean = sum(per.values()) / max(1, len(per))
    print(f"  ratio forked cell / own process                  {mean / base:6.2f}  (mean {mean:.1f} MiB)")
    print(
        f"  {len(cells)} cells: {host + sum(per.values()):.1f} MiB with the host, against {base * len(cells):.1f} as "
        "processes of their own"
    )
    print("Floors (forks of the loaded, warmed-up, frozen host):")
    for stage, mib in floor.items():
        print(f"  {stage:<46} {mib:6.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
