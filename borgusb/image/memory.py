"""What the ready probe reports about memory: ``BORGUSB-MEM`` (where the RAM goes once the node is up) and
``BORGUSB-HYGIENE`` (no swap, freed memory zeroed, transparent huge pages off), read from /proc and /sys."""

from __future__ import annotations

import subprocess
from pathlib import Path


def mem_in_use_mib(info: dict[str, int] | None = None) -> int:
    """RAM in use (MemTotal - MemAvailable, as `free` counts it; the RAM root counts as in use)."""
    info = info or meminfo()
    return (info["MemTotal"] - info["MemAvailable"]) // 1024


def meminfo() -> dict[str, int]:
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        info[key] = int(value.split()[0])
    return info


def unit_pids(unit: str) -> list[str]:
    """The processes in a unit's cgroup (a forked cell is there, though systemd did not start it)."""
    group = subprocess.run(
        ["systemctl", "show", "-P", "ControlGroup", unit], capture_output=True, text=True, check=False
    ).stdout.strip()
    try:
        return Path(f"/sys/fs/cgroup{group}/cgroup.procs").read_text().split() if group else []
    except OSError:
        return []


def unit_memory_kib(unit: str, fields: tuple[str, ...]) -> int:
    """The sum of smaps_rollup fields over a unit's processes."""
    total = 0
    for pid in unit_pids(unit):
        try:
            for row in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if row.startswith(fields):
                    total += int(row.split()[1])
        except OSError:
            continue
    return total


def unit_pss_kib(unit: str) -> int:
    """Proportional set size of every process of a unit (shared pages counted fairly)."""
    return unit_memory_kib(unit, ("Pss:",))


def unit_private_kib(unit: str) -> int:
    """Private memory of a unit's processes: pages no other process maps (what the unit alone costs;
    a cell forked from the cell host shares its code and imports with it and with every other cell)."""
    return unit_memory_kib(unit, ("Private_Clean:", "Private_Dirty:"))


def anon_by_program(top: int = 8) -> str:
    """Private anonymous memory (heap, stacks) of every process, summed by program name, largest
    first: what the RAM root's files cannot explain. ``name:MiB`` pairs."""
    totals: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            name = (proc / "comm").read_text().strip()
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            rows = (proc / "smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        if name.startswith("python") and len(argv) > 2:  # name the module or script it runs
            args = [a.decode(errors="replace") for a in argv[1:] if a]
            if args and args[0] == "-m" and len(args) > 1:
                name = args[1] + (f".{args[2]}" if len(args) > 2 else "")
            elif args:
                name = Path(args[0]).name
        for row in rows:
            if row.startswith("Pss_Anon:"):
                totals[name] = totals.get(name, 0) + int(row.split()[1])
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    return ",".join(f"{name}:{kib // 1024}" for name, kib in ranked)


def hygiene_report() -> str:
    """``BORGUSB-HYGIENE``: the memory settings the image promises, as the running kernel has them:
    active swap areas (none), freed memory zeroed (init_on_free), transparent huge pages (never)."""
    try:
        swaps = len(Path("/proc/swaps").read_text().splitlines()[1:])
        words = Path("/proc/cmdline").read_text().split()
    except OSError:
        swaps, words = -1, []
    zeroed = "on" if "init_on_free=1" in words else "off"
    return f"BORGUSB-HYGIENE swaps={swaps} zero-on-free={zeroed} thp={thp_mode()}"


def memory_report(cells: list[str]) -> str:
    """``BORGUSB-MEM``: where the RAM goes once the node is up (MiB)."""
    info = meminfo()
    per = {c: unit_pss_kib(f"borgusb-cell@{c}.service") // 1024 for c in cells}
    private = {c: unit_private_kib(f"borgusb-cell@{c}.service") for c in cells}
    host = unit_private_kib("borgusb-cellhost.service")
    conduit = unit_pss_kib("borgusb-conduit.service") // 1024
    kernel = sum(info.get(k, 0) for k in ("Slab", "KernelStack", "PageTables")) // 1024
    return (
        f"BORGUSB-MEM total={info['MemTotal'] // 1024}MiB used={mem_in_use_mib(info)}MiB"
        f" available={info['MemAvailable'] // 1024}MiB root+tmpfs={info.get('Shmem', 0) // 1024}MiB"
        f" cells={sum(per.values())}MiB conduit={conduit}MiB kernel={kernel}MiB"
        " per-cell="
        + ",".join(f"{c}:{v}" for c, v in per.items())
        + f" cell-types={len(cells)} cellhost-private={host / 1024:.1f}MiB"
        + f" cells-private={sum(private.values()) / 1024:.1f}MiB private-cell="
        + ",".join(f"{c}:{v / 1024:.1f}" for c, v in private.items())
        + f" anon-all={info.get('AnonPages', 0) // 1024}MiB anon-top="
        + anon_by_program()
        + " meminfo="
        + ",".join(
            f"{k}:{info.get(k, 0) // 1024}"
            for k in (
                "MemFree",
                "Cached",
                "Buffers",
                "Unevictable",
                "Mlocked",
                "SReclaimable",
                "SUnreclaim",
                "VmallocUsed",
                "Percpu",
                "KernelStack",
                "PageTables",
                "CmaTotal",
                "HugePages_Total",
            )
        )
        + f" min_free={min_free_kib() // 1024}MiB"
    )


def min_free_kib() -> int:
    """The kernel's free-page reserve (vm.min_free_kbytes): RAM that counts as in use."""
    try:
        return int(Path("/proc/sys/vm/min_free_kbytes").read_text())
    except (OSError, ValueError):
        return 0


def thp_mode() -> str:
    """Transparent huge pages' mode (the bracketed word), 'none' when the kernel has no THP."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "none"
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else text.strip()
