"""`borgusb cell run --args-file`: how a booted stick starts its cells before the stick is read.

A real cell process in its own network namespace starts with nothing but
``--args-file``; the file appears later (as borgusb-stick.service writes it)
naming an address that is not configured yet; the cell binds and answers
only once the address is up, on that address.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from borgusb import dna

pytestmark = pytest.mark.slow

NS = "bn-args"
IP = "10.77.0.5"
MON = dna.get("peerTreeNet").mon_port


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def status(ip: str) -> dict | None:
    cmd = [
        "ip",
        "netns",
        "exec",
        NS,
        sys.executable,
        "-c",
        f"import urllib.request; print(urllib.request.urlopen('http://{ip}:{MON}/status', timeout=1).read().decode())",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else None


def test_cell_waits_for_its_arguments_then_for_its_address(tmp_path: Path) -> None:
    subprocess.run(["ip", "netns", "delete", NS], capture_output=True)
    sh("ip", "netns", "add", NS)
    proc = None
    try:
        sh("ip", "-n", NS, "link", "set", "lo", "up")
        args = tmp_path / "cell.args"
        log = tmp_path / "cell.log"
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                NS,
                sys.executable,
                "-m",
                "borgusb.cli",
                "cell",
                "run",
                "peerTreeNet",
                "--args-file",
                str(args),
                "--data",
                str(tmp_path / "data"),
                "--log-level",
                "INFO",
            ],
            stdout=open(log, "w"),
            stderr=subprocess.STDOUT,
        )
        time.sleep(3)  # the cell has loaded its code and is waiting for the file
        assert proc.poll() is None, log.read_text()
        assert "BORGUSB-READY" not in log.read_text()
        tmp = args.with_suffix(".tmp")
        tmp.write_text(f"# written by the stick service\n--ip {IP}\n")
        tmp.rename(args)
        time.sleep(2)  # the address is not configured yet: still waiting, not failed
        assert proc.poll() is None, log.read_text()
        assert "BORGUSB-READY" not in log.read_text()
        sh("ip", "-n", NS, "addr", "add", f"{IP}/32", "dev", "lo")
        deadline = time.monotonic() + 30
        doc = None
        while time.monotonic() < deadline and doc is None:
            doc = status(IP)
            time.sleep(0.2)
        assert doc is not None, log.read_text()
        assert doc["ip"] == IP and doc["cell"]["name"] == "peerTreeNet"
        assert f"BORGUSB-READY cell=peerTreeNet ip={IP}" in log.read_text()
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(["ip", "netns", "delete", NS], capture_output=True)
