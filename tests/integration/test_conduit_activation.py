"""The conduit started by socket activation, as borgusb-conduit.socket starts it on a booted stick.

A real conduit process is handed an already listening socket as fd 3 (by bash) with
LISTEN_PID/LISTEN_FDS set for its own pid (what systemd does: the shell's
``exec`` keeps the pid that ``$$`` named). The first request, made before the
process exists, waits in the socket's backlog and is answered.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from borgusb.net.activation import SD_LISTEN_FDS_START, listen_sockets

pytestmark = pytest.mark.slow


def _activated_conduit(sock: socket.socket, keystore: Path, log: Path) -> subprocess.Popen[bytes]:
    fd = sock.fileno()
    assert fd != SD_LISTEN_FDS_START
    # the shell moves the socket to fd 3 and names its own pid, which exec keeps
    activate = f'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@" {SD_LISTEN_FDS_START}<&{fd} {fd}<&-'
    cmd = [
        "bash",
        "-c",
        activate,
        sys.executable,
        "-m",
        "borgusb.cli",
        "conduit",
        "--keystore",
        str(keystore),
        "--port",
        "1",
    ]  # --port is ignored when a socket is handed over
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, pass_fds=(fd,))


def log_text(tmp_path: Path) -> str:
    """The conduit's output so far (it prints its link once it holds the socket)."""
    deadline = time.monotonic() + 20
    while "BorgHUIConduit is ready" not in (text := (tmp_path / "conduit.log").read_text()):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return text


def test_first_connection_is_answered_by_the_conduit_it_starts(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    answers: list[bytes] = []
    # the browser connects first: the request waits in the backlog until the conduit takes the socket
    early = threading.Thread(target=lambda: answers.append(urllib.request.urlopen(url, timeout=30).read()))
    early.start()
    proc = _activated_conduit(sock, tmp_path / "keystore.json", tmp_path / "conduit.log")
    try:
        early.join(40)
        assert answers, (tmp_path / "conduit.log").read_text()[-2000:]
        assert b"BorgUSB" in answers[0] or b"<html" in answers[0].lower()
        # the link with the secret goes to the conduit's output (the journal, on a booted stick), never a page
        printed = re.search(rf"BorgHUIConduit is ready: open http://127\.0\.0\.1:{port}/#k=(\S+)", log_text(tmp_path))
        assert printed and printed.group(1).encode() not in answers[0]
        page = urllib.request.urlopen(url + "static/conduit.css", timeout=10).read()
        assert page
        with pytest.raises(OSError):  # the port is the activated socket's: nobody else bound it
            socket.create_server(("127.0.0.1", port))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        sock.close()
    assert proc.returncode == 0, (tmp_path / "conduit.log").read_text()[-2000:]


def test_sockets_meant_for_another_process_are_left_alone(monkeypatch) -> None:
    monkeypatch.setenv("LISTEN_PID", "1")
    monkeypatch.setenv("LISTEN_FDS", "1")
    assert listen_sockets() == []
    assert "LISTEN_PID" not in os.environ and "LISTEN_FDS" not in os.environ  # not passed on to children
    monkeypatch.setenv("LISTEN_PID", "not a pid")
    assert listen_sockets() == []
