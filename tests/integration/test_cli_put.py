"""`borgusb put/get/stat` against a real local cluster, as a person uses them after `borgusb cluster up`.

No ``--node``: the CLI finds a live shardTreeCell from the cluster's state
file by itself. And on a USB image, where tqdm is removed: the transfer still
works and the progress shows as plain lines on a stderr that is not a terminal.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from borgusb.shard.model import SHARD_SIZE, object_id, sha256_hex, split

pytestmark = pytest.mark.slow
BASE = 180  # 127.0.0.180, .181: off the .2, .3, ... that other cluster tests start at, on a shared machine

# What the USB image does to tqdm (image/mkosi.postinst.chroot deletes the package), for one process.
NO_TQDM = """
import sys


class _RemovedLikeOnTheImage:
    def find_spec(self, name, path=None, target=None):
        if name == "tqdm" or name.startswith("tqdm."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _RemovedLikeOnTheImage())
"""


def run(*args: str, cluster_dir: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "BORGUSB_NODE"}
    env.update(BORGUSB_CLUSTER_DIR=str(cluster_dir), **(extra_env or {}))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, env=env)


async def start(make_cluster, monkeypatch, tmp_path: Path, n: int):
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    cluster = make_cluster("shardTreeCell")
    cluster.up(n, base=BASE)
    await cluster.wait_one_tree(timeout_s=60, expect=n)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # every node has heard every other's announcement
        docs = await cluster.status()
        if len(docs) == n and all(d.get("shard", {}).get("directory") == n for d in docs):
            return cluster
        await asyncio.sleep(0.2)
    raise TimeoutError("shard directories did not fill")


def content_id(data: bytes) -> str:
    """The object id `put` must print: its shard list's (model.object_id), from the bytes alone."""
    return object_id(len(data), SHARD_SIZE, [sha256_hex(chunk) for _, chunk in split(data)])


async def test_put_finds_the_cluster_and_shows_progress_without_tqdm(make_cluster, monkeypatch, tmp_path) -> None:
    cluster = await start(make_cluster, monkeypatch, tmp_path, 2)
    cluster_dir = cluster.root_dir
    assert cluster.state_file.exists() and cluster.dir.parent == cluster_dir
    keyfile = str(tmp_path / "key")

    # after `cluster up`, a bare `borgusb put FILE` reaches a cluster node (not 127.0.0.1)
    small = tmp_path / "small"
    small.write_bytes(os.urandom(1000))
    put = run("-m", "borgusb.cli", "put", str(small), "--key-file", keyfile, "-q", "--r", "2", cluster_dir=cluster_dir)
    assert put.returncode == 0, put.stderr
    assert put.stdout.strip() == content_id(small.read_bytes())
    st = run("-m", "borgusb.cli", "stat", put.stdout.strip(), cluster_dir=cluster_dir)
    assert st.returncode == 0 and "min 2 of R=2" in st.stdout, st.stdout + st.stderr
    assert any(n.ip in st.stdout for n in cluster.nodes)

    # the image has no tqdm: the same commands work and print plain progress lines
    blocker = tmp_path / "no_tqdm"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(NO_TQDM)
    no_tqdm = {"PYTHONPATH": str(blocker)}
    probe = run("-c", "import tqdm", cluster_dir=cluster_dir, extra_env=no_tqdm)
    assert probe.returncode == 1 and "No module named 'tqdm'" in probe.stderr  # the blocker really blocks

    big = tmp_path / "big"
    big.write_bytes(os.urandom(8 * SHARD_SIZE + 123))
    put = run(
        "-m",
        "borgusb.cli",
        "put",
        str(big),
        "--key-file",
        keyfile,
        "--r",
        "2",
        "--window",
        "1",
        cluster_dir=cluster_dir,
        extra_env=no_tqdm,
    )
    assert put.returncode == 0, put.stderr
    oid = put.stdout.strip()
    assert oid == content_id(big.read_bytes())
    lines = [ln for ln in put.stderr.splitlines() if ln.startswith("put: ")]
    assert "\r" not in put.stderr and "Traceback" not in put.stderr, put.stderr
    pcts = [int(ln.split(" (")[1].split("%)")[0]) for ln in lines]  # one line per quarter passed, then 100%
    assert [p // 25 for p in pcts] == [1, 2, 3, 4] and pcts[-1] == 100, put.stderr
    assert lines[-1].startswith("put: 8.0 MiB of 8.0 MiB (100%)"), lines

    out = tmp_path / "got"
    got = run("-m", "borgusb.cli", "get", oid, "-o", str(out), cluster_dir=cluster_dir, extra_env=no_tqdm)
    assert got.returncode == 0, got.stderr
    assert out.read_bytes() == big.read_bytes()
    assert any(ln.startswith("get: 8.0 MiB of 8.0 MiB (100%)") for ln in got.stderr.splitlines()), got.stderr

    # the cluster gone, the CLI says what it tried and how to name a node
    cluster.down()
    gone = run("-m", "borgusb.cli", "stat", oid, cluster_dir=cluster_dir)
    assert gone.returncode == 3 and "--node IP" in gone.stderr and "Traceback" not in gone.stderr, gone.stderr
