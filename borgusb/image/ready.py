"""The ready probe (borgusb-ready.service): wait until every cell wanted by borgusb-cells.target answers on its
monitoring port, then print on every console

* ``BORGUSB-READY cells=N/M t=S ip=... identity=... mem=...MiB node=... cellkeys=... conduit=...``;
* ``BORGUSB-MEM`` and ``BORGUSB-HYGIENE`` (borgusb.image.memory);
* what the stick's marker asks for in ``selftest``: ``BORGUSB-TIMELINE`` (when each unit on the way to the
  cells started and became active), ``BORGUSB-SELFTEST conduit`` (one request to the conduit), and the AI
  stack's checks ``ai`` and ``think`` (borgusb.image.aiprobe).

The probe is counted in the RAM it reports: it asks over plain sockets (no urllib) and loads the marker's
parser only after the reports.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path

from ..clitools import EXIT_UNREACHABLE
from .memory import hygiene_report, mem_in_use_mib, memory_report
from .probehttp import http_get, mon_port
from .runtime import CELL_ARGS, IDENTITY, RUN, STICK, say, uptime

CELLS_WANTS = Path("/etc/systemd/system/borgusb-cells.target.wants")
CONDUIT_PORT = 8088  # borgusb-conduit.socket


def wanted_cells() -> list[str]:
    try:
        names = sorted(p.name for p in CELLS_WANTS.iterdir())
    except OSError:
        return []
    return [n[len("borgusb-cell@") : -len(".service")] for n in names if n.startswith("borgusb-cell@")]


def node_ip() -> str:
    """The address the cells were given (cell.args' --ip), else the one with the default route."""
    try:
        words = shlex.split(CELL_ARGS.read_text(), comments=True)
    except (OSError, ValueError):
        words = []
    if "--ip" in words[:-1]:
        return words[words.index("--ip") + 1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def answers(ip: str, port: int) -> bool:
    try:
        return http_get(ip, port, "/status")[0] == 200
    except OSError:
        return False


def cell_fingerprints(ip: str, cells: list[str]) -> list[str]:
    """The node-key fingerprint each ready cell signs with (from its monitoring JSON)."""
    out = set()
    for cell in cells:
        port = mon_port(cell)
        if port is None:
            continue
        try:
            status, body = http_get(ip, port, "/status")
            if status == 200:
                out.add(json.loads(body)["fingerprint"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(out)


def cmd_ready(timeout: float) -> int:
    cells = wanted_cells()
    ip = node_ip()
    pending = {c: mon_port(c) for c in cells}
    ready: list[str] = []
    deadline = time.monotonic() + timeout
    next_report = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        if time.monotonic() > next_report:
            say(f"still waiting for cells: {', '.join(sorted(pending))} (t={uptime():.0f}s)")
            next_report += 60
        for cell, port in list(pending.items()):
            if port is not None and answers(ip, port):
                ready.append(cell)
                del pending[cell]
        if pending:
            time.sleep(0.5)
    try:
        identity = json.loads(IDENTITY.read_text()).get("identity") or "none"
    except (OSError, ValueError):
        identity = "none"
    line = (
        f"BORGUSB-READY cells={len(ready)}/{len(cells)} t={uptime():.1f}s ip={ip} identity={identity}"
        f" mem={mem_in_use_mib()}MiB"
    )
    if pending:
        line += " missing=" + ",".join(sorted(pending))
    try:
        line += " node=" + json.loads((RUN / "node.json").read_text())["fingerprint"]
    except (OSError, ValueError, KeyError):
        pass
    line += " cellkeys=" + ",".join(cell_fingerprints(ip, ready))  # one key when the cells use the node key
    line += " conduit=" + conduit_state()
    say(line)
    say(memory_report(cells))
    say(hygiene_report())
    selftests = marker_selftests()
    if "timeline" in selftests:  # where the boot's time went, for the image benchmark
        say("BORGUSB-TIMELINE " + boot_timeline(cells))
    if "conduit" in selftests:
        say(conduit_selftest())
    if "cells" in selftests:
        say(cells_selftest(cells))
    if "cli" in selftests:
        say(cli_selftest(ip))
    if "ai" in selftests or "think" in selftests:  # the stick's AI stack (borgusb.image.aiprobe)
        from .aiprobe import ai_selftest, think_selftest

        if "ai" in selftests:
            say(ai_selftest(ip))
        if "think" in selftests:
            think_selftest(ip, cells, say)
    return 0 if not pending else 1


def marker_selftests() -> tuple[str, ...]:
    """What the stick's marker asks for in ``selftest`` (a bad marker was told by the stick step: none)."""
    from ..stick import MARKER, Marker, MarkerError

    try:
        return Marker.parse((STICK / MARKER).read_bytes()).selftest
    except (OSError, MarkerError):
        return ()


def boot_timeline(cells: list[str]) -> str:
    """``unit=start-active`` in seconds since the kernel started, for the units on the way to the
    cells (the boot is not finished yet, so systemd-analyze's own reports are not available)."""
    units = [
        "systemd-modules-load.service",
        "borgusb-kernel-modules.service",
        "usr-lib-python3.11.mount",
        "systemd-udev-trigger.service",
        "local-fs.target",
        "sysinit.target",
        "basic.target",
        "borgusb-stick.service",
        "systemd-networkd.service",
        "network-online.target",
        "borgusb-cellhost.service",  # active once it has loaded every cell's code (its preload)
        *[f"borgusb-cell@{c}.service" for c in cells],
    ]
    out = []
    for unit in units:
        props = subprocess.run(
            ["systemctl", "show", "-P", "InactiveExitTimestampMonotonic", "-P", "ActiveEnterTimestampMonotonic", unit],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if len(props) == 2 and all(p.isdigit() for p in props):
            out.append(f"{unit.split('.')[0]}={int(props[0]) / 1e6:.1f}-{int(props[1]) / 1e6:.1f}")
    try:
        stick = json.loads(IDENTITY.read_text()).get("timeline") or {}
        out.append("stick-python=" + "-".join(str(stick[k]) for k in ("started", "device", "done")))
    except (OSError, ValueError, KeyError):
        pass
    if cells:
        after = subprocess.run(
            ["systemctl", "show", "-P", "After", f"borgusb-cell@{cells[0]}.service"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        out.append("cells-after=" + ",".join(sorted(after)))
    return " ".join(out)


def unit_active(unit: str) -> bool:
    return subprocess.run(["systemctl", "is-active", "--quiet", unit], check=False).returncode == 0


def conduit_state() -> str:
    """``running``; ``on-demand`` (systemd listens on 127.0.0.1:8088 and starts it on the first
    connection, borgusb-conduit.socket); else ``off``."""
    if unit_active("borgusb-conduit.service"):
        return "running"
    return "on-demand" if unit_active("borgusb-conduit.socket") else "off"


def cells_selftest(cells: list[str]) -> str:
    """``BORGUSB-SELFTEST cells``: each cell as systemd sees it: its unit active, its main process the
    forked cell (named after it, a child of the cell host, in the unit's own cgroup, not root)."""
    host = subprocess.run(
        ["systemctl", "show", "-P", "MainPID", "borgusb-cellhost.service"], capture_output=True, text=True, check=False
    ).stdout.strip()
    out = []
    for cell in cells:
        unit = f"borgusb-cell@{cell}.service"
        props = dict(
            line.split("=", 1)
            for line in subprocess.run(
                ["systemctl", "show", "-p", "ActiveState", "-p", "MainPID", "-p", "ControlGroup", unit],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.splitlines()
            if "=" in line
        )
        pid = props.get("MainPID", "0")
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            name, ppid, uid = fields["Name"].strip(), fields["PPid"].strip(), fields["Uid"].split()[0]
            group = Path(f"/proc/{pid}/cgroup").read_text().strip().rsplit("::", 1)[-1]
        except (OSError, KeyError):
            name = ppid = uid = group = "?"
        ok = (
            props.get("ActiveState") == "active"
            and name == cell[:15]
            and ppid == host
            and uid != "0"
            and group == props.get("ControlGroup")
        )
        out.append(f"{cell}={'ok' if ok else 'BAD'}:{props.get('ActiveState')}:pid{pid}:ppid{ppid}:uid{uid}")
    return "BORGUSB-SELFTEST cells " + " ".join(out)


CLI_TIMEOUT_S = 120  # per request: a guest under TCG emulation on a busy host answers in tens of seconds


def _cli(cmd: list[str]) -> tuple[subprocess.CompletedProcess[str], int]:
    """A `borgusb` command, tried again once when the first try found the shard cell too busy to
    answer (a guest just booted, its cells loading the AI stack under TCG); and how many tries."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3 * CLI_TIMEOUT_S, check=False)
    if done.returncode != EXIT_UNREACHABLE:
        return done, 1
    return subprocess.run(cmd, capture_output=True, text=True, timeout=3 * CLI_TIMEOUT_S, check=False), 2


def cli_selftest(ip: str) -> str:
    """``BORGUSB-SELFTEST cli``: the `borgusb` command inside the image (no tqdm here), a 3 MiB file put
    into the node's shard cell and read back with its progress lines."""
    import hashlib

    work = RUN / "selftest-cli"
    work.mkdir(parents=True, exist_ok=True)
    src, back, key = work / "file", work / "back", work / "key"
    src.write_bytes(os.urandom(3 << 20))
    common = ["--node", ip, "--key-file", str(key), "--timeout", str(CLI_TIMEOUT_S)]
    put, put_tries = _cli(["borgusb", "put", str(src), "--r", "1", *common])
    oid = put.stdout.strip().split()[-1] if put.returncode == 0 and put.stdout.strip() else ""
    get, get_tries = _cli(["borgusb", "get", oid, "-o", str(back), *common]) if oid else (None, 0)
    same = back.exists() and hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
    progress = sum(1 for line in put.stderr.splitlines() if "%" in line)
    result = (
        f"put={put.returncode} get={get.returncode if get else 'skipped'} same={'yes' if same else 'no'}"
        f" progress-lines={progress} put-tries={put_tries} get-tries={get_tries}"
    )
    if put.returncode or not same:
        result += " error=" + (put.stderr + (get.stderr if get else "")).strip().replace("\n", " | ")[-300:]
    shutil.rmtree(work, ignore_errors=True)
    return "BORGUSB-SELFTEST cli " + result


def conduit_selftest(timeout: float = 300.0) -> str:
    """``BORGUSB-SELFTEST``: one browser-like request to the conduit (the stick's marker asks for
    it with ``"selftest": ["conduit"]``); on a socket-activated conduit it is the one that starts it."""
    before = conduit_state()
    started = time.monotonic()
    try:
        path, hops = "/", 0
        while True:  # the front door answers with the page shell (no secret needed); follow a redirect if any
            headers: dict[str, str] = {}
            status, page = http_get("127.0.0.1", CONDUIT_PORT, path, timeout=timeout, headers=headers)
            location = headers.get("location", "")
            if status not in (301, 302, 303, 307) or not location.startswith("/") or hops >= 3:
                break
            path, hops = location, hops + 1
        result = f"status={status} bytes={len(page)} page={path}"
    except OSError as exc:
        result = f"failed={exc.__class__.__name__}"
    return (
        f"BORGUSB-SELFTEST conduit {result} was={before} now={conduit_state()}"
        f" answered-in={time.monotonic() - started:.1f}s"
    )
