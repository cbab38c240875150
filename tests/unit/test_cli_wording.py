"""What the CLI says when a person gets something wrong or nothing runs (issue 22, "Error wording").

Real subprocesses of `borgusb`, with no node on the addresses they try: every message is one
line in words (no exception class names, errno numbers or tracebacks), and every command
exits with the one scheme `borgusb --help` documents (0 done, 1 failed, 2 usage, 3 no node).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from borgusb.cells import implemented
from borgusb.dna import CELLS

OBJECT_ID = "ab" * 32
INTERNALS = re.compile(r"Traceback|Errno|\b[A-Z][A-Za-z]*(Error|Exception)\b")


def borgusb(*args: str, tmp_path: Path, stdin: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "BORGUSB_NODE"}
    env.update(BORGUSB_CLUSTER_DIR=str(tmp_path / "clusters"), BORGUSB_PAY_DIR=str(tmp_path / "pay"))
    proc = subprocess.run(
        [sys.executable, "-m", "borgusb.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        input=stdin,
    )
    said = proc.stdout + proc.stderr
    assert not INTERNALS.search(said), said  # the rule for every message in this file
    return proc


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_help_documents_the_exit_codes(tmp_path: Path) -> None:
    out = " ".join(borgusb("--help", tmp_path=tmp_path).stdout.split())
    assert "0 done; 1 refused or failed" in out and "2 usage or bad input" in out and "3 no node reachable" in out


@pytest.mark.parametrize(
    "args",
    [
        ("put", "FILE", "--port", "80000"),
        ("stat", OBJECT_ID, "--node", "127.0.0.1", "--port", "0"),
        ("pay", "balance", "--port", "65536"),
        ("conduit", "--port", "80000"),
        ("envelope", "sign", "--keystore", "ks.json", "--port", "-1"),
    ],
)
def test_a_port_out_of_range_is_a_usage_error(args: tuple[str, ...], tmp_path: Path) -> None:
    proc = borgusb(*args, tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "usage:" in proc.stderr and "is not a port number" in proc.stderr


def test_local_paths_are_checked_before_any_node_is_looked_for(tmp_path: Path) -> None:
    put_dir = borgusb("put", str(tmp_path), "-q", tmp_path=tmp_path)
    assert put_dir.returncode == 2 and f"{tmp_path} is a directory: put stores one file" in put_dir.stderr
    missing = borgusb("put", str(tmp_path / "nothing"), "-q", tmp_path=tmp_path)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    get_dir = borgusb("get", OBJECT_ID, "-o", str(tmp_path), tmp_path=tmp_path)
    assert get_dir.returncode == 2 and "is a directory: name the file to write" in get_dir.stderr


def test_a_missing_keystore_is_said_before_any_passphrase_is_asked(tmp_path: Path) -> None:
    ks = tmp_path / "ks.json"
    for args in (("wallet", "show"), ("envelope", "sign"), ("stat", OBJECT_ID), ("pay", "balance")):
        proc = borgusb(*args, "--keystore", str(ks), tmp_path=tmp_path, stdin='{"hello": 1}')

        assert proc.returncode == 2, proc.stderr
        # had a passphrase been asked first, stdin (not a terminal) would have ended it with that
        assert f"no keystore at {ks}" in proc.stderr and "passphrase" not in proc.stderr.lower()
        assert f"borgusb wallet new --keystore {ks}" in proc.stderr
    assert not ks.exists()


def test_every_network_command_says_no_node_with_exit_3(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    named = ("--node", "127.0.0.1", "--port", port)
    key = ("--key-file", str(tmp_path / "key"))
    src = tmp_path / "f"
    src.write_bytes(b"x" * 10)
    for args in (
        ("stat", OBJECT_ID, *named),
        ("get", OBJECT_ID, "-o", str(tmp_path / "out"), *named),
        ("rm", OBJECT_ID, *named, *key),
        ("put", str(src), "-q", *named, *key),
        ("pay", "balance", *named, *key),
    ):
        proc = borgusb(*args, tmp_path=tmp_path)
        assert proc.returncode == 3, (args, proc.stderr)
        assert f"127.0.0.1:{port} unreachable: connection refused (nothing listens there)" in proc.stderr
        assert "--node IP" in proc.stderr


def test_cluster_refuses_an_unavailable_cell_at_once(tmp_path: Path) -> None:
    missing = [name for name in CELLS if name not in implemented()]
    if not missing:
        pytest.skip("every cell type of the DNA table is implemented")
    started = time.monotonic()
    proc = borgusb("cluster", "up", "--cell", missing[0], "--nodes", "2", tmp_path=tmp_path)
    assert proc.returncode == 2 and time.monotonic() - started < 20  # not a 30 s wait for a tree
    assert f"the {missing[0]} cell is not available in this version yet" in proc.stderr
    assert all(name in proc.stderr for name in implemented())  # what is available instead
    assert not (tmp_path / "clusters").exists()  # nothing was started or written
    unknown = borgusb("cluster", "up", "--cell", "frobCell", "--nodes", "2", tmp_path=tmp_path)
    assert unknown.returncode == 2 and "unknown cell type 'frobCell'" in unknown.stderr


def test_cluster_commands_with_nothing_running(tmp_path: Path) -> None:
    status = borgusb("cluster", "status", tmp_path=tmp_path)
    assert status.returncode == 1
    assert "no cluster 'default' runs: start one with 'borgusb cluster up --nodes 5'" in status.stderr
    for args in (("cluster", "--name", "x", "status"), ("cluster", "status", "--name", "x")):  # either place
        named = borgusb(*args, tmp_path=tmp_path)
        assert named.returncode == 1 and "no cluster 'x' runs" in named.stderr
        assert "'borgusb cluster up --nodes 5 --name x'" in named.stderr
    kill = borgusb("cluster", "kill", tmp_path=tmp_path)
    assert kill.returncode == 1 and "no cluster 'default' runs" in kill.stderr
    down = borgusb("cluster", "down", "--name", "x", tmp_path=tmp_path)
    assert down.returncode == 0 and "no cluster 'x' runs; nothing to stop" in down.stdout


def test_cluster_help_says_the_data_does_not_outlive_it(tmp_path: Path) -> None:
    listing = " ".join(borgusb("cluster", "--help", tmp_path=tmp_path).stdout.split())
    assert "stop every node of the cluster and forget it: the data its cells stored (files, payments) is deleted" in (
        listing
    )
    up = " ".join(borgusb("cluster", "up", "--help", tmp_path=tmp_path).stdout.split())
    assert "each is one machine running every cell type" in up and "is deleted when the cluster stops" in up
