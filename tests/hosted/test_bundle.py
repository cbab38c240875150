"""The stick is self-sufficient: the bundle on its data partition runs with the host's own python3, no pip."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from test_hosted import answers, free_port, http_get, wallet_keystore

from borgusb.stick import MARKER, Marker

ROOT = Path(__file__).resolve().parents[2]
WHEELS = Path(os.environ.get("BORGUSB_CACHE", Path.home() / ".cache" / "borgusb")) / "image" / "wheels"


@pytest.fixture(scope="module")
def host_python() -> str:
    for cand in ("/usr/bin/python3", shutil.which("python3")):
        if (
            cand
            and subprocess.run([cand, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 11))"]).returncode == 0
        ):
            return cand
    pytest.skip("no python3.11 on this host for the cp311 bundle")


def current_wheels() -> None:
    """The image's wheel cache at the lock's exact versions (the same step ./build.sh takes; cached)."""
    spec = importlib.util.spec_from_file_location("build_image", ROOT / "image" / "build_image.py")
    assert spec is not None and spec.loader is not None
    build_image = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_image)
    build_image.build_wheels(worktree=True)


def test_launcher_on_the_stick_runs_with_the_hosts_python(tmp_path, host_python, udevd):
    current_wheels()
    from borgusb.hosted.bundle import build

    stick = tmp_path / "BORGUSB"  # where a desktop would have mounted the data partition
    stick.mkdir()
    build(WHEELS, stick, borgusb_src=ROOT / "borgusb")
    ks, address = wallet_keystore(tmp_path)
    (stick / "keystore.json").write_bytes(ks)
    (stick / MARKER).write_bytes(Marker().to_bytes())
    for f in stick.rglob("*"):  # the stick is read-only for Python
        f.chmod(f.stat().st_mode & ~0o222)
    port = free_port()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHON": host_python, "LANG": "C.UTF-8"}
    proc = subprocess.Popen(
        ["sh", str(stick / "borgusb-hosted"), "--port", str(port), "--node-ip", "127.66.0.1", "--cells", "peerTreeNet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while not any("BORGUSB-HOSTED-READY" in line for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        assert address in http_get(port, "/unlock")[1]
        # pull the stick: the directory disappears
        for f in stick.rglob("*"):
            f.chmod(f.stat().st_mode | 0o200)
        t = time.monotonic()
        stick.rename(tmp_path / "pulled")
        while answers(port) and time.monotonic() - t < 5:
            time.sleep(0.02)
        gone = time.monotonic() - t
        print(f"\nbundle: directory gone -> conduit stopped in {gone * 1000:.0f} ms")
        assert gone < 2.0, "".join(lines)
        assert proc.wait(timeout=10) == 0, "".join(lines)
        assert not list((tmp_path / "pulled").rglob("__pycache__")), "bytecode was written"
        assert list((tmp_path / "pulled").iterdir()) and (tmp_path / "pulled" / "keystore.json").read_bytes() == ks
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
