"""`borgusb files` against real processes (shardTreeCell and ftreeFileMgrCell on three addresses):
a folder tree put, renamed, moved and restored; no plaintext of a private file on any node's disk;
a share read by its recipient only; a second machine with only the key; two machines at once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from borgusb.clock import SystemClock
from borgusb.envelope import Verifier
from borgusb.files import ops
from borgusb.files.entry import Entry
from borgusb.files.remote import FileTree
from borgusb.identity import Wallet
from borgusb.keys import SigningKey
from borgusb.keystore import KdfParams, save_wallet
from borgusb.net.peer import PeerClient
from tests.integration.diskscan import files_holding

pytestmark = pytest.mark.slow
N = 3
PASSPHRASE = "correct horse battery"
MARKER = b"MARKER-plaintext-that-must-never-reach-a-node-7f3a"


def cli(*args: str, key: Path, node: str, machine: str = "laptop") -> subprocess.CompletedProcess[str]:
    """`borgusb files ARGS` signed with a key file, or with a keystore (KEY.keystore: the wallet)."""
    env = {k: v for k, v in os.environ.items() if k != "BORGUSB_NODE"}
    if key.suffix == ".keystore":
        who = ["--keystore", str(key), "--passphrase-file", str(key.with_suffix(".pass"))]
    else:
        who = ["--key-file", str(key)]
    cmd = [sys.executable, "-m", "borgusb.cli", "files", *args, *who, "--node", node]
    cmd += ["--machine", machine, "--r", "2", "-q"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, (proc.args, proc.stdout, proc.stderr)
    return proc.stdout


def names(key: Path, node: str, path: str = "/") -> dict[str, dict]:
    return {r["name"]: r for r in json.loads(ok(cli("ls", path, "--json", key=key, node=node)))}


async def start(make_cluster, monkeypatch, tmp_path: Path) -> list[str]:
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    shard, ftree = make_cluster("shardTreeCell"), make_cluster("ftreeFileMgrCell")
    shard.up(N)
    ftree.up(N)  # the same addresses: each runs on its own ports
    await shard.wait_one_tree(timeout_s=60, expect=N)
    await ftree.wait_one_tree(timeout_s=60, expect=N)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        s, f = await shard.status(), await ftree.status()
        if all(d.get("shard", {}).get("directory") == N for d in s) and all(
            d.get("files", {}).get("members") == N for d in f
        ):
            return [n.ip for n in shard.nodes]
        await asyncio.sleep(0.3)
    raise TimeoutError("the clusters did not settle")


def key_file(path: Path) -> tuple[Path, str]:
    k = SigningKey.generate()
    path.write_text(bytes(k.secret_bytes()).hex() + "\n")
    return path, k.public_key_hex


async def test_files_end_to_end(make_cluster, monkeypatch, tmp_path: Path) -> None:
    ips = await start(make_cluster, monkeypatch, tmp_path)
    wallet = Wallet.create()  # A's identity: the first machine signs with it as a key file, the second
    keystore = tmp_path / "a.keystore"  # has nothing but the wallet's keystore
    save_wallet(keystore, wallet, PASSPHRASE, KdfParams(iterations=1, lanes=1, memory_kib=1024))
    keystore.with_suffix(".pass").write_text(PASSPHRASE + "\n")
    a = tmp_path / "a.key"
    a.write_text(bytes(wallet.key.secret_bytes()).hex() + "\n")
    b, b_pub = key_file(tmp_path / "b.key")
    c, _ = key_file(tmp_path / "c.key")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(MARKER + os.urandom(200_000) + MARKER)

    # a folder tree put
    ok(cli("mkdir", "/docs", key=a, node=ips[0]))
    ok(cli("put", str(secret), "/docs", key=a, node=ips[0]))
    assert names(a, ips[1])["docs"]["kind"] == "folder"
    row = names(a, ips[1], "/docs")["secret.txt"]
    assert row["private"] and row["size"] == secret.stat().st_size
    out = tmp_path / "out.txt"
    ok(cli("get", "/docs/secret.txt", "-o", str(out), key=a, node=ips[2]))
    assert out.read_bytes() == secret.read_bytes()

    # the holders' disks hold no plaintext of it (nor its name, which is inside the encrypted folder)
    read, holding = files_holding(tmp_path / "data", [MARKER, b"secret.txt"])
    assert read and not holding, holding

    # renamed, moved into another folder, then a version of /docs restored
    ok(cli("mv", "/docs/secret.txt", "/docs/renamed.txt", key=a, node=ips[0]))
    ok(cli("mkdir", "/archive", key=a, node=ips[0]))
    ok(cli("mv", "/docs/renamed.txt", "/archive/kept.txt", key=a, node=ips[1]))
    assert names(a, ips[0], "/docs") == {} and set(names(a, ips[0], "/archive")) == {"kept.txt"}
    versions = json.loads(ok(cli("versions", "/docs", "--json", key=a, node=ips[0])))
    assert [v["version"] for v in versions] == [4, 3, 2, 1] and [v["entries"] for v in versions] == [0, 1, 1, 0]
    ok(cli("restore", "/docs", "--version", versions[2]["obj"], key=a, node=ips[0]))  # the one with secret.txt
    assert set(names(a, ips[2], "/docs")) == {"secret.txt"}
    ok(cli("get", "/docs/secret.txt", "-o", str(out), key=a, node=ips[1]))
    assert out.read_bytes() == secret.read_bytes()

    # shared read-only with B; C, not shared with, cannot read it even with B's share record
    share = tmp_path / "share.json"
    ok(cli("share", "/archive/kept.txt", "--to", b_pub, "-o", str(share), key=a, node=ips[0]))
    got_b = tmp_path / "b.txt"
    ok(cli("get", "--share", str(share), "-o", str(got_b), key=b, node=ips[1]))
    assert got_b.read_bytes() == secret.read_bytes()
    refused = cli("get", "--share", str(share), "-o", str(tmp_path / "c.txt"), key=c, node=ips[1])
    assert refused.returncode != 0 and not (tmp_path / "c.txt").exists()
    assert cli("ls", "/", key=c, node=ips[0]).stdout.strip() == ""  # C's own tree is empty: nothing of A's
    # a folder shared with B, listed and read through the share
    folder_share = tmp_path / "folder-share.json"
    ok(cli("share", "/archive", "--to", b_pub, "-o", str(folder_share), key=a, node=ips[0]))
    listed = json.loads(ok(cli("ls", "--share", str(folder_share), "--json", key=b, node=ips[2])))
    assert [r["name"] for r in listed] == ["kept.txt"]
    ok(cli("get", "kept.txt", "--share", str(folder_share), "-o", str(got_b), key=b, node=ips[2]))
    assert got_b.read_bytes() == secret.read_bytes()

    # a second machine with only the keystore: lists and reads everything
    assert set(names(keystore, ips[2])) == {"docs", "archive"}
    assert set(names(keystore, ips[2], "/docs")) == {"secret.txt"}
    out.unlink()
    ok(cli("get", "/archive/kept.txt", "-o", str(out), key=keystore, node=ips[2], machine="desktop"))
    assert out.read_bytes() == secret.read_bytes()

    # two machines of the same person change the same folder at once: both changes stay
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_bytes(b"from the laptop")
    two.write_bytes(b"from the desktop")
    env = {k: v for k, v in os.environ.items() if k != "BORGUSB_NODE"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "borgusb.cli",
                "files",
                "put",
                str(f),
                "/docs",
                "--key-file",
                str(a),
                "--node",
                ip,
                "--machine",
                m,
                "--r",
                "2",
                "-q",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f, ip, m in ((one, ips[0], "laptop"), (two, ips[1], "desktop"))
    ]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    assert set(names(a, ips[2], "/docs")) == {"secret.txt", "one.txt", "two.txt"}
    assert set(names(a, ips[2], "/archive")) == {"kept.txt"}
    assert ok(cli("put", str(one), "/", key=a, node=ips[1])).strip() == "/one.txt"  # the root is a folder too
    bad = cli("put", str(one), "/docs/a\\b", key=a, node=ips[1])
    assert bad.returncode == 2 and "not a name" in bad.stderr  # a usage error, before anything is stored

    # the same in one process, both changes made from the same root for certain: the merge path
    clock = SystemClock()
    trees = []
    for ip, machine in ((ips[0], "tablet"), (ips[2], "phone")):
        peers = PeerClient(wallet.key, clock, Verifier(clock), timeout_s=30)
        trees.append(FileTree(peers, ip, wallet.key, machine=machine, r=2))
    try:
        entry = [Entry("file", f"{i:064x}", 1, "text/plain", clock.now_ms(), "") for i in (1, 2)]
        await asyncio.gather(
            trees[0].change(["docs"], lambda e: ops.put(e, "tablet.txt", entry[0])),
            trees[1].change(["docs"], lambda e: ops.put(e, "phone.txt", entry[1])),
        )
        _, root = await trees[0].head()
        docs = (await trees[0].walk(root, ["docs"]))[-1]
        assert {"tablet.txt", "phone.txt", "one.txt", "two.txt", "secret.txt"} <= set(ops.live(docs.entries))
        assert len(root.folder.parents) == 2 and len(docs.folder.parents) == 2  # a merge of both
        # a share made on one machine while the other edits: the merge keeps both
        readers = set(docs.folder.readers) - {wallet.key.public_key_hex}
        later = Entry("file", f"{3:064x}", 1, "text/plain", clock.now_ms(), "")
        await asyncio.gather(
            trees[0].change(["docs"], dict, readers | {b_pub}),
            trees[1].change(["docs"], lambda e: ops.put(e, "later.txt", later)),
        )
        _, root = await trees[1].head()
        docs = (await trees[1].walk(root, ["docs"]))[-1]
        assert "later.txt" in docs.entries and b_pub in docs.folder.readers
    finally:
        for t in trees:
            t.close()
            await t.peers.close()
