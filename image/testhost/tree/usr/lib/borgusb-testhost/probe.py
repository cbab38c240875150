#!/usr/bin/python3
"""Test host PC only: checks `borgusb hosted` from inside the PC, one console line per fact.

Independent of the watcher: its own udev monitor and the kernel log give the
times of insertion and removal; it connects to the conduit on localhost as a
browser would, and looks into the watcher's private mount namespace (nsenter)
for mounts and the RAM directory. Every line starts with TESTHOST and the
guest's CLOCK_MONOTONIC; tests/hosted/test_qemu_hotplug.py reads them from the
serial console. One stick cycle: insert -> conduit answers -> remove ->
conduit gone (time) -> nothing left; then the watcher is stopped and checked.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pyudev

PORT = 8088
RAM = "/dev/shm/borgusb-hosted"


def say(msg: str) -> None:
    print(f"TESTHOST t={time.monotonic():.3f} {msg}", flush=True)


def answers(port: int = PORT) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def conduit_secret(timeout_s: float = 60.0) -> str:
    """The secret in the conduit's link, from the watcher's READY line (the person reads it on the
    terminal; here the journal, which only root reads). '' if it never came."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["journalctl", "-u", "borgusb-hosted.service", "-o", "cat", "--no-pager"], capture_output=True, text=True
        ).stdout
        found = re.search(r"BORGUSB-HOSTED-READY .*url=\S+#k=(\S+)", out)
        if found:
            return found.group(1)
        time.sleep(0.1)
    return ""


def http_status(port: int = PORT, path: str = "/unlock", secret: str = "") -> str:
    """The unlock page as the conduit's page script gets it (with the link's secret): status, size and
    the wallet address it shows."""
    headers = {"X-Borg-Conduit": secret} if secret else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            body = r.read().decode(errors="replace")
            found = re.search(r"\bD[1-9A-HJ-NP-Za-km-z]{25,34}\b", body)
            return f"{r.status} bytes={len(body)} shows={found.group(0) if found else '-'}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code}"
    except OSError as exc:
        return f"error:{str(exc).replace(' ', '_')}"


def watcher_pid() -> int:
    out = subprocess.run(
        ["systemctl", "show", "-P", "MainPID", "borgusb-hosted.service"], capture_output=True, text=True
    ).stdout.strip()
    return int(out or 0)


def in_watcher_ns(pid: int, script: str) -> str:
    if not pid:
        return ""
    return subprocess.run(
        ["nsenter", "-t", str(pid), "-m", "--", "sh", "-c", script], capture_output=True, text=True
    ).stdout


def stick_mounts(text: str, node: str) -> list[str]:
    disk = node.rstrip("0123456789") if node else "/dev/sd"
    return [line.split()[0] + " on " + line.split()[1] for line in text.splitlines() if line.startswith(disk)]


def ram_sessions(pid: int) -> list[str]:
    return in_watcher_ns(pid, f"ls -A {RAM} 2>/dev/null").split()


def children(pid: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


class Kmsg:
    """The kernel log from now on; kernel timestamps are CLOCK_MONOTONIC microseconds."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)

    def find(self, text: str) -> float | None:
        while True:
            try:
                rec = os.read(self.fd, 8192).decode(errors="replace")
            except BlockingIOError:
                return None
            except OSError:  # overrun: keep reading
                continue
            head, _, msg = rec.partition(";")
            if text in msg:
                return int(head.split(",")[2]) / 1e6


def main() -> int:
    ctx = pyudev.Context()
    mon = pyudev.Monitor.from_netlink(ctx)
    mon.filter_by("block")
    mon.start()
    kmsg = Kmsg()
    say("PROBE-READY")
    node, t_add, t_up = "", 0.0, 0.0
    while True:  # insertion, then the conduit
        dev = mon.poll(timeout=0.05)
        if dev is not None and dev.action in ("add", "change") and dev.get("ID_FS_LABEL") == "BORGUSB" and not node:
            node, t_add = dev.device_node, time.monotonic()
            say(f"KERNEL-ADD node={node} fstype={dev.get('ID_FS_TYPE')}")
        if node and answers():
            t_up = time.monotonic()
            break
    pid = watcher_pid()
    status = http_status(secret=conduit_secret())
    anonymous = http_status().replace(" ", "_")  # any other program on the PC: the page shell, no address
    ns = in_watcher_ns(pid, "cat /proc/self/mounts")
    host = open("/proc/1/mounts").read()
    say(
        f"CONDUIT-UP port={PORT} status={status} anonymous={anonymous} after_add_s={t_up - t_add:.1f} "
        f"watcher_ns_stick_mounts={len(stick_mounts(ns, node))} host_stick_mounts={len(stick_mounts(host, node))} "
        f"ram_sessions={','.join(ram_sessions(pid)) or '-'} children={len(children(pid))}"
    )
    disk = node.rstrip("0123456789")
    t_rm = 0.0
    while not t_rm:  # removal
        dev = mon.poll(timeout=1.0)
        if dev is not None and dev.action == "remove" and dev.device_node in (node, disk):
            t_rm = time.monotonic()
            say(f"KERNEL-REMOVE node={dev.device_node}")
    while answers():
        time.sleep(0.005)
    t_gone = time.monotonic()
    t_kernel = kmsg.find("USB disconnect")
    say(
        f"CONDUIT-GONE after_event_ms={(t_gone - t_rm) * 1000:.0f} "
        f"after_kernel_ms={(t_gone - t_kernel) * 1000 if t_kernel else -1:.0f}"
    )
    deadline = time.monotonic() + 5
    while True:
        ns = in_watcher_ns(pid, "cat /proc/self/mounts")
        left = {
            "watcher_ns_stick_mounts": stick_mounts(ns, node),
            "host_stick_mounts": stick_mounts(open("/proc/1/mounts").read(), node),
            "ram_sessions": ram_sessions(pid),
            "children": children(pid),
        }
        if not any(left.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    say(
        f"AFTER-REMOVAL {'clean' if not any(left.values()) else 'LEFT'} "
        + " ".join(f"{k}={len(v)}" for k, v in left.items())
        + (f" left={left}" if any(left.values()) else "")
    )
    subprocess.run(["systemctl", "stop", "borgusb-hosted.service"], capture_output=True)
    procs = subprocess.run(["pgrep", "-f", "borgusb"], capture_output=True, text=True).stdout.split()
    procs = [p for p in procs if int(p) != os.getpid()]
    gone = not os.path.exists(f"/proc/{pid}") if pid else True
    shm = os.path.exists(RAM)
    say(
        f"WATCHER-STOPPED {'clean' if gone and not procs and not shm else 'LEFT'} watcher_exited={gone} "
        f"borgusb_processes={len(procs)} host_ram_dir={shm}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
