"""DStream against plain HTTP: one 30 MB file over loopback, in the same run.

DStream: a 2-node shardTreeCell cluster (real processes); the file is put
with R=1 (placement spreads its shards over both nodes, and the reader pulls
from both at once; `--r 2` gives every shard two holders) and fetched with the
`borgusb get` code path (`dstream.Receiver` in this process): locate envelope
(the manifest checked against the id), a signed ``shard.get`` envelope per
request on the plain data channel (and, for comparison, pinned-TLS frames),
the holder's integrity check on read, SHA-256 of each shard before ``pwrite``
into a pre-allocated file: every byte hashed once (issue 18: the id is the
SHA-256 of the shard list, so there is no whole-file pass).

Plain HTTP: the same file from an aiohttp static file server (its own
process, no TLS) on loopback, downloaded with aiohttp and written to disk.

Floor: the receiver's required work and nothing else (the bytes over loopback
by sendfile, each shard's SHA-256 then its pwrite: one pass). Floor with the
holders: the same with the shards dealt to two sending processes that check
each shard's CRC-32 in place before sending it, as the store must (all on the
same 2 cores as DStream's holders). With the run's locate, it is how close any
DStream could come on this machine; the bound it prints (locate + required CPU
/ 2 cores) says how much of the receiver-only floor is reachable at all.

Prints the throughputs (best of --repeat), the ratio DStream / plain HTTP
(goal ≥ 0.6), DStream's share of the floor (goal ≥ 0.9), and the figure
beside the seed's 30 MB in 2.017 s.
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
from collections.abc import Iterable
from pathlib import Path

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
from tests.integration import shaped_net  # noqa: E402

PORT = dna.get("shardTreeCell").recp_port
DATA_PORT = dna.get("shardTreeCell").mon_port  # the holders' data channel (their shard cell's monPort)
SEED_S = 2.017
LOCATE_S: dict[bool, float] = {}  # the locate's share of the best run
SHAPED_LOCATE_S: dict[int, float] = {}  # the same over the shaped links, by loss rate
CPU_MS: dict[bool, tuple[float, float]] = {}  # CPU per run: this process (the receiver), the holders
SEED_BYTES = 30 * 1024 * 1024  # "a 30 MB tar.gz", 111 shards


def proc_ticks(pids: Iterable[int]) -> int:
    """User + system clock ticks these processes have used so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


STATIC_SERVER = """
import sys
from aiohttp import web
app = web.Application()
app.router.add_static("/", sys.argv[1])
web.run_app(app, host=sys.argv[3], port=int(sys.argv[2]), print=None, access_log=None)
"""


FLOOR_SERVER = """
import mmap, os, socket, sys
from isal.isal_zlib import crc32
path, port, ss, check = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "check"
size = os.path.getsize(path)
mine = [(off, min(ss, size - off)) for off in (ss * int(i) for i in sys.argv[5].split(","))]
with open(path, "rb") as f:
    crcs = [crc32(os.pread(f.fileno(), n, off)) for off, n in mine]  # as the store keeps them
ls = socket.create_server(("127.0.0.1", port))
while True:
    conn, _ = ls.accept()
    with conn, open(path, "rb") as f:
        while conn.recv(1):
            for (off, n), crc in zip(mine, crcs):
                if check:
                    flags = mmap.MAP_SHARED | mmap.MAP_POPULATE
                    with mmap.mmap(f.fileno(), n, flags=flags, prot=mmap.PROT_READ, offset=off) as mm:
                        assert crc32(mm) == crc
                sent = 0
                while sent < n:
                    sent += os.sendfile(conn.fileno(), f.fileno(), off + sent, n - sent)
"""


