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

The floor plus one signed round trip from the reader to a node (a
signed ``shard.holds`` and its signed reply, measured in the same rounds): a reader learns
the holders from the network before its first byte, and every message is a signed envelope.
It bounds both ratios from above, whatever the protocol does after (as far as each contender's
best round, taken apart from the others', allows: a noisy round can put DStream's under it).

DStream reads the same object every round, as the other contenders read the same file: its
holders then serve on the first round's read checks (a check of the same file that passed within
30 s stands: shard/freshchecks.py; the count is printed). An object's first read, every check
done, is measured beside it: another object of the same size each round, put at the start.

Every contender is set up once and read in --repeat interleaved rounds (each round reads the
object once with each, the order turning round by round), so a slow minute of this shared
machine falls on all of them. Prints the throughputs (best round of each), the ratio DStream /
plain HTTP (goal ≥ 0.6), DStream's share of the floor (goal ≥ 0.9), both also as the median of
the rounds' own ratios, the CPU a read meeting 0.9 of the floor would leave the protocol beside
the CPU it took, and the figure beside the seed's 30 MB in 2.017 s.
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
from tests.integration import shaped_net  # noqa: E402

PORT = dna.get("shardTreeCell").recp_port
DATA_PORT = dna.get("shardTreeCell").mon_port  # the holders' data channel (their shard cell's monPort)
SEED_S = 2.017
SHAPED_LOCATE_S: dict[int, float] = {}  # the same over the shaped links, by loss rate
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


class Floor:
    """The required work and nothing else, as fast as this machine does it: the bytes from
    other processes over loopback (sendfile), each shard's SHA-256 then its pwrite in a second
    thread per source. With one holder and no holder's check: the receiver's floor. With
    `holders` > 1: the shards dealt out among that many processes that each check a shard's
    CRC-32 in place before sending it (the store's read check: a corrupt copy is never served),
    all on these 2 cores: the floor of a read from several holders. No envelopes, no locate.
    `read` is one round: (seconds, receiver CPU ms, holders' CPU ms)."""

    def __init__(self, path: Path, ss: int, holders: int = 1) -> None:
        self.path, self.ss, self.size = path, ss, path.stat().st_size
        self.expected = [model.sha256_hex(chunk) for _, chunk in model.split(path.read_bytes(), ss)]
        self.shares = [list(range(k, len(self.expected), holders)) for k in range(holders)]
        self.check = "check" if holders > 1 else "none"
        self.procs: list[subprocess.Popen] = []
        self.socks: list[socket.socket] = []

    def __enter__(self) -> Floor:
        try:
            for share in self.shares:
                port = free_port()
                args = [str(self.path), str(port), str(self.ss), self.check, ",".join(map(str, share))]
                self.procs.append(subprocess.Popen([sys.executable, "-c", FLOOR_SERVER, *args]))
                for _ in range(100):
                    try:
                        self.socks.append(socket.create_connection(("127.0.0.1", port)))
                        break
                    except OSError:
                        time.sleep(0.05)
                else:
                    raise RuntimeError("the floor's sendfile server did not start")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for sock in self.socks:
            sock.close()
        for p in self.procs:
            p.terminate()
            p.wait()

    def read(self, out: Path) -> tuple[float, float, float]:
        import queue
        import threading

        ss, size, expected = self.ss, self.size, self.expected
        cpu0, ticks0 = time.process_time(), proc_ticks(p.pid for p in self.procs)
        out.unlink(missing_ok=True)
        t0 = time.perf_counter()
        fd = os.open(out, os.O_RDWR | os.O_CREAT, 0o644)
        os.ftruncate(fd, size)
        ok: list[bool] = []

        def check_and_write(checked: queue.Queue) -> None:
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
        for sock, share in zip(self.socks, self.shares):
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
        seconds = time.perf_counter() - t0
        assert all(ok) and len(ok) == len(expected)
        tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
        return (
            seconds,
            (time.process_time() - cpu0) * 1000,
            (proc_ticks(p.pid for p in self.procs) - ticks0) * tick_ms,
        )


