"""The hosted-mode watcher: udev events in, one session per stick, every process and file accounted for.

A *session* is one inserted stick: its device, its conduit process and its
directory in RAM. The *node* (the machine's cells) runs while at least one
session does. Nothing here writes outside the RAM directory; logs are kept in
memory (``MemoryLog``) and printed on the terminal. The watcher is the only
part that stays root: the node and each conduit run as users of their own
(``users``), and the stick is read and written by the watcher alone
(``stickfs``; a conduit's one write goes through ``stickwrite``). The pieces:
``udev`` (where sticks come from), ``stickread`` (what a stick holds, or why it
is refused, and counted), ``procs`` (starting and stopping the processes).
"""

from __future__ import annotations

import collections
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cells import implemented
from ..stick import KEYSTORE, LABEL, MARKER
from . import mounts, udev, users
from .procs import MemoryLog, Proc, can_run, child_env, python, spawn, stop_procs
from .stickread import StickRejected, open_stick, read_stick
from .stickwrite import WriteService
from .users import Account

RESCAN_S = 2.0  # how often the present sticks are listed, in case an insertion's event was lost
REPROBE_S = 10.0  # how often udevd is asked again to probe a partition it has no filesystem for
MAX_REPROBES = 64  # partitions asked at once
REPROBE_TRIES = 3  # times one partition is asked (one without any filesystem is then left alone)

__all__ = ["MemoryLog", "Options", "Session", "Watcher", "install_signal_handlers"]


@dataclass
class Session:
    sid: str
    device: str  # /dev/... node
    sys_path: str
    fstype: str
    ram: Path
    port: int
    identity: str | None
    backend: str  # how the stick is read and written: "mtools", "kernel" or "dir" (in place)
    account: Account | None  # the conduit's user (None: the watcher's own, when it is not root)
    writer: WriteService
    stick_dir: Path | None = None
    conduit: Proc | None = None
    started: float = field(default_factory=time.monotonic)
    announced: bool = False


@dataclass
class Options:
    port: int = 8088
    node_ip: str | None = None
    join: list[str] = field(default_factory=list)
    cells: list[str] | None = None  # None: every cell type this version implements
    open_browser: bool = False
    stick_dir: Path | None = None  # run for the stick mounted there (the launcher on the stick)
    idle_lock_min: float = 10.0
    ram_size: str = "256m"
    code_dir: Path | None = None  # the checked RAM copy the launcher on the stick runs from (removed at the end)
    test_drop_events: tuple[str, ...] = ()  # TEST ONLY: udev actions to ignore (see Watcher.drops_event)


