"""The hosted-mode watcher: udev events in, one session per stick, every process and file accounted for.

A *session* is one inserted stick: its device, its conduit process and its
directory in RAM. The *node* (the machine's cells) runs while at least one
session does. Nothing here writes outside the RAM directory; logs are kept in
memory (``MemoryLog``) and printed on the terminal.
"""

from __future__ import annotations

import collections
import itertools
import json
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

from . import KEYSTORE, LABEL, MARKER, MARKER_FORMAT, MAX_FILE, mounts

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


@dataclass
class Session:
    sid: str
    device: str  # /dev/... node
    sys_path: str
    fstype: str
    ram: Path
    port: int
    identity: str | None
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


class StickRejected(Exception):
    """The device carries the label but cannot be used; the message says why."""


def _python() -> list[str]:
    return [sys.executable, "-B"]


class Watcher:
    def __init__(self, opts: Options, log: MemoryLog | None = None) -> None:
        self.opts = opts
        self.log = log or MemoryLog()
        self.sessions: dict[str, Session] = {}
        self.rejected: dict[str, str] = {}  # device -> why (told once per insertion)
        self.backends: dict[str, str] = {}  # device -> "kernel" (private mount) or "mtools" (no vfat in the kernel)
        self.node: list[Proc] = []
        self.ram_root: Path | None = None
        self.private = False
        self.stopping = False
        self.ids = itertools.count(1)
        self.context: Any = None

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
            needed = [str(Path(p).resolve()) + "/" for p in (
                self.opts.stick_dir, sys.prefix, sys.base_prefix, Path(sys.executable).parent,
                Path(__file__).resolve().parents[2]) if p]
            for d in ("/tmp", "/var/tmp", "/dev/shm"):
                if os.path.isdir(d) and not any(n.startswith(d + "/") for n in needed):
                    mounts.mount("tmpfs", d, "tmpfs", mounts.MS_NOSUID | mounts.MS_NODEV, "mode=1777,size=64m")
                elif os.path.isdir(d):
                    self.log(f"{d} is not covered with RAM: BorgUSB runs from it")
            self.ram_root = Path("/dev/shm/borgusb-hosted")
            self.ram_root.mkdir(mode=0o700)
            mounts.mount_tmpfs(self.ram_root, size=self.opts.ram_size)
        else:
            if self.opts.stick_dir is None:
                raise SystemExit("borgusb hosted: mounting the stick privately needs root (run it with sudo), "
                                 "or start the launcher on the stick (it uses the stick where it is mounted)")
            import tempfile

            base = os.environ.get("XDG_RUNTIME_DIR") or "/dev/shm"
            self.ram_root = Path(tempfile.mkdtemp(prefix="borgusb-hosted-", dir=base))
        self.log(f"RAM directory {self.ram_root} ({'private tmpfs in a private mount namespace' if self.private else 'RAM'})")

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

    # ------------------------------------------------------------ processes

    def env(self, home: Path) -> dict[str, str]:
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

    def spawn(self, name: str, cmd: list[str], env: dict[str, str], ready_text: str) -> Proc:
        popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 env=env, cwd=env["HOME"], start_new_session=True,
                                 preexec_fn=mounts.die_with_parent)
        proc = Proc(name, popen)

        def pump() -> None:
            assert popen.stdout is not None
            for raw in popen.stdout:
                line = raw.decode(errors="replace").rstrip()
                if ready_text in line:
                    proc.ready.set()
                self.log(f"{name}: {line}")

        threading.Thread(target=pump, name=f"log-{name}", daemon=True).start()
        return proc

    def stop_procs(self, procs: list[Proc]) -> None:
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

    def node_ip(self) -> str:
        if self.opts.node_ip:
            return self.opts.node_ip
        from ..node import default_ip

        return default_ip()

    def start_node(self, joins: list[str]) -> None:
        if self.node:
            return
        assert self.ram_root is not None
        if self.opts.cells is not None:
            cells = self.opts.cells
        else:
            try:
                from ..cells import CELL_CLASSES as known
            except ImportError:  # pragma: no cover
                from ..dna import CELLS as known
            cells = list(known)
        home = self.ram_root / "node"
        env = self.env(home)
        ip = self.node_ip()
        join_args = [a for j in dict.fromkeys(self.opts.join + joins) for a in ("--join", j)]
        for cell in cells:
            data = home / "cells" / cell
            data.mkdir(parents=True, exist_ok=True, mode=0o700)
            cmd = [*_python(), "-c", "import sys; from borgusb.node import main; sys.exit(main(sys.argv[1:]))",
                   "run", cell, "--ip", ip, "--data", str(data), *join_args]
            self.node.append(self.spawn(cell, cmd, env, "BORGUSB-READY"))
        self.log(f"node started on {ip}: {', '.join(cells)} (state in RAM)")

    def stop_node(self) -> None:
        if not self.node:
            return
        self.stop_procs(self.node)
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
        raise StickRejected(f"no free local port from {self.opts.port}")

    def read_stick(self, device: str, fstype: str, ram: Path, stick_dir: Path | None) -> tuple[dict, bytes | None]:
        """Marker and keystore bytes: a read-only private mount, unmounted at once (or mtools, no mount)."""
        from .stickfs import PENDING, StickFS

        names = [MARKER, KEYSTORE, PENDING]
        try:
            if stick_dir is not None:
                files = {n: StickFS._read_path(stick_dir / n) for n in names}
            else:
                fs = StickFS(device, fstype, ram / "mnt", ram)
                files = fs.read_files(names)
                self.backends[device] = fs.backend
        except OSError as exc:
            raise StickRejected(f"cannot read it ({exc.strerror or exc})") from None
        raw = files[MARKER]
        if raw is None:
            raise StickRejected(f"it is labelled {LABEL} but has no BorgUSB marker file ({MARKER}): "
                                "not a BorgUSB stick, left alone")
        try:
            marker = json.loads(raw.decode("utf-8") or "{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise StickRejected(f"its marker file {MARKER} is not valid JSON: not a BorgUSB stick, left alone") from None
        if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT:
            raise StickRejected(f"its marker file {MARKER} is not a BorgUSB marker: left alone")
        ks = files[KEYSTORE]
        if ks is None and files[PENDING] is not None:
            from .. import keystore

            try:
                keystore.parse(files[PENDING])
                ks = files[PENDING]
                self.log(f"{device}: the last wallet write was interrupted after the new keystore was complete: "
                         "using it (it becomes keystore.json at the next write)")
            except keystore.KeystoreError:
                pass
        return marker, ks

    def begin_session(self, device: str, sys_path: str, fstype: str, stick_dir: Path | None = None) -> Session | None:
        from .. import keystore

        if device in self.sessions or device in self.rejected:
            return None
        assert self.ram_root is not None
        sid = f"s{next(self.ids)}"
        ram = self.ram_root / sid
        ram.mkdir(mode=0o700)
        try:
            marker, ks_bytes = self.read_stick(device, fstype, ram, stick_dir)
            identity = None
            if ks_bytes is not None:
                try:
                    doc = keystore.parse(ks_bytes)
                except keystore.KeystoreError as exc:
                    raise StickRejected(
                        f"the keystore on the stick cannot be used: {exc}. Nothing was changed on the stick "
                        "or on this computer; restore the wallet from your 24 words onto a new stick "
                        "('borgusb wallet restore')") from None
                if doc.get("kind") != "wallet":
                    raise StickRejected(f"the keystore on the stick holds a {doc.get('kind')} key, not a wallet")
                identity = doc.get("public", {}).get("doge_address")
            port = self.free_port()
        except StickRejected as exc:
            shutil.rmtree(ram, ignore_errors=True)
            self.rejected[device] = str(exc)
            self.log(f"BORGUSB-HOSTED-REJECTED device={device}: {exc}")
            return None
        session = Session(sid, device, sys_path, fstype, ram, port, identity, stick_dir)
        copy = ram / KEYSTORE
        if ks_bytes is not None:
            fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(ks_bytes)
        self.sessions[device] = session
        self.log(f"stick {device}: {'identity ' + identity if identity else 'no wallet yet'}; "
                 f"marker and keystore read into RAM ({'read in place' if stick_dir else self.backends.get(device, 'kernel') + ' read, nothing left mounted'})")
        self.start_node([str(j) for j in marker.get("join", []) if isinstance(j, (str, int))])
        cmd = [*_python(), "-m", "borgusb.hosted.conduit", "--keystore", str(copy), "--port", str(port),
               "--node", self.node_ip(), "--idle-lock", str(self.opts.idle_lock_min)]
        if stick_dir is not None:
            cmd += ["--stick-dir", str(stick_dir)]
        else:
            cmd += ["--device", device, "--fstype", fstype, "--mountpoint", str(ram / "mnt")]
            if self.backends.get(device) == "mtools":
                cmd += ["--mtools"]
        session.conduit = self.spawn(f"conduit[{sid}]", cmd, self.env(ram), "BorgHUIConduit is ready")
        return session

    def end_session(self, s: Session, reason: str, t_event: float | None = None) -> None:
        t0 = t_event or time.monotonic()
        procs = [s.conduit] if s.conduit else []
        if len(self.sessions) == 1 and s.device in self.sessions:
            procs += self.node  # the last stick: stop the node in the same breath
        self.stop_procs(procs)
        gone_ms = (time.monotonic() - t0) * 1000
        copy = s.ram / KEYSTORE
        try:
            size = copy.stat().st_size
            with open(copy, "r+b", buffering=0) as fh:
                fh.write(b"\0" * size)
        except OSError:
            pass
        try:
            mounts.umount(s.ram / "mnt")
        except OSError:
            pass
        shutil.rmtree(s.ram, ignore_errors=True)
        self.sessions.pop(s.device, None)
        if not self.sessions:
            self.stop_node()
        self.log(f"BORGUSB-HOSTED-GONE device={s.device} reason={reason!r} stopped_ms={gone_ms:.0f}")

    def announce_ready(self) -> None:
        for s in self.sessions.values():
            if not s.announced and s.conduit and s.conduit.ready.is_set():
                s.announced = True
                url = f"http://127.0.0.1:{s.port}/"
                self.log(f"BORGUSB-HOSTED-READY device={s.device} url={url} identity={s.identity or 'none'} "
                         f"node={self.node_ip()} t={time.monotonic() - s.started:.1f}s")
                if self.opts.open_browser:
                    import webbrowser

                    threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
            elif s.conduit and s.conduit.popen.poll() is not None and not s.announced:
                s.announced = True
                self.log(f"conduit for {s.device} exited with code {s.conduit.popen.returncode}")

    # ------------------------------------------------------------ udev

    @staticmethod
    def is_candidate(dev: Any) -> bool:
        return dev.get("ID_FS_LABEL") == LABEL and dev.get("DEVTYPE") in ("partition", "disk") and bool(dev.device_node)

    def on_event(self, dev: Any) -> None:
        action, node = dev.action, dev.device_node
        t_event = time.monotonic()
        if action == "remove" or (action == "change" and not self.is_candidate(dev)):
            for s in list(self.sessions.values()):
                if s.device == node or s.sys_path == dev.sys_path:
                    gone = True  # the partition itself went away, or lost its label/filesystem
                elif s.sys_path.startswith(dev.sys_path + "/"):
                    # Its disk: removed, or emptied (a loop device detached, a card reader's medium pulled).
                    # A mere `change` of the disk (a partition rescan, udev's watch after a close) is not
                    # a removal: real USB sticks get one right after insertion.
                    gone = action == "remove" or not os.path.exists(s.sys_path) or self._disk_empty(dev)
                else:
                    gone = False
                if gone:
                    self.log(f"kernel: {node} {action}: the stick is gone")
                    self.end_session(s, "stick removed", t_event)
            for d in [d for d in self.rejected if d == node]:
                del self.rejected[d]
            return
        if action in ("add", "change", None) and self.is_candidate(dev):
            self.begin_session(node, dev.sys_path, dev.get("ID_FS_TYPE") or "vfat")

    @staticmethod
    def _disk_empty(dev: Any) -> bool:
        try:
            return int(Path(dev.sys_path, "size").read_text().strip() or 0) == 0
        except (OSError, ValueError):
            return True

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
        import pyudev

        self.context = pyudev.Context()
        monitor = pyudev.Monitor.from_netlink(self.context)
        monitor.filter_by("block")
        monitor.start()  # before the scan: nothing inserted in between is missed
        if self.opts.stick_dir is not None:
            self.adopt_dir(self.opts.stick_dir)
            if not self.sessions:
                return 1
        else:
            for dev in self.context.list_devices(subsystem="block").match_property("ID_FS_LABEL", LABEL):
                if self.is_candidate(dev):
                    self.begin_session(dev.device_node, dev.sys_path, dev.get("ID_FS_TYPE") or "vfat")
            self.log(f"watching for BorgUSB sticks (label {LABEL} + marker {MARKER}); Ctrl-C to stop")
        last_check = time.monotonic()
        while not self.stopping:
            dev = monitor.poll(timeout=0.2)
            if dev is not None:
                self.on_event(dev)
            self.announce_ready()
            if time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                self.check_gone()
            if self.opts.stick_dir is not None and not self.sessions:
                break
        return 0

    def adopt_dir(self, stick_dir: Path) -> None:
        """The launcher on the stick: the stick is where the launcher is (already mounted by the desktop)."""
        import pyudev

        stick_dir = stick_dir.resolve()
        try:
            dev = pyudev.Devices.from_device_number(self.context, "block", os.stat(stick_dir).st_dev)
            node, sys_path, fstype = dev.device_node, dev.sys_path, dev.get("ID_FS_TYPE") or "vfat"
        except Exception:  # noqa: BLE001 - no udev: removal is found by polling the directory
            node, sys_path, fstype = str(stick_dir), "/nonexistent", "vfat"
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
