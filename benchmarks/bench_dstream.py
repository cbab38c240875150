"""DStream against plain HTTP: one 30 MB file over loopback, in the same run.

DStream: a 2-node shardTreeCell cluster (real processes); the file is put
with R=1 (so one node process holds it; `--r 2` pulls from both) and fetched
with the `borgusb get` code path (`dstream.Receiver` in this process): locate
envelope, a signed ``shard.get`` envelope per shard on the plain data channel
(and, for comparison, the same over pinned-TLS frames), the holder's
integrity check on read, SHA-256 of each shard before ``pwrite`` into a
pre-allocated file, the whole file's SHA-256 against the id at the end.

Plain HTTP: the same file from an aiohttp static file server (its own
process, no TLS) on loopback, downloaded with aiohttp and written to disk.

Floor: the receiver's required work and nothing else (the bytes over loopback
by sendfile, each shard's SHA-256 then its pwrite, the whole file's SHA-256 in
order in a second thread): how close any DStream could come on this machine.

Prints the throughputs (best of --repeat), the ratio DStream / plain HTTP
(goal ≥ 0.5, aim 0.8), the floor's ratio and DStream's share of it, and the
figure beside the seed's 30 MB in 2.017 s.
`--sweep` repeats the DStream part for several shard sizes (how the default
was chosen).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402

from borgusb import dna  # noqa: E402
from borgusb.clock import SystemClock  # noqa: E402
from borgusb.cluster import Cluster  # noqa: E402
from borgusb.dstream import Receiver, parse_locate, put_file  # noqa: E402
from borgusb.envelope import Verifier  # noqa: E402
from borgusb.keys import SigningKey  # noqa: E402
from borgusb.net.peer import PeerClient  # noqa: E402
from borgusb.shard import model  # noqa: E402

PORT = dna.get("shardTreeCell").recp_port
DATA_PORT = dna.get("shardTreeCell").mon_port  # the holders' data channel (their shard cell's monPort)
SEED_S = 2.017
LOCATE_S: dict[bool, float] = {}  # the locate's share of the best run
CPU_MS: dict[bool, tuple[float, float]] = {}  # CPU per run: this process (the receiver), the holders
SEED_BYTES = 30 * 1024 * 1024  # "a 30 MB tar.gz", 111 shards


def holder_ticks(cluster: Cluster) -> int:
    """User + system clock ticks the cluster's node processes have used so far."""
    total = 0
    for node in cluster.nodes:
        fields = Path(f"/proc/{node.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


STATIC_SERVER = """
import sys
from aiohttp import web
app = web.Application()
app.router.add_static("/", sys.argv[1])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None, access_log=None)
"""


FLOOR_SERVER = """
import os, socket, sys
path, port = sys.argv[1], int(sys.argv[2])
size = os.path.getsize(path)
ls = socket.create_server(("127.0.0.1", port))
while True:
    conn, _ = ls.accept()
    with conn, open(path, "rb") as f:
        while conn.recv(1):
            off = 0
            while off < size:
                off += os.sendfile(conn.fileno(), f.fileno(), off, size - off)
"""


def floor_pipeline(path: Path, out: Path, ss: int, repeat: int) -> float:
    """The work the issue requires of a receiver and nothing else, as fast as this machine does
    it: the bytes from another process over loopback (sendfile), each shard's SHA-256 then
    its pwrite in one thread, the whole file's SHA-256 in order in another. No envelopes, no
    locate, no holders' checks: the floor under any DStream on these 2 cores."""
    import queue
    import threading

    size = path.stat().st_size
    expected = hashlib.sha256(path.read_bytes()).digest()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER, str(path), str(port)])
    try:
        for _ in range(100):
            try:
                sock = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("the floor's sendfile server did not start")
        best = float("inf")
        with sock:
            for _ in range(repeat):
                out.unlink(missing_ok=True)
                t0 = time.perf_counter()
                fd = os.open(out, os.O_RDWR | os.O_CREAT, 0o644)
                os.ftruncate(fd, size)
                checked: queue.Queue = queue.Queue()
                in_order: queue.Queue = queue.Queue()
                whole = hashlib.sha256()

                def check_and_write(
                    fd: int = fd, checked: queue.Queue = checked, in_order: queue.Queue = in_order
                ) -> None:
                    while (item := checked.get()) is not None:
                        off, buf = item
                        hashlib.sha256(buf).hexdigest()
                        os.pwrite(fd, buf, off)
                        in_order.put(buf)
                    in_order.put(None)

                def hash_whole(in_order: queue.Queue = in_order, whole: Any = whole) -> None:
                    while (buf := in_order.get()) is not None:
                        whole.update(buf)

                threads = [threading.Thread(target=check_and_write), threading.Thread(target=hash_whole)]
                for t in threads:
                    t.start()
                sock.sendall(b"x")
                off = 0
                while off < size:
                    n = min(ss, size - off)
                    buf = bytearray(n)
                    view, got = memoryview(buf), 0
                    while got < n:
                        got += sock.recv_into(view[got:], n - got)
                    checked.put((off, buf))
                    off += n
                checked.put(None)
                for t in threads:
                    t.join()
                os.close(fd)
                best = min(best, time.perf_counter() - t0)
                assert whole.digest() == expected
        return best
    finally:
        proc.terminate()
        proc.wait()