def mbps(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StaticServer:
    """An aiohttp static file server for `path`'s folder in its own process (run under `prefix`);
    `download` is one timed round."""

    def __init__(self, path: Path, host: str = "127.0.0.1", prefix: tuple[str, ...] = (), port: int = 0) -> None:
        self.path, self.host, self.prefix, self.port = path, host, prefix, port or free_port()
        self.url = f"http://{host}:{self.port}/{path.name}"
        self.proc: subprocess.Popen | None = None
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> StaticServer:
        args = [*self.prefix, sys.executable, "-c", STATIC_SERVER, str(self.path.parent), str(self.port), self.host]
        self.proc = subprocess.Popen(args)
        self.session = aiohttp.ClientSession()
        try:
            for _ in range(100):
                try:
                    async with self.session.head(self.url) as r:
                        if r.status == 200:
                            return self
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            raise RuntimeError("the static server did not start")
        except BaseException:
            await self.__aexit__()
            raise

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait()

    async def download(self, out: Path) -> float:
        assert self.session is not None
        out.unlink(missing_ok=True)
        t0 = time.perf_counter()
        async with self.session.get(self.url) as r:
            with open(out, "wb") as f:
                async for chunk in r.content.iter_chunked(256 * 1024):
                    f.write(chunk)
        return time.perf_counter() - t0


class DStreamCluster:
    """A 2-node shardTreeCell cluster on loopback with the object put once (shards of `ss`);
    `read` is one timed round of `borgusb get`'s path: (seconds, locate seconds, receiver CPU ms,
    holders' CPU ms). The read's receipts are handed in after the timed part, in its CPU."""

    def __init__(self, path: Path, tmp: Path, *, ss: int, r: int, per_holder: int) -> None:
        self.path, self.ss, self.r, self.per_holder = path, ss, r, per_holder
        os.environ["BORGUSB_DATA_ROOT"] = str(tmp)
        self.cluster = Cluster(
            name=f"bench-{ss}", cell="shardTreeCell", root_dir=tmp / f"cluster-{ss}", heartbeat_ms=500
        )
        self.key = SigningKey.generate()  # the reader's, and the objects' owner
        self.peers: PeerClient | None = None
        self.put: dict[str, Any] = {}
        self.unread: list[str] = []  # objects of the same size not read yet (`put_unread`, `read_unread`)

    async def __aenter__(self) -> DStreamCluster:
        try:
            self.cluster.up(2)
            await self.cluster.wait_one_tree(timeout_s=60, expect=2)
            while not all(d.get("shard", {}).get("directory") == 2 for d in await self.cluster.status()):
                await asyncio.sleep(0.2)
            clock = SystemClock()
            self.peers = PeerClient(self.key, clock, Verifier(clock), timeout_s=60)
            self.put = await put_file(
                self.peers, self.cluster.nodes[0].ip, PORT, self.path, self.key, r=self.r, ss=self.ss
            )
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.peers is not None:
            await self.peers.close()
        self.cluster.down()

    async def put_unread(self, count: int, tmp: Path) -> None:
        """Put `count` more objects of the same size, other bytes each, for `read_unread`."""
        assert self.peers is not None
        size = self.path.stat().st_size
        for k in range(count):
            src = tmp / f"unread-{k}.bin"
            src.write_bytes(os.urandom(size))
            put = await put_file(self.peers, self.cluster.nodes[0].ip, PORT, src, self.key, r=self.r, ss=self.ss)
            self.unread.append(put["id"])
            src.unlink()

    async def read_unread(self, out: Path) -> tuple[float, ...]:
        """`read` of an object never read before: every holder's read check is done (no check of a
        moment ago stands for it: shard/freshchecks.py)."""
        return await self.read(out, oid=self.unread.pop())

    async def fresh_checks(self) -> int:
        """Shards the holders sent without repeating their read check (a check of the same file passed
        within 30 s: shard/freshchecks.py)."""
        docs = await self.cluster.status()
        return sum(d.get("shard", {}).get("store", {}).get("counters", {}).get("served_fresh", 0) for d in docs)

    async def signed_round_trip(self) -> float:
        """One signed request from the reader to a node and its signed reply (``shard.holds`` for the
        object, the node's own answer): the least a reader must do before its first byte, since it
        learns the holders from the network. Seconds."""
        assert self.peers is not None
        t0 = time.perf_counter()
        await self.peers.post(
            self.cluster.nodes[1].ip, PORT, "/recp", "shard.holds", {"id": self.put["id"]}, signed_reply=True
        )
        return time.perf_counter() - t0

    async def read(self, out: Path, tls: bool = False, oid: str | None = None) -> tuple[float, float, float, float]:
        assert self.peers is not None
        oid = oid or self.put["id"]
        cpu0, ticks0 = os.times(), proc_ticks(n.pid for n in self.cluster.nodes)
        out.unlink(missing_ok=True)
        t0 = time.perf_counter()
        reply = await self.peers.post(
            self.cluster.nodes[1].ip, PORT, "/recp", "shard.locate", {"id": oid}, signed_reply=True
        )
        m, holders = parse_locate(reply, oid)
        t1 = time.perf_counter()
        rx = Receiver(self.peers, m, holders, out, per_holder=self.per_holder, tls=tls, data_port=DATA_PORT)
        await rx.run()
        seconds = time.perf_counter() - t0
        await rx.receipts_handed()  # after the read, as `borgusb get` does: not in the next round's time
        cpu1, ticks1 = os.times(), proc_ticks(n.pid for n in self.cluster.nodes)
        assert out.stat().st_size == self.path.stat().st_size
        return (
            seconds,
            t1 - t0,
            ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) * 1000,
            (ticks1 - ticks0) * 1000 / os.sysconf("SC_CLK_TCK"),
        )


