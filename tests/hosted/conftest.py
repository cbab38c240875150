"""Hosted-mode tier: real udev events from loop devices; udevd started here if the machine runs none.

The watcher runs as a person installs it (runtime.py): the host's python3 and BorgUSB where every user
can read it, since its cells and conduits run as users of their own."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
UDEVD = "/lib/systemd/systemd-udevd"
NODE_IP = "127.66.0.1"  # a loopback address of its own: other tests' clusters use 127.0.0.x


def _udevd_running() -> bool:
    out = subprocess.run(["pgrep", "-x", "systemd-udevd"], capture_output=True)
    return out.returncode == 0


@pytest.fixture(scope="session")
def udevd():
    if os.geteuid() != 0:
        pytest.fail("the hosted-mode tests need root (loop devices, udevd, private mounts)")
    for tool in ("losetup", "partx", "mkfs.vfat", "mcopy", "sfdisk"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: run ./build.sh setup")
    proc = None
    if not _udevd_running():
        if not os.path.exists(UDEVD):
            pytest.fail("udev is not installed: run ./build.sh test (it installs udev matching libudev1)")
        proc = subprocess.Popen([UDEVD], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(0.5)
        assert proc.poll() is None, "systemd-udevd did not start"
    yield
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def runtime(udevd):
    from runtime import host_python, make_runtime

    python = host_python()
    if python is None:
        pytest.fail("hosted mode's tests need the host's python3 3.11 (/usr/bin/python3): run ./build.sh setup")
    made = make_runtime(python)
    yield made
    shutil.rmtree(made.base, ignore_errors=True)


class WatcherProc:
    """`borgusb hosted` as the person runs it (sudo, BorgUSB installed for every user), its terminal
    output collected."""

    def __init__(
        self,
        runtime,
        port: int,
        *extra: str,
        cells: str | None = "peerTreeNet,serviceMgrCell",
        env: dict[str, str] | None = None,
    ) -> None:
        cmd = [
            runtime.python,
            "-B",
            "-P",
            "-c",
            "import sys; from borgusb.cli import main; sys.exit(main())",
            "hosted",
            "--node-ip",
            NODE_IP,
            "--port",
            str(port),
            *extra,
        ]
        if cells:
            cmd += ["--cells", cells]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env=env or runtime.env(),
        )
        self.lines: list[str] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()
        self.wait_for(r"watching for BorgUSB sticks|RAM directory", 20)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append((time.monotonic(), line.rstrip()))
                self.cond.notify_all()

    def text(self) -> str:
        with self.cond:
            return "\n".join(line for _, line in self.lines)

    def wait_for(self, pattern: str, timeout: float, after: float = 0.0) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for t, line in self.lines:
                    if t >= after and (m := rx.search(line)):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and not self.lines:
                    raise AssertionError(f"no line matching {pattern!r} within {timeout}s:\n{self.text()[-4000:]}")
                self.cond.wait(min(left, 0.2))

    def children(self) -> list[int]:
        """Every process below the watcher (the cells are children of the cell host it starts)."""
        found: set[int] = set()
        parents = [self.proc.pid]
        while parents:
            out = subprocess.run(
                ["pgrep", "-P", ",".join(map(str, parents))], capture_output=True, text=True
            ).stdout.split()
            parents = [int(p) for p in out if int(p) not in found and int(p) != self.proc.pid]
            found.update(parents)
        return sorted(found)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)  # generous: a loaded 2-core machine (it took over 10 s in one run)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def watcher_factory(runtime):
    made: list[WatcherProc] = []

    def make(port: int, *extra: str, **kw) -> WatcherProc:
        w = WatcherProc(runtime, port, *extra, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()


@pytest.fixture
def loops():
    made = []

    def attach(image: Path):
        from stick import Loop

        loop = Loop(image)
        made.append(loop)
        subprocess.run(["udevadm", "settle", "--timeout=5"], capture_output=True)
        return loop

    yield attach
    for loop in made:
        loop.close()
