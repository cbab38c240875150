"""Start a real conduit process for tests and stop it, pass or fail; its link is read from what it prints."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def conduit_process(keystore: Path, seeds: list[str], log: Path) -> Iterator[str]:
    """A `borgusb conduit` process; yields the link it printed (``http://127.0.0.1:PORT/#k=SECRET``)."""
    port = free_port()
    cmd = [sys.executable, "-m", "borgusb.cli", "conduit", "--keystore", str(keystore), "--port", str(port)]
    for seed in seeds:
        cmd += ["--node", seed]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60  # a process start on a loaded 2-core machine
        while not (ready := re.search(r"BorgHUIConduit is ready: open (\S+)", log.read_text())):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"conduit did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield ready.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
