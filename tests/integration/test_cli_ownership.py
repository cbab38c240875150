"""Ownership told truthfully by `borgusb put/stat/rm` (issue 22), against three real shard nodes.

Alice stores a file. Bob puts the same bytes (the same object id): refused
as owned by another key, nothing stored under his key; stat names Alice
whoever asks, and says whose it is to the key that asks; Bob's rm is refused
(not "deleted") and the object stays; Alice's rm deletes it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from borgusb.keys import SigningKey

pytestmark = pytest.mark.slow
BASE = 190  # 127.0.0.190..192: off the addresses other cluster tests start at


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "BORGUSB_NODE"}
    return subprocess.run(
        [sys.executable, "-m", "borgusb.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


async def start(make_cluster, monkeypatch, tmp_path: Path, n: int = 3):
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    cluster = make_cluster("shardTreeCell")
    cluster.up(n, base=BASE)
    await cluster.wait_one_tree(timeout_s=60, expect=n)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # every node has heard every other's announcement
        docs = await cluster.status()
        if len(docs) == n and all(d.get("shard", {}).get("directory") == n for d in docs):
            return cluster
        await asyncio.sleep(0.2)
    raise TimeoutError("shard directories did not fill")


def keyfile(path: Path) -> tuple[str, str]:
    key = SigningKey.generate()
    path.write_text(bytes(key.secret_bytes()).hex() + "\n")
    return str(path), key.public_key_hex


async def test_put_stat_rm_say_who_owns_an_object(make_cluster, monkeypatch, tmp_path: Path) -> None:
    cluster = await start(make_cluster, monkeypatch, tmp_path)
    a, b, c = (n.ip for n in cluster.nodes)
    alice, alice_pub = keyfile(tmp_path / "alice.key")
    bob, bob_pub = keyfile(tmp_path / "bob.key")
    f = tmp_path / "report.bin"
    f.write_bytes(os.urandom(300_000))

    put = cli("put", str(f), "--node", a, "--key-file", alice, "-q", "--shard-size", "100000")
    assert put.returncode == 0, put.stderr
    oid = put.stdout.strip()

    # the same bytes under another key: refused, and said so, with what happened
    again = cli("put", str(f), "--node", b, "--key-file", bob, "-q", "--shard-size", "100000")
    assert again.returncode != 0, again.stdout
    assert "owned by another key" in again.stderr and "(other_owner)" in again.stderr, again.stderr
    assert "nothing was stored" in again.stderr, again.stderr

    # stat names the real owner, and tells each asker whose it is
    st = cli("stat", oid, "--node", c, "--key-file", bob)
    assert st.returncode == 0, st.stderr
    assert f"owner    {alice_pub} (another key" in st.stdout and bob_pub not in st.stdout, st.stdout
    st = cli("stat", oid, "--node", b, "--key-file", alice)
    assert f"owner    {alice_pub} (your key)" in st.stdout, st.stdout

    # bob's rm is refused, not "deleted", and the object stays
    rm = cli("rm", oid, "--node", b, "--key-file", bob)
    assert rm.returncode != 0 and "deleted" not in rm.stdout, rm.stdout
    assert "belongs to another key" in rm.stderr and "(not_owner)" in rm.stderr, rm.stderr
    st = cli("stat", oid, "--node", a)
    assert st.returncode == 0 and alice_pub in st.stdout, st.stdout + st.stderr

    # alice's rm deletes it, and says what it did
    rm = cli("rm", oid, "--node", c, "--key-file", alice)
    assert rm.returncode == 0 and rm.stdout.startswith(f"deleted {oid}: the node checked that it is yours"), rm.stderr
    deadline = time.monotonic() + 30
    while (st := cli("stat", oid, "--node", a)).returncode == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    assert st.returncode != 0 and "not found" in st.stdout, st.stdout