async def plain_http(
    path: Path, out: Path, repeat: int, host: str = "127.0.0.1", prefix: tuple[str, ...] = (), port: int = 0
) -> float:
    """Best time to download `path` from an aiohttp static server at host (run under `prefix`)."""
    async with StaticServer(path, host, prefix, port) as server:
        return min([await server.download(out) for _ in range(repeat)])


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
    ap.add_argument("--repeat", type=int, default=10, help="interleaved rounds on loopback (default 10)")
    ap.add_argument("--shaped-repeat", type=int, default=3, help="reads of each kind over the shaped links (default 3)")
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
            report_shaped(args, await shaped(src, tmp, args.shaped_repeat, (0, 2)))


async def loopback(args: argparse.Namespace, src: Path, tmp: Path) -> None:
    """Every contender set up once, then `repeat` rounds, each reading the object once with each
    of them, in an order that turns round by round: a minute when this shared machine runs slow
    falls on all of them, not on whichever was measured then (the old one-after-another blocks
    swung DStream's share of its floor from 0.77 to 1.03 between back-to-back runs)."""
    ss = args.shard_size
    rounds: Rounds = {k: [] for k in ("http", "floor", "held", "ds", "first", "tls", "rtt")}
    with Floor(src, ss) as floor_1, Floor(src, ss, holders=2) as floor_2:
        async with (
            StaticServer(src) as http,
            DStreamCluster(src, tmp, ss=ss, r=args.r, per_holder=args.per_holder) as ds,
        ):
            await ds.put_unread(args.repeat, tmp)
            contenders = {
                "http": lambda: http.download(tmp / "http.out"),
                "floor": lambda: asyncio.to_thread(floor_1.read, tmp / "floor.out"),
                "held": lambda: asyncio.to_thread(floor_2.read, tmp / "floor2.out"),
                "ds": lambda: ds.read(tmp / "ds.out"),
                "first": lambda: ds.read_unread(tmp / "first.out"),
                "tls": lambda: ds.read(tmp / "tls.out", tls=True),
                "rtt": ds.signed_round_trip,
            }
            names = list(contenders)
            for k in range(args.repeat):
                for name in names[k % len(names) :] + names[: k % len(names)]:
                    got = await contenders[name]()
                    rounds[name].append(got if isinstance(got, tuple) else (got,))
            assert (tmp / "ds.out").read_bytes() == src.read_bytes() == (tmp / "tls.out").read_bytes()
            shards = ds.put["shards"]
            fresh_checks = await ds.fresh_checks()
    sweep = {}
    for size in [64 << 10, 128 << 10, 512 << 10, 1 << 20] if args.sweep else []:
        async with DStreamCluster(src, tmp, ss=size, r=args.r, per_holder=args.per_holder) as other:
            sweep[size] = (
                min([(await other.read(tmp / "sweep.out"))[0] for _ in range(args.repeat)]),
                other.put["shards"],
            )
    report_loopback(args, rounds, shards, sweep, fresh_checks)


