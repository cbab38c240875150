"""The cost of privacy: a 30 MB private file put and got through the file manager, beside the same
file through the plain shard path (no encryption), in the same run on the same cluster.

Cluster: 2 addresses on loopback, each running a shardTreeCell and an ftreeFileMgrCell (real
processes), R = 1 for shards. Plain: `dstream.put_file` then `dstream.Receiver` (what `borgusb
put/get` do). Private: what `borgusb files put/get` do (`files.remote.FileTree`): the file
encrypted in 64 KiB AES-256-GCM chunks to a temporary file, put, a new root folder version and
root pointer published; then the root read, the folder opened, the ciphertext fetched beside the
output and decrypted over itself (`files.actions.get`). Each round stores fresh random bytes
(the same bytes again would find their shards already held). Prints the best of --repeat for
each and the ratio private / plain (goal >= 0.7).

    flock /tmp/borgusb-cluster.lock .venv/bin/python benchmarks/bench_files.py [--mb 30] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from borgusb.clock import SystemClock  # noqa: E402
from borgusb.cluster import Cluster  # noqa: E402
from borgusb.envelope import Verifier  # noqa: E402
from borgusb.files import actions, ops, stream  # noqa: E402
from borgusb.files.entry import Entry  # noqa: E402
from borgusb.files.remote import SHARD_PORT, FileTree, encrypt_file  # noqa: E402
from borgusb.keys import SigningKey  # noqa: E402
from borgusb.net.peer import PeerClient  # noqa: E402

BASE = 190  # 127.0.0.190, .191: off the addresses the cluster tests use


async def plain(tree: FileTree, src: Path, out: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    oid = await tree.put_path(src)
    t1 = time.perf_counter()
    out.unlink(missing_ok=True)
    await tree.get_path(oid, out)
    t2 = time.perf_counter()
    assert out.read_bytes() == src.read_bytes()
    return t1 - t0, t2 - t1


async def private(tree: FileTree, src: Path, out: Path, n: int) -> tuple[float, float]:
    name = f"bench-{n}.bin"
    t0 = time.perf_counter()
    key = stream.new_key()
    cipher = tree.tmp / "put.bin"
    size = await asyncio.to_thread(encrypt_file, key, src, cipher)
    oid = await tree.put_path(cipher)
    entry = Entry("file", oid, size, "application/octet-stream", tree.now(), key.hex())
    await tree.change([], lambda e: ops.put(e, name, entry))
    t1 = time.perf_counter()
    _, root = await tree.head()
    out.unlink(missing_ok=True)
    await actions.get(tree, ops.get(root.entries, name), out)  # what `borgusb files get` does
    t2 = time.perf_counter()
    cipher.unlink()
    assert out.read_bytes() == src.read_bytes()
    return t1 - t0, t2 - t1


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-files-"))
    os.environ["BORGUSB_DATA_ROOT"] = str(tmp / "data")
    src, out = tmp / "src.bin", tmp / "out.bin"
    clusters = [
        Cluster(name=f"bench-files-{cell}", cell=cell, root_dir=tmp / "cluster", heartbeat_ms=500)
        for cell in ("shardTreeCell", "ftreeFileMgrCell")
    ]
    try:
        for c in clusters:
            c.up(2, base=BASE)
        for c in clusters:
            await c.wait_one_tree(timeout_s=60, expect=2)
        shard, ftree = clusters
        while not all(d.get("shard", {}).get("directory") == 2 for d in await shard.status()) or not all(
            d.get("files", {}).get("members") == 2 for d in await ftree.status()
        ):
            await asyncio.sleep(0.2)
        key, clock = SigningKey.generate(), SystemClock()
        async with PeerClient(key, clock, Verifier(clock), timeout_s=60) as peers:
            tree = FileTree(peers, shard.nodes[0].ip, key, machine="bench", r=1)
            try:
                best: dict[str, list[float]] = {"plain": [1e9, 1e9], "private": [1e9, 1e9]}
                for n in range(args.repeat):  # fresh bytes each round: no shard the holders already keep
                    src.write_bytes(os.urandom(args.mb * 1024 * 1024))
                    for what, run in (("plain", plain(tree, src, out)), ("private", private(tree, src, out, n))):
                        put_s, get_s = await run
                        best[what] = [min(best[what][0], put_s), min(best[what][1], get_s)]
            finally:
                tree.close()
    finally:
        for c in clusters:
            c.down()
    mb = args.mb * 1.048576
    print(f"{args.mb} MiB on loopback, 2 nodes, R=1 (shard port {SHARD_PORT}), best of {args.repeat}:")
    for what in ("plain", "private"):
        p, g = best[what]
        print(f"  {what:8} put {p:6.2f} s ({mb / p:6.1f} MB/s)   get {g:6.2f} s ({mb / g:6.1f} MB/s)")
    print(
        f"  private / plain: put {best['plain'][0] / best['private'][0]:.2f}, "
        f"get {best['plain'][1] / best['private'][1]:.2f} (goal >= 0.7)"
    )


if __name__ == "__main__":
    asyncio.run(main())