class Watcher:
    def __init__(self, opts: Options, log: MemoryLog | None = None) -> None:
        self.opts = opts
        self.log = log or MemoryLog()
        self.sessions: dict[str, Session] = {}
        self.rejected: dict[str, str] = {}  # device -> why (told once per insertion)
        self.reprobed: dict[str, tuple[float, int]] = {}  # partition sys path -> (last asked, times asked)
        self.refused: collections.Counter[str] = collections.Counter()  # insertions refused, by reason
        self.node: list[Proc] = []
        self.node_account: Account | None = None
        self.ram_root: Path | None = None
        self.private = False
        self.stopping = False
        self.ids = itertools.count(1)
        self.events: udev.BlockEvents | None = None

    # ------------------------------------------------------------ set-up / tear-down

    def setup(self) -> None:
        """Private mount namespace with RAM over every temp directory (root), else a private RAM dir."""
        if os.geteuid() == 0:
            mounts.private_namespace()
            self.private = True
            # In this namespace every place a program might put a temp file is RAM.
            # Never hide what this program runs from: the stick, the interpreter, BorgUSB itself
            # (a checkout or venv may live under /tmp). Such a directory stays as it is; the
            # processes started here still get their temp and home directories in RAM.
            needed = [
                str(Path(p).resolve()) + "/"
                for p in (
                    self.opts.stick_dir,
                    sys.prefix,
                    sys.base_prefix,
                    Path(sys.executable).parent,
                    Path(__file__).resolve().parents[2],
                    *os.environ.get("PYTHONPATH", "").split(os.pathsep),  # where added cells are installed
                )
                if p
            ]
            for d in ("/tmp", "/var/tmp", "/dev/shm"):
                if os.path.isdir(d) and not any(n.startswith(d + "/") for n in needed):
                    mounts.mount("tmpfs", d, "tmpfs", mounts.MS_NOSUID | mounts.MS_NODEV, "mode=1777,size=64m")
                elif os.path.isdir(d):
                    self.log(f"{d} is not covered with RAM: BorgUSB runs from it")
            self.ram_root = Path("/dev/shm/borgusb-hosted")
            self.ram_root.mkdir(mode=0o700)
            # 0711: each process's own directory below is reachable by its user alone; nobody lists them
            mounts.mount_tmpfs(self.ram_root, size=self.opts.ram_size, mode="0711")
            self.node_account = users.pick()
            probe = self.ram_root / "probe"
            env = child_env(probe)
            users.give(probe, self.node_account)
            why = can_run(self.node_account, env)
            shutil.rmtree(probe, ignore_errors=True)
            if why is not None:
                raise SystemExit(
                    "borgusb hosted: the cells and conduits run as a user of their own, which cannot run this "
                    f"installation ({why}). Install BorgUSB where every user can read it (for example a venv "
                    "under /opt), or start the launcher on the stick"
                )
        else:
            if self.opts.stick_dir is None:
                raise SystemExit(
                    "borgusb hosted: mounting the stick privately needs root (run it with sudo), "
                    "or start the launcher on the stick (it uses the stick where it is mounted)"
                )
            import tempfile

            base = os.environ.get("XDG_RUNTIME_DIR") or "/dev/shm"
            self.ram_root = Path(tempfile.mkdtemp(prefix="borgusb-hosted-", dir=base))
        self.log(
            f"RAM directory {self.ram_root} ({'private tmpfs in a private mount namespace' if self.private else 'RAM'})"
        )

    def teardown(self) -> None:
        for s in list(self.sessions.values()):
            self.end_session(s, "the watcher is stopping")
        self.stop_node()
        if self.ram_root is not None:
            if self.private:
                try:
                    mounts.umount(self.ram_root)
                except OSError as exc:
                    self.log(f"could not unmount {self.ram_root}: {exc}")
            shutil.rmtree(self.ram_root, ignore_errors=True)
            self.ram_root = None
        if self.private:
            for d in ("/dev/shm", "/var/tmp", "/tmp"):
                try:
                    mounts.umount(d)
                except OSError:
                    pass
        self.remove_code_dir()

    def remove_code_dir(self) -> None:
        """The checked copy the launcher ran us from (bootstrap.py): as root a tmpfs on an empty directory."""
        code = self.opts.code_dir
        if code is None or not code.is_dir():
            return
        if os.geteuid() == 0:
            try:
                mounts.umount(code)
                code.rmdir()
            except OSError as exc:
                self.log(f"could not remove {code}: {exc}")
        else:
            shutil.rmtree(code, ignore_errors=True)

    def refusal_summary(self) -> str:
        return " ".join(f"{reason}={n}" for reason, n in sorted(self.refused.items())) or "none"

    # ------------------------------------------------------------ the node

    def node_ip(self) -> str:
        if self.opts.node_ip:
            return self.opts.node_ip
        from ..node import default_ip

        return default_ip()

    def start_node(self, joins: list[str]) -> None:
        if self.node:
            return
        assert self.ram_root is not None
        cells = self.opts.cells if self.opts.cells is not None else implemented()
        home = self.ram_root / "node"
        env = child_env(home)
        ip = self.node_ip()
        join_args = [a for j in dict.fromkeys(self.opts.join + joins) for a in ("--join", j)]
        data = home / "cells"
        for cell in cells:
            (data / cell).mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.node_account is not None:
            users.give(home, self.node_account)
        # one cell host: the cells' code loaded once, each cell forked from it as a process of its own
        cmd = [
            *python(),
            "-c",
            "import sys; from borgusb.cellhost.__main__ import main; sys.exit(main())",
            "run",
            "--cells",
            ",".join(cells),
            "--data-root",
            str(data),
            "--ip",
            ip,
            *join_args,
        ]
        self.node.append(spawn("cells", cmd, env, "BORGUSB-CELLHOST", self.log, self.node_account))
        self.log(f"node started on {ip}: {', '.join(cells)} (state in RAM{self.as_whom(self.node_account)})")

    @staticmethod
    def as_whom(account: Account | None) -> str:
        return f", user {account.uid}, no capabilities" if account is not None else ""

    def stop_node(self) -> None:
        if not self.node:
            return
        stop_procs(self.node)
        self.node = []
        if self.ram_root is not None:
            shutil.rmtree(self.ram_root / "node", ignore_errors=True)
        self.log("node stopped")

    # ------------------------------------------------------------ sticks

    def free_port(self) -> int:
        used = {s.port for s in self.sessions.values()}
        for port in range(self.opts.port, self.opts.port + 100):
            if port in used:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
        raise StickRejected("no-port", f"no free local port from {self.opts.port}")

    def begin_session(self, device: str, sys_path: str, fstype: str, stick_dir: Path | None = None) -> Session | None:
        if device in self.sessions or device in self.rejected:
            return None
        assert self.ram_root is not None
        sid = f"s{next(self.ids)}"
        try:
            source = open_stick(device, fstype, self.workdir(), stick_dir)  # refuses what is not FAT, unread
            stick = read_stick(source, device, self.log)
            port = self.free_port()
        except StickRejected as exc:
            self.rejected[device] = str(exc)
            self.refused[exc.reason] += 1
            self.log(
                f"BORGUSB-HOSTED-REJECTED device={device} reason={exc.reason} refused={self.refused[exc.reason]}: {exc}"
            )
            self.drop_workdir()
            return None
        ram = self.ram_root / sid
        ram.mkdir(mode=0o700)
        account = None
        if os.geteuid() == 0:
            account = users.pick(exclude=[a.uid for a in self.accounts()])
        writer = WriteService(source, may_write=stick.keystore is None, log=self.log, name=f"conduit[{sid}]")
        session = Session(
            sid, device, sys_path, fstype, ram, port, stick.identity, stick.backend, account, writer, stick_dir
        )
        copy = ram / KEYSTORE
        if stick.keystore is not None:
            fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(stick.keystore)
        env = child_env(ram)
        if account is not None:
            users.give(ram, account)
        self.sessions[device] = session
        how = "read in place" if stick_dir else f"{stick.backend} read, nothing left mounted"
        self.log(
            f"stick {device}: {'identity ' + stick.identity if stick.identity else 'no wallet yet'}; "
            f"marker and keystore read into RAM ({how})"
        )
        self.start_node(list(stick.marker.join))
        cmd = [
            *python(),
            "-m",
            "borgusb.hosted.conduit",
            "--keystore",
            str(copy),
            "--port",
            str(port),
            "--node",
            self.node_ip(),
            "--idle-lock",
            str(self.opts.idle_lock_min),
            "--writer-fd",
            str(writer.peer.fileno()),
        ]
        name = f"conduit[{sid}]"
        try:
            session.conduit = spawn(
                name, cmd, env, "BorgHUIConduit is ready", self.log, account, pass_fds=[writer.peer.fileno()]
            )
        finally:
            writer.handed_over()
        self.log(f"{name} started on port {port}{self.as_whom(account)}")
        return session

    def workdir(self) -> Path:
        """Root's own corner of the RAM directory (mount points, mtools' scratch), while sticks are in."""
        assert self.ram_root is not None
        path = self.ram_root / "watcher"
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    def drop_workdir(self) -> None:
        """No stick left: nothing of root's stays in the RAM directory."""
        if not self.sessions and self.ram_root is not None:
            shutil.rmtree(self.ram_root / "watcher", ignore_errors=True)

    def accounts(self) -> list[Account]:
        """The users this watcher's processes run as now."""
        mine = [s.account for s in self.sessions.values() if s.account is not None]
        return mine + ([self.node_account] if self.node_account is not None else [])

    def end_session(self, s: Session, reason: str, t_event: float | None = None) -> None:
        t0 = t_event or time.monotonic()
        procs = [s.conduit] if s.conduit else []
        if len(self.sessions) == 1 and s.device in self.sessions:
            procs += self.node  # the last stick: stop the node in the same breath
        stop_procs(procs)
        gone_ms = (time.monotonic() - t0) * 1000
        s.writer.close()
        copy = s.ram / KEYSTORE
        try:
            size = copy.stat().st_size
            with open(copy, "r+b", buffering=0) as fh:
                fh.write(b"\0" * size)
        except OSError:
            pass
        shutil.rmtree(s.ram, ignore_errors=True)
        self.sessions.pop(s.device, None)
        if not self.sessions:
            self.stop_node()
        self.drop_workdir()
        self.log(f"BORGUSB-HOSTED-GONE device={s.device} reason={reason!r} stopped_ms={gone_ms:.0f}")

    def announce_ready(self) -> None:
        for s in self.sessions.values():
            if not s.announced and s.conduit and s.conduit.ready.is_set():
                s.announced = True
                url = s.conduit.ready_line.split()[-1]  # "… open http://127.0.0.1:PORT/#k=SECRET"
                self.log(
                    f"BORGUSB-HOSTED-READY device={s.device} url={url} identity={s.identity or 'none'} "
                    f"node={self.node_ip()} t={time.monotonic() - s.started:.1f}s"
                )
                if self.opts.open_browser:  # through a page in the session's RAM directory: see conduit.launch
                    from ..conduit.launch import open_in_browser  # here, not at start: it loads the conduit's code

                    threading.Thread(target=open_in_browser, args=(url, s.ram), daemon=True).start()
            elif s.conduit and s.conduit.popen.poll() is not None and not s.announced:
                s.announced = True
                self.log(f"conduit for {s.device} exited with code {s.conduit.popen.returncode}")

    # ------------------------------------------------------------ events

    def on_event(self, dev: Any) -> None:
        t_event = time.monotonic()
        if udev.is_removal(dev):
            for s in list(self.sessions.values()):
                if udev.takes_away(dev, s.device, s.sys_path):
                    self.log(f"kernel: {dev.device_node} {dev.action}: the stick is gone")
                    self.end_session(s, "stick removed", t_event)
            self.rejected.pop(dev.device_node, None)
            return
        if dev.action in ("add", "change", None) and udev.is_candidate(dev):
            self.begin_session(dev.device_node, dev.sys_path, udev.fstype(dev))

    def check_gone(self) -> None:
        """A lost event must not keep a session alive: the device node or the stick directory must exist."""
        for s in list(self.sessions.values()):
            if s.stick_dir is not None:
                try:
                    (s.stick_dir / MARKER).stat()
                    continue
                except OSError:
                    pass
            elif os.path.exists(s.device) and os.path.exists(s.sys_path):
                continue
            self.end_session(s, "stick gone")

    def run(self) -> int:
        self.events = events = udev.BlockEvents()  # listening before the scan: nothing inserted in between is missed
        if self.opts.stick_dir is not None:
            self.adopt_dir(self.opts.stick_dir)
            if not self.sessions:
                return 1
        else:
            for dev in events.present():
                self.begin_session(dev.device_node, dev.sys_path, udev.fstype(dev))
            self.log(f"watching for BorgUSB sticks (label {LABEL} + marker {MARKER}); Ctrl-C to stop")
        last_check = last_scan = time.monotonic()
        while not self.stopping:
            dev = events.poll(timeout=0.2)
            if dev is not None and not self.drops_event(dev):
                self.on_event(dev)
            self.announce_ready()
            if time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                self.check_gone()
            if self.opts.stick_dir is None and time.monotonic() - last_scan > RESCAN_S:
                last_scan = time.monotonic()
                self.rescan()
            if self.opts.stick_dir is not None and not self.sessions:
                break
        return 0

    def rescan(self) -> None:
        """Never depend on seeing every event (a netlink socket drops them when its buffer is full):
        begin a session for a stick present with none, and forget refusals of sticks no longer there."""
        assert self.events is not None
        now = time.monotonic()
        ask = []
        for sys_path in self.events.unprobed()[:MAX_REPROBES]:  # udevd's probe missed it: ask again, a few times
            last, tries = self.reprobed.get(sys_path, (-REPROBE_S, 0))
            if tries < REPROBE_TRIES and now - last >= REPROBE_S:  # a partition with no filesystem stays quiet
                self.reprobed[sys_path] = (now, tries + 1)
                ask.append(sys_path)
        if ask:
            self.log(f"rescan: udevd has no filesystem for {', '.join(ask)}; asking it to probe again")
            try:  # one call, bounded: the loop must stay free to notice a removal or a stop
                subprocess.run(["udevadm", "trigger", "--action=change", *ask], capture_output=True, timeout=5)
            except subprocess.TimeoutExpired:
                self.log("rescan: udevadm trigger did not return in 5 s")
        while len(self.reprobed) > 4 * MAX_REPROBES:
            self.reprobed.pop(next(iter(self.reprobed)))
        present = {dev.device_node: dev for dev in self.events.present()}
        for device in [d for d in self.rejected if d not in present]:
            del self.rejected[device]
        for device, dev in present.items():
            if device not in self.sessions and device not in self.rejected:
                self.log(f"rescan: {device} is here and no event told of it")
                self.begin_session(device, dev.sys_path, udev.fstype(dev))

    def drops_event(self, dev: Any) -> bool:
        """TEST ONLY (BORGUSB_HOSTED_TEST_DROP_EVENTS=add): lose insertion events on purpose, as an
        overflowing netlink socket would, so a test proves that the rescan finds the stick."""
        if self.opts.test_drop_events and dev.action in self.opts.test_drop_events:
            self.log(f"TEST ONLY: dropped the {dev.action} event of {dev.device_node}")
            return True
        return False

    def adopt_dir(self, stick_dir: Path) -> None:
        """The launcher on the stick: the stick is where the launcher is (already mounted by the desktop)."""
        assert self.events is not None
        stick_dir = stick_dir.resolve()
        node, sys_path, fstype = self.events.device_of(stick_dir)
        self.begin_session(node, sys_path, fstype, stick_dir=stick_dir)
        if node in self.rejected:
            self.log(f"{stick_dir}: {self.rejected[node]}")


def install_signal_handlers(watcher: Watcher) -> None:
    def handler(signum: int, _frame: Any) -> None:
        watcher.log(f"signal {signal.Signals(signum).name}: stopping")
        watcher.stopping = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)