def floor(path: Path, out: Path, ss: int, repeat: int, holders: int = 1) -> tuple[float, float, float]:
    """The required work and nothing else, as fast as this machine does it: the bytes from
    other processes over loopback (sendfile), each shard's SHA-256 then its pwrite in a second
    thread per source. With one holder and no holder's check: the receiver's floor. With
    `holders` > 1: the shards dealt out among that many processes that each check a shard's
    CRC-32 in place before sending it (the store's read check: a corrupt copy is never served),
    all on these 2 cores: the floor of a read from several holders. No envelopes, no locate.
    Returns (best seconds, receiver CPU ms per run, holders' CPU ms per run)."""
    import queue
    import threading

    size = path.stat().st_size
    expected = [model.sha256_hex(chunk) for _, chunk in model.split(path.read_bytes(), ss)]
    shares = [list(range(k, len(expected), holders)) for k in range(holders)]
    procs, socks = [], []
    try:
        for share in shares:
            port = free_port()
            check = "check" if holders > 1 else "none"
            args = [str(path), str(port), str(ss), check, ",".join(map(str, share))]
            procs.append(subprocess.Popen([sys.executable, "-c", FLOOR_SERVER, *args]))
            for _ in range(100):
                try:
                    socks.append(socket.create_connection(("127.0.0.1", port)))
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                raise RuntimeError("the floor's sendfile server did not start")
        best = float("inf")
        cpu0, ticks0 = time.process_time(), proc_ticks(p.pid for p in procs)
        for _ in range(repeat):
            out.unlink(missing_ok=True)
            t0 = time.perf_counter()
            fd = os.open(out, os.O_RDWR | os.O_CREAT, 0o644)
            os.ftruncate(fd, size)
            ok: list[bool] = []

            def check_and_write(checked: queue.Queue, fd: int = fd, ok: list[bool] = ok) -> None:
                while (item := checked.get()) is not None:
                    i, buf = item
                    ok.append(hashlib.sha256(buf).hexdigest() == expected[i])
                    os.pwrite(fd, buf, i * ss)

            def receive(sock: socket.socket, share: list[int], checked: queue.Queue) -> None:
                sock.sendall(b"x")
                for i in share:
                    n = min(ss, size - i * ss)
                    buf = bytearray(n)
                    view, got = memoryview(buf), 0
                    while got < n:
                        got += sock.recv_into(view[got:], n - got)
                    checked.put((i, buf))
                checked.put(None)

            threads = []
            for sock, share in zip(socks, shares):
                checked: queue.Queue = queue.Queue()
                threads += [
                    threading.Thread(target=check_and_write, args=(checked,)),
                    threading.Thread(target=receive, args=(sock, share, checked)),
                ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            os.close(fd)
            best = min(best, time.perf_counter() - t0)
            assert all(ok) and len(ok) == len(expected)
        return (
            best,
            (time.process_time() - cpu0) * 1000 / repeat,
            (proc_ticks(p.pid for p in procs) - ticks0) * 1000 / os.sysconf("SC_CLK_TCK") / repeat,
        )
    finally:
        for sock in socks:
            sock.close()
        for p in procs:
            p.terminate()
            p.wait()


def mbps(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def plain_http(
    path: Path, out: Path, repeat: int, host: str = "127.0.0.1", prefix: tuple[str, ...] = (), port: int = 0
) -> float:
    """Best time to download `path` from an aiohttp static server at host (run under `prefix`)."""
    port = port or free_port()
    proc = subprocess.Popen([*prefix, sys.executable, "-c", STATIC_SERVER, str(path.parent), str(port), host])
    try:
        url = f"http://{host}:{port}/{path.name}"
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
    path: Path, out: Path, tmp: Path, *, ss: int, r: int, per_holder: int, repeat: int, tls: bool = False
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
            cpu0, ticks0 = os.times(), proc_ticks(n.pid for n in cluster.nodes)
            for _ in range(repeat):
                out.unlink(missing_ok=True)
                t0 = time.perf_counter()
                reply = await peers.post(
                    cluster.nodes[1].ip, PORT, "/recp", "shard.locate", {"id": put["id"]}, signed_reply=True
                )
                m, holders = parse_locate(reply, put["id"])
                t1 = time.perf_counter()
                rx = Receiver(peers, m, holders, out, per_holder=per_holder, tls=tls, data_port=DATA_PORT)
                await rx.run()
                if time.perf_counter() - t0 < best:
                    best, LOCATE_S[tls] = time.perf_counter() - t0, t1 - t0
                await rx.receipts_handed()  # after the read, as `borgusb get` does: not in the next run's time
            cpu1, ticks1 = os.times(), proc_ticks(n.pid for n in cluster.nodes)
            CPU_MS[tls] = (
                ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) * 1000 / repeat,
                (ticks1 - ticks0) * 1000 / os.sysconf("SC_CLK_TCK") / repeat,
            )
            assert out.read_bytes() == path.read_bytes()
        return best, put["shards"]
    finally:
        cluster.down()


async def shaped(path: Path, tmp: Path, repeat: int, losses: tuple[int, ...]) -> dict[int, tuple[float, float]]:
    """Three holders, each in its own namespace behind a 100 Mbit/s link (`shaped_net`), the
    object put with R=3; per loss rate: (one holder's plain HTTP download, DStream), best of
    `repeat` each."""
    out: dict[int, tuple[float, float]] = {}
    with shaped_net.shaped_holders(3) as ips:
        cluster = Cluster(name="bench-shaped", cell="shardTreeCell", root_dir=tmp / "shaped", heartbeat_ms=500)
        cluster.prefix = {ip: ["ip", "netns", "exec", shaped_net.holder_ns(i)] for i, ip in enumerate(ips)}
        try:
            cluster.spawn(ips[0], [])
            for ip in ips[1:]:
                cluster.spawn(ip, [ips[0]])
            await cluster.wait_one_tree(timeout_s=60, expect=3)
            while not all(d.get("shard", {}).get("directory") == 3 for d in await cluster.status()):
                await asyncio.sleep(0.2)
            key, clock = SigningKey.generate(), SystemClock()
            async with PeerClient(key, clock, Verifier(clock), timeout_s=120) as peers:
                put = await put_file(peers, ips[0], PORT, path, key, r=3)
                for loss in losses:
                    shaped_net.set_loss(3, loss)
                    prefix = ("ip", "netns", "exec", shaped_net.holder_ns(0))
                    http_s = await plain_http(path, tmp / "shaped-http.out", repeat, ips[0], prefix, port=8080)
                    best = float("inf")
                    for _ in range(repeat):
                        dest = tmp / "shaped-ds.out"
                        dest.unlink(missing_ok=True)
                        t0 = time.perf_counter()
                        reply = await peers.post(
                            ips[1], PORT, "/recp", "shard.locate", {"id": put["id"]}, signed_reply=True
                        )
                        m, holders = parse_locate(reply, put["id"])
                        t1 = time.perf_counter()
                        rx = Receiver(peers, m, holders, dest, data_port=DATA_PORT)
                        await rx.run()
                        if time.perf_counter() - t0 < best:
                            best, SHAPED_LOCATE_S[loss] = time.perf_counter() - t0, t1 - t0
                        await rx.receipts_handed()
                        assert dest.read_bytes() == path.read_bytes()
                    out[loss] = (http_s, best)
        finally:
            cluster.down()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=30_000_000)
    ap.add_argument("--shard-size", type=int, default=model.SHARD_SIZE)
    ap.add_argument("--r", type=int, default=1, help="copies (holders) of each shard (default 1)")
    ap.add_argument("--per-holder", type=int, default=16, help="shards in flight on each holder (default 16)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sweep", action="store_true", help="also try 64 KiB, 128 KiB, 512 KiB and 1 MiB shards")
    ap.add_argument("--no-shaped", action="store_true", help="loopback only (the shaped part needs root, tc, nft)")
    ap.add_argument("--shaped-only", action="store_true", help="only the shaped part")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None) as d:
        tmp = Path(d)
        src = tmp / "src" / "object.bin"
        src.parent.mkdir()
        src.write_bytes(os.urandom(args.size))
        if not args.shaped_only:
            await loopback(args, src, tmp)
        if not args.no_shaped:
            report_shaped(args, await shaped(src, tmp, args.repeat, (0, 2)))