Rounds = dict[str, list[tuple[float, ...]]]  # per contender, each round's (seconds, CPU figures...)


def report_loopback(
    args: argparse.Namespace, rounds: Rounds, shards: int, sweep: dict[int, tuple[float, int]], fresh_checks: int
) -> None:
    best = {name: min(rs) for name, rs in rounds.items()}  # each contender's fastest round
    mean_cpu = {name: [sum(r[j] for r in rs) / len(rs) for j in range(1, len(rs[0]))] for name, rs in rounds.items()}
    http_s, floor_s, held_s, ds_s, tls_s, rtt_s = (best[k][0] for k in ("http", "floor", "held", "ds", "tls", "rtt"))
    locate_ms = best["ds"][1] * 1000
    ds_rx, ds_tx = mean_cpu["ds"][1:]
    floor_rx, floor_tx = mean_cpu["floor"]
    held_rx, held_tx = mean_cpu["held"]
    # the same comparison round by round (each pair a few hundred ms apart): its median
    paired = sorted(f[0] / d[0] for f, d in zip(rounds["floor"], rounds["ds"]))
    paired_http = sorted(h[0] / d[0] for h, d in zip(rounds["http"], rounds["ds"]))
    mb = args.size / 1e6
    print(
        f"object: {mb:.1f} MB, {shards} shards of {args.shard_size // 1024} KiB, R={args.r}, "
        f"{args.per_holder} per holder, best of {args.repeat} interleaved rounds"
    )
    print(f"plain HTTP (aiohttp static, no TLS):  {http_s:.3f} s  {mbps(args.size, http_s):7.1f} MB/s")
    print(
        f"DStream (signed, SHA-256, disk):      {ds_s:.3f} s  {mbps(args.size, ds_s):7.1f} MB/s  "
        f"(locate {locate_ms:.1f} ms of it)"
    )
    print(
        f"  CPU per read: receiver {ds_rx:.0f} ms, holders {ds_tx:.0f} ms "
        f"(one SHA-256 pass over {mb:.0f} MB at the receiver is part of it)"
    )
    first_s = best["first"][0]
    print(
        f"DStream, an object's first read:      {first_s:.3f} s  {mbps(args.size, first_s):7.1f} MB/s  (another object "
        f"each round: every holder's read check done) = ratio {http_s / first_s:.2f} against plain HTTP, "
        f"{floor_s / first_s:.2f} of the floor"
    )
    print(
        f"DStream over pinned TLS frames:       {tls_s:.3f} s  {mbps(args.size, tls_s):7.1f} MB/s  (Receiver(tls=True))"
    )
    ratio, of_floor = http_s / ds_s, floor_s / ds_s
    print(
        f"floor (the receiver's required work alone: one SHA-256 pass, pwrite; no protocol): "
        f"{floor_s:.3f} s  {mbps(args.size, floor_s):7.1f} MB/s  = ratio {http_s / floor_s:.2f} against plain HTTP; "
        f"CPU per read: receiver {floor_rx:.0f} ms, sender {floor_tx:.0f} ms"
    )
    need_ms = held_rx + held_tx
    bound_s = (locate_ms + need_ms / 2) / 1000
    print(
        f"floor with the holders (shards dealt to 2 processes that check each one's CRC-32 in place, then sendfile; "
        f"the receiver as above; all on these 2 cores): {held_s:.3f} s; CPU per read: receiver {held_rx:.0f} ms, "
        f"holders {held_tx:.0f} ms"
    )
    print(
        f"  of the {len(rounds['ds']) * shards} shards DStream's holders sent on the data channel, {fresh_checks} went "
        f"out on a read check that had passed within the last 30 s for the same file (shard/freshchecks.py: this "
        f"object is read every round); the floor with the holders checks every one"
    )
    print(
        f"  required: locate {locate_ms:.1f} ms (the holders found first) + {need_ms:.0f} ms of required CPU "
        f"on 2 cores = at least {bound_s:.3f} s, so at best {floor_s / bound_s:.2f} of the floor; with the locate, "
        f"the floor with the holders is {held_s + locate_ms / 1000:.3f} s: DStream reaches "
        f"{(held_s + locate_ms / 1000) / ds_s:.2f} of it"
    )
    least_s = floor_s + rtt_s  # no read starts before the reader learns a holder from the network
    print(
        f"  the floor + one signed round trip (what a read must do at least: a signed request and its signed reply, "
        f"reader to node: {rtt_s * 1000:.1f} ms, best of {len(rounds['rtt'])}; each its best round, so a noisy round "
        f"can put DStream's best under it) = {least_s:.3f} s: at best "
        f"{http_s / least_s:.2f} of plain HTTP (goal 0.6: {'reachable' if http_s / least_s >= 0.6 else 'NOT reachable'}"
        f" in this run) and {floor_s / least_s:.2f} of the floor (goal 0.9)"
    )
    budget_ms = (floor_s / 0.9 * 1000 - locate_ms) * 2  # CPU time 2 cores give a read that meets the goal
    print(
        f"  for 0.9 of the floor a read takes at most {floor_s / 0.9 * 1000:.1f} ms: after the locate, "
        f"{budget_ms:.0f} ms of CPU on 2 cores, of which the required work takes {need_ms:.0f}: the protocol "
        f"(signed requests and replies, the holders' answers to the find, receipts) must fit in "
        f"{budget_ms - need_ms:.0f} ms; it took {ds_rx + ds_tx - need_ms:.0f} ms here"
    )
    print(
        f"round by round (median of {len(paired)}): DStream / floor {paired[len(paired) // 2]:.2f} "
        f"(range {paired[0]:.2f}-{paired[-1]:.2f}), DStream / plain HTTP {paired_http[len(paired_http) // 2]:.2f} "
        f"(range {paired_http[0]:.2f}-{paired_http[-1]:.2f})"
    )
    print(f"ratio DStream / plain HTTP: {ratio:.2f}  (goal >= 0.6): {'OK' if ratio >= 0.6 else 'BELOW GOAL'}")
    print(f"DStream / floor: {of_floor:.2f}  (goal >= 0.9): {'OK' if of_floor >= 0.9 else 'BELOW GOAL'}")
    print(
        f"seed: 30 MB (111 shards) Toronto -> California in {SEED_S} s = {mbps(SEED_BYTES, SEED_S):.1f} MB/s "
        f"(WAN, single-core VM); here: {mb:.0f} MB in {ds_s:.3f} s on loopback = "
        f"{mbps(args.size, ds_s) / mbps(SEED_BYTES, SEED_S):.0f}x the seed's rate"
    )
    if sweep:
        print("shard size sweep (DStream only):")
        for size, (s, n) in sorted(sweep.items()):
            print(f"  {size // 1024:5d} KiB  {n:4d} shards  {s:.3f} s  {mbps(args.size, s):7.1f} MB/s")


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
