"""The processes hosted mode starts (the node's cells, one conduit per stick): started with their home, temp
and cache directories in RAM, their output kept in memory, and stopped together (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import mounts

STOP_GRACE_S = 0.8  # SIGTERM, then SIGKILL: the conduit must be gone within 2 s of the removal


class MemoryLog:
    """Logs go to the terminal and to a bounded list in memory: never to a file."""

    def __init__(self, size: int = 5000, echo: bool = True) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=size)
        self.echo = echo
        self.lock = threading.Lock()
        self.t0 = time.monotonic()

    def __call__(self, message: str) -> None:
        line = f"[{time.monotonic() - self.t0:8.3f}] {message}"
        with self.lock:
            self.lines.append(line)
            if self.echo:
                try:
                    print(line, flush=True)
                except (OSError, ValueError):
                    pass


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    ready: threading.Event = field(default_factory=threading.Event)
    ready_line: str = ""  # the line that said it was ready (a conduit's carries its link)


def python() -> list[str]:
    """This interpreter, writing no bytecode."""
    return [sys.executable, "-B"]


def child_env(home: Path) -> dict[str, str]:
    """A child's environment: home, temp, caches and data under `home` (RAM); nothing from the host's."""
    for sub in ("home", "tmp", "cache", "config", "data", "state"):
        (home / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONUNBUFFERED": "1",
        "HOME": str(home / "home"),
        "TMPDIR": str(home / "tmp"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_STATE_HOME": str(home / "state"),
        "HISTFILE": "/dev/null",
        "BORGUSB_DATA_ROOT": str(home / "data"),
    }
    if os.environ.get("PYTHONPATH"):  # the bundle on the stick
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def spawn(name: str, cmd: list[str], env: dict[str, str], ready_text: str, log: MemoryLog) -> Proc:
    """Start `cmd` in its own process group (killed with the watcher); `ready` is set when it prints
    `ready_text`; its output goes to `log`."""
    popen = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=env["HOME"],
        start_new_session=True,
        preexec_fn=mounts.die_with_parent,
    )
    proc = Proc(name, popen)

    def pump() -> None:
        assert popen.stdout is not None
        for raw in popen.stdout:
            line = raw.decode(errors="replace").rstrip()
            if ready_text in line and not proc.ready.is_set():
                proc.ready_line = line
                proc.ready.set()
            log(f"{name}: {line}")

    threading.Thread(target=pump, name=f"log-{name}", daemon=True).start()
    return proc


def stop_procs(procs: list[Proc]) -> None:
    """SIGTERM all at once, SIGKILL whatever is left after STOP_GRACE_S."""
    live = [p for p in procs if p.popen.poll() is None]
    for p in live:
        try:
            os.killpg(p.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_GRACE_S
    for p in live:
        try:
            p.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in live:
        if p.popen.poll() is None:
            try:
                os.killpg(p.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.popen.wait()
        else:  # its process group may still hold helpers
            try:
                os.killpg(p.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
