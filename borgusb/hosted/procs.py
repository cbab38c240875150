"""The processes hosted mode starts (the node's cells, one conduit per stick): started with their home, temp
and cache directories in RAM, as a user of their own with no capabilities and no way to gain any (see
users.py), their output kept in memory, and stopped together (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import collections
import ctypes
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .users import Account

STOP_GRACE_S = 0.8  # SIGTERM, then SIGKILL: the conduit must be gone within 2 s of the removal
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
_libc = ctypes.CDLL(None)  # loaded here: a forked child of a threaded process must not dlopen


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
    """This interpreter, writing no bytecode, with no working directory on its import path (-P)."""
    return [sys.executable, "-B", "-P"]


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


def _confine() -> None:
    """preexec_fn, after the change of user: no new privileges (setuid programs, file capabilities),
    no core dumps, and SIGKILL when the watcher dies, even by SIGKILL (a change of user clears it, so
    it is set here)."""
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def spawn(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    ready_text: str,
    log: MemoryLog,
    account: Account | None = None,
    pass_fds: Sequence[int] = (),
) -> Proc:
    """Start `cmd` in its own process group (killed with the watcher), as `account` if given (None: as
    the watcher's own user); `ready` is set when it prints `ready_text`; its output goes to `log`."""
    who: dict = {} if account is None else {"user": account.uid, "group": account.gid, "extra_groups": []}
    popen = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=env["HOME"],
        start_new_session=True,
        pass_fds=tuple(pass_fds),
        umask=0o077,
        preexec_fn=_confine,
        **who,
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


def can_run(account: Account, env: dict[str, str]) -> str | None:
    """None if `account` can run this interpreter and import the conduit's code, else why not (the last
    line of the error): a checkout or venv in a private home is out of its reach."""
    try:
        proc = subprocess.run(
            [*python(), "-c", "import borgusb.hosted.conduit"],
            env=env,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=120,
            user=account.uid,
            group=account.gid,
            extra_groups=[],
            preexec_fn=_confine,
        )
    except OSError as exc:
        return f"{sys.executable}: {exc.strerror}"
    lines = (proc.stderr or "").strip().splitlines()
    return None if proc.returncode == 0 else (lines[-1] if lines else f"exit status {proc.returncode}")