async def loopback(args: argparse.Namespace, src: Path, tmp: Path) -> None:
    http_s = await plain_http(src, tmp / "http.out", args.repeat)
    floor_s, floor_rx, floor_tx = await asyncio.to_thread(floor, src, tmp / "floor.out", args.shard_size, args.repeat)
    held_s, held_rx, held_tx = await asyncio.to_thread(
        floor, src, tmp / "floor2.out", args.shard_size, args.repeat, holders=2
    )
    sizes = [args.shard_size] + ([64 << 10, 128 << 10, 512 << 10, 1 << 20] if args.sweep else [])
    results = {}
    for ss in sizes:
        results[ss] = await dstream(
            src, tmp / f"ds-{ss}.out", tmp, ss=ss, r=args.r, per_holder=args.per_holder, repeat=args.repeat
        )
    tls_s, _ = await dstream(
        src,
        tmp / "tls.out",
        tmp,
        ss=args.shard_size,
        r=args.r,
        per_holder=args.per_holder,
        repeat=args.repeat,
        tls=True,
    )
    ds_s, shards = results[args.shard_size]
    mb = args.size / 1e6
    print(
        f"object: {mb:.1f} MB, {shards} shards of {args.shard_size // 1024} KiB, R={args.r}, "
        f"{args.per_holder} per holder, best of {args.repeat}"
    )
    print(f"plain HTTP (aiohttp static, no TLS):  {http_s:.3f} s  {mbps(args.size, http_s):7.1f} MB/s")
    print(
        f"DStream (signed, SHA-256, disk):      {ds_s:.3f} s  {mbps(args.size, ds_s):7.1f} MB/s  "
        f"(locate {LOCATE_S[False] * 1000:.1f} ms of it)"
    )
    print(
        f"  CPU per run: receiver {CPU_MS[False][0]:.0f} ms, holders {CPU_MS[False][1]:.0f} ms "
        f"(one SHA-256 pass over {mb:.0f} MB at the receiver is part of it)"
    )
    print(
        f"DStream over pinned TLS frames:       {tls_s:.3f} s  {mbps(args.size, tls_s):7.1f} MB/s  (Receiver(tls=True))"
    )
    ratio, of_floor = http_s / ds_s, floor_s / ds_s
    print(
        f"floor (the receiver's required work alone: one SHA-256 pass, pwrite; no protocol): "
        f"{floor_s:.3f} s  {mbps(args.size, floor_s):7.1f} MB/s  = ratio {http_s / floor_s:.2f} against plain HTTP; "
        f"CPU per run: receiver {floor_rx:.0f} ms, sender {floor_tx:.0f} ms"
    )
    locate_ms, need_ms = LOCATE_S[False] * 1000, held_rx + held_tx
    bound_s = (locate_ms + need_ms / 2) / 1000
    print(
        f"floor with the holders (shards dealt to 2 processes that check each one's CRC-32 in place, then sendfile; "
        f"the receiver as above; all on these 2 cores): {held_s:.3f} s; CPU per run: receiver {held_rx:.0f} ms, "
        f"holders {held_tx:.0f} ms"
    )
    print(
        f"  required: locate {locate_ms:.1f} ms (the holders found first) + {need_ms:.0f} ms of required CPU "
        f"on 2 cores = at least {bound_s:.3f} s, so at best {floor_s / bound_s:.2f} of the floor; with the locate, "
        f"the floor with the holders is {held_s + locate_ms / 1000:.3f} s: DStream reaches "
        f"{(held_s + locate_ms / 1000) / ds_s:.2f} of it"
    )
    print(f"ratio DStream / plain HTTP: {ratio:.2f}  (goal >= 0.6): {'OK' if ratio >= 0.6 else 'BELOW GOAL'}")
    print(f"DStream / floor: {of_floor:.2f}  (goal >= 0.9): {'OK' if of_floor >= 0.9 else 'BELOW GOAL'}")
    print(
        f"seed: 30 MB (111 shards) Toronto -> California in {SEED_S} s = {mbps(SEED_BYTES, SEED_S):.1f} MB/s "
        f"(WAN, single-core VM); here: {mb:.0f} MB in {ds_s:.3f} s on loopback = "
        f"{mbps(args.size, ds_s) / mbps(SEED_BYTES, SEED_S):.0f}x the seed's rate"
    )
    if args.sweep:
        print("shard size sweep (DStream only):")
        for ss, (s, n) in sorted(results.items()):
            print(f"  {ss // 1024:5d} KiB  {n:4d} shards  {s:.3f} s  {mbps(args.size, s):7.1f} MB/s")


def report_shaped(args: argparse.Namespace, links: dict[int, tuple[float, float]]) -> None:
    print(f"shaped: 3 holders, each in its own network namespace behind {shaped_net.RATE} (tc tbf), R=3:")
    for loss, (single_s, many_s) in links.items():
        gain, goal = single_s / many_s, 2.5 if loss == 0 else 2.0
        print(
            f"  {loss}% loss: one holder by plain HTTP {single_s:.3f} s {mbps(args.size, single_s):6.1f} MB/s; "
            f"DStream from all {many_s:.3f} s {mbps(args.size, many_s):6.1f} MB/s "
            f"(locate {SHAPED_LOCATE_S[loss] * 1000:.0f} ms of it) = {gain:.2f}x "
            f"(goal >= {goal}): {'OK' if gain >= goal else 'BELOW GOAL'}; the seed's 30 MB WAN run: {SEED_S} s"
        )


if __name__ == "__main__":
    asyncio.run(main())