def mbps(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def plain_http(path: Path, out: Path, repeat: int) -> float:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", STATIC_SERVER, str(path.parent), str(port)])
    try:
        url = f"http://127.0.0.1:{port}/{path.name}"
        async with aiohttp.ClientSession() as s:
            for _ in range(100):
                try:
                    async with s.head(url) as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            best = float("inf")
            for _ in range(repeat):
                out.unlink(missing_ok=True)
                t0 = time.perf_counter()
                async with s.get(url) as r:
                    with open(out, "wb") as f:
                        async for chunk in r.content.iter_chunked(256 * 1024):
                            f.write(chunk)
                best = min(best, time.perf_counter() - t0)
        return best
    finally:
        proc.terminate()
        proc.wait()


async def dstream(
    path: Path, out: Path, tmp: Path, *, ss: int, r: int, window: int, repeat: int, tls: bool = False
) -> tuple[float, int]:
    os.environ["BORGUSB_DATA_ROOT"] = str(tmp)
    cluster = Cluster(name=f"bench-{ss}-{int(tls)}", cell="shardTreeCell", root_dir=tmp / "cluster", heartbeat_ms=500)
    try:
        cluster.up(2)
        await cluster.wait_one_tree(timeout_s=60, expect=2)
        while not all(d.get("shard", {}).get("directory") == 2 for d in await cluster.status()):
            await asyncio.sleep(0.2)
        key = SigningKey.generate()
        clock = SystemClock()
        ip = cluster.nodes[0].ip
        async with PeerClient(key, clock, Verifier(clock), timeout_s=60) as peers:
            put = await put_file(peers, ip, PORT, path, key, r=r, ss=ss)
            best = float("inf")
            cpu0, ticks0 = os.times(), holder_ticks(cluster)
            for _ in range(repeat):
                out.unlink(missing_ok=True)
                t0 = time.perf_counter()
                reply = await peers.post(
                    cluster.nodes[1].ip, PORT, "/recp", "shard.locate", {"id": put["id"]}, signed_reply=True
                )
                m, holders = parse_locate(reply, put["id"])
                t1 = time.perf_counter()
                await Receiver(peers, m, holders, out, window=window, tls=tls, data_port=DATA_PORT).run()
                if time.perf_counter() - t0 < best:
                    best, LOCATE_S[tls] = time.perf_counter() - t0, t1 - t0
            cpu1, ticks1 = os.times(), holder_ticks(cluster)
            CPU_MS[tls] = (
                ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) * 1000 / repeat,
                (ticks1 - ticks0) * 1000 / os.sysconf("SC_CLK_TCK") / repeat,
            )
            assert hashlib.sha256(out.read_bytes()).hexdigest() == put["id"]
        return best, put["shards"]
    finally:
        cluster.down()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=30_000_000)
    ap.add_argument("--shard-size", type=int, default=model.SHARD_SIZE)
    ap.add_argument("--r", type=int, default=1, help="copies (holders) of each shard (default 1)")
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sweep", action="store_true", help="also try 64 KiB, 128 KiB, 512 KiB and 1 MiB shards")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None) as d:
        tmp = Path(d)
        src = tmp / "src" / "object.bin"
        src.parent.mkdir()
        src.write_bytes(os.urandom(args.size))
        http_s = await plain_http(src, tmp / "http.out", args.repeat)
        floor_s = await asyncio.to_thread(floor_pipeline, src, tmp / "floor.out", args.shard_size, args.repeat)
        sizes = [args.shard_size] + ([64 << 10, 128 << 10, 512 << 10, 1 << 20] if args.sweep else [])
        results = {}
        for ss in sizes:
            results[ss] = await dstream(
                src, tmp / f"ds-{ss}.out", tmp, ss=ss, r=args.r, window=args.window, repeat=args.repeat
            )
        tls_s, _ = await dstream(
            src, tmp / "tls.out", tmp, ss=args.shard_size, r=args.r, window=args.window, repeat=args.repeat, tls=True
        )
    ds_s, shards = results[args.shard_size]
    mb = args.size / 1e6
    print(
        f"object: {mb:.1f} MB, {shards} shards of {args.shard_size // 1024} KiB, R={args.r}, window {args.window}, "
        f"best of {args.repeat}"
    )
    print(f"plain HTTP (aiohttp static, no TLS):  {http_s:.3f} s  {mbps(args.size, http_s):7.1f} MB/s")
    print(
        f"DStream (signed, SHA-256, disk):      {ds_s:.3f} s  {mbps(args.size, ds_s):7.1f} MB/s  "
        f"(locate {LOCATE_S[False] * 1000:.1f} ms of it)"
    )
    print(
        f"  CPU per run: receiver {CPU_MS[False][0]:.0f} ms, holders {CPU_MS[False][1]:.0f} ms "
        f"(two SHA-256 passes over {mb:.0f} MB at the receiver are part of it)"
    )
    print(
        f"DStream over pinned TLS frames:       {tls_s:.3f} s  {mbps(args.size, tls_s):7.1f} MB/s  (Receiver(tls=True))"
    )
    ratio = http_s / ds_s
    print(
        f"floor (the receiver's required work alone: two SHA-256 passes, pwrite; no protocol): "
        f"{floor_s:.3f} s  {mbps(args.size, floor_s):7.1f} MB/s  = ratio {http_s / floor_s:.2f} against plain HTTP; "
        f"DStream reaches {floor_s / ds_s:.2f} of it"
    )
    print(f"ratio DStream / plain HTTP: {ratio:.2f}  (goal >= 0.5, aim 0.8): {'OK' if ratio >= 0.5 else 'BELOW GOAL'}")
    print(
        f"seed: 30 MB (111 shards) Toronto -> California in {SEED_S} s = {mbps(SEED_BYTES, SEED_S):.1f} MB/s "
        f"(WAN, single-core VM); here: {mb:.0f} MB in {ds_s:.3f} s on loopback = "
        f"{mbps(args.size, ds_s) / mbps(SEED_BYTES, SEED_S):.0f}x the seed's rate"
    )
    if args.sweep:
        print("shard size sweep (DStream only):")
        for ss, (s, n) in sorted(results.items()):
            print(f"  {ss // 1024:5d} KiB  {n:4d} shards  {s:.3f} s  {mbps(args.size, s):7.1f} MB/s")


if __name__ == "__main__":
    asyncio.run(main())
