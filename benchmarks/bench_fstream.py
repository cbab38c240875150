"""fStream against aiohttp's static file handler (with range support), the same clip, in the same run.

fStream: three shardTreeCell holders and one fStreamCell (real processes on 127.0.0.2..4); the clip
(a WebM made with ffmpeg, 2 Mbit/s) is published (shards, then its signed stream map) and read
from ``/stream/<map id>`` on the fStream cell's monPort. Static: the same file from an aiohttp
static route (its own process, loopback). Printed, each beside the static figure:

* time to first byte: cold (the fStream cell has nothing cached: it locates the map and the
  media and pulls their first shards) and warm (median of 20);
* seek latency: a 64 KiB range at a random offset, to its last byte (median of 30, warm);
* seek by time, cold: on a second fStream cell that has nothing cached, ``/seek/<map>?t=`` (60 % of
  the clip) gives the key frame's byte offset from the signed map, then 64 KiB from there, to the
  last byte; static: the same 64 KiB range. Also printed: the shards the cell fetched first;
* time to the first decoded frame: ``ffmpeg -i URL -frames:v 1`` (median of 5; includes
  ffmpeg's own start, the same for both);
* concurrent 2 Mbit/s streams without a stall: N players each read the clip at 250 kB/s
  (starting after 1 s of media is in, reading at most 5 s ahead) for `--seconds`; a stall is a
  player whose media ran out. The largest N of `LEVELS` with no stall.

Goals (issue 18): first byte and seek within 2x of aiohttp static on loopback; one cell on 2
cores serves at least 50 concurrent 2 Mbit/s streams without a stall.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402

from borgusb import dna  # noqa: E402
from borgusb.cells.fstream.publish import publish  # noqa: E402
from borgusb.clock import SystemClock  # noqa: E402
from borgusb.cluster import Cluster  # noqa: E402
from borgusb.envelope import Verifier  # noqa: E402
from borgusb.keys import SigningKey  # noqa: E402
from borgusb.net.peer import PeerClient  # noqa: E402
from borgusb.shard.model import SHARD_SIZE  # noqa: E402

SHARD_PORT = dna.get("shardTreeCell").recp_port
FS_MON = dna.get("fStreamCell").mon_port
RATE = 250_000  # bytes per second: 2 Mbit/s
LEVELS = (50, 100, 200, 300)  # players at once, tried in turn until one stalls
STATIC_SERVER = """
import sys
from aiohttp import web
app = web.Application()
app.router.add_static("/", sys.argv[1])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), access_log=None, print=None)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_clip(path: Path, seconds: int) -> None:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=24,noise=alls=30:allf=t",
         "-t", str(seconds), "-c:v", "libvpx", "-b:v", "2M", "-minrate", "2M", "-maxrate", "2M", "-g", "24",
         "-deadline", "realtime", "-cpu-used", "8", "-an", "-y", str(path)],
        check=True,
    )  # fmt: skip


async def first_byte(session: aiohttp.ClientSession, url: str, rng: str | None = None) -> float:
    t0 = time.perf_counter()
    async with session.get(url, headers={"Range": rng} if rng else {}) as resp:
        assert resp.status in (200, 206), resp.status
        await resp.content.readany()
        return time.perf_counter() - t0


async def seek(session: aiohttp.ClientSession, url: str, size: int, rng: random.Random) -> float:
    at = rng.randrange(0, size - 65536)
    t0 = time.perf_counter()
    async with session.get(url, headers={"Range": f"bytes={at}-{at + 65535}"}) as resp:
        assert resp.status == 206 and len(await resp.read()) == 65536
        return time.perf_counter() - t0


async def seek_by_time(base: str, mid: str, t_ms: int) -> tuple[float, int, list[int]]:
    """(seconds for /seek then 64 KiB from the key frame, its offset, the media's shards in the order
    they landed) on a cold fStream cell at `base`."""
    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        async with session.get(f"{base}/seek/{mid}?t={t_ms}") as resp:
            assert resp.status == 200, await resp.text()
            offset = int((await resp.json())["offset"])
        async with session.get(f"{base}/stream/{mid}", headers={"Range": f"bytes={offset}-{offset + 65535}"}) as resp:
            assert resp.status == 206 and len(await resp.read()) == 65536
        took = time.perf_counter() - t0
        await asyncio.sleep(3)  # the rest of the object lands meanwhile
        async with session.get(f"{base}/status") as resp:
            recent = (await resp.json())["fstream"]["cache"]["recent"]
    media = [oid for oid, _ in recent][-1]
    return took, offset, [i for oid, i in recent if oid == media]


async def static_range(url: str, offset: int) -> float:
    async with aiohttp.ClientSession() as session:
        t0 = time.perf_counter()
        async with session.get(url, headers={"Range": f"bytes={offset}-{offset + 65535}"}) as resp:
            assert resp.status == 206 and len(await resp.read()) == 65536
        return time.perf_counter() - t0


def first_frame(url: str) -> float:
    t0 = time.perf_counter()
    cmd = ["ffmpeg", "-v", "error", "-i", url, "-frames:v", "1", "-f", "null", "-"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return time.perf_counter() - t0


async def player(session: aiohttp.ClientSession, url: str, seconds: float) -> bool:
    """One 2 Mbit/s player for `seconds`: True if its media never ran out (no stall)."""
    t0 = time.monotonic()
    got = 0
    started: float | None = None
    async with session.get(url) as resp:
        while time.monotonic() - t0 < seconds:
            piece = await resp.content.read(64 * 1024)
            if not piece:
                return True
            got += len(piece)
            now = time.monotonic()
            if started is None:
                if got >= RATE:  # 1 s of media in: playback starts
                    started = now
                continue
            if got < (now - started) * RATE:  # (checked on arrival: a late piece is a stall)
                return False
            ahead = got / RATE - (now - started)
            if ahead > 5:
                await asyncio.sleep(ahead - 5)
    return True


async def streams(url: str, n: int, seconds: float) -> int:
    """Players of n that stalled."""
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=seconds + 60)) as session:
        ok = await asyncio.gather(*(player(session, url, seconds) for _ in range(n)))
    return ok.count(False)


async def measure(url: str, size: int, args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {}
    rng = random.Random(18)
    async with aiohttp.ClientSession() as session:
        out["cold"] = await first_byte(session, url)
        out["ttfb"] = statistics.median([await first_byte(session, url) for _ in range(20)])
        out["seek"] = statistics.median([await seek(session, url, size, rng) for _ in range(30)])
    out["frame"] = statistics.median([await asyncio.to_thread(first_frame, url) for _ in range(5)])
    served = 0
    for n in LEVELS:
        stalled = await streams(url, n, args.seconds)
        out[f"stalls@{n}"] = stalled
        if stalled:
            break
        served = n
    out["streams"] = served
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip-seconds", type=int, default=80)
    ap.add_argument("--seconds", type=float, default=10.0, help="how long each concurrent player plays")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None) as d:
        tmp = Path(d)
        clip = tmp / "static" / "clip.webm"
        clip.parent.mkdir()
        make_clip(clip, args.clip_seconds)
        size = clip.stat().st_size
        os.environ["BORGUSB_DATA_ROOT"] = str(tmp / "data")
        os.environ["BORGUSB_FSTREAM_CAPACITY"] = "1000"
        shards = Cluster(name="bench-fs-shard", cell="shardTreeCell", root_dir=tmp / "c", heartbeat_ms=500)
        fstream = Cluster(name="bench-fs", cell="fStreamCell", root_dir=tmp / "c", heartbeat_ms=500)
        port = free_port()
        static = subprocess.Popen([sys.executable, "-c", STATIC_SERVER, str(clip.parent), str(port)])
        try:
            shards.up(3)
            fstream.up(2)  # the second only for the cold seek by time
            await shards.wait_one_tree(timeout_s=60, expect=3)
            await fstream.wait_one_tree(timeout_s=60, expect=2)
            deadline = time.monotonic() + 30
            while not all(s.get("shard", {}).get("directory") == 3 for s in await shards.status()):
                assert time.monotonic() < deadline, "the shard directories did not fill"
                await asyncio.sleep(0.2)
            key = SigningKey.generate()
            clock = SystemClock()
            async with PeerClient(key, clock, Verifier(clock), timeout_s=30) as peers:
                pub = await publish(peers, shards.nodes[0].ip, SHARD_PORT, clip, key)
            fs_url = f"http://{fstream.nodes[0].ip}:{FS_MON}/stream/{pub['map']}"
            st_url = f"http://127.0.0.1:{port}/clip.webm"
            t_ms = args.clip_seconds * 600
            cold_base = f"http://{fstream.nodes[1].ip}:{FS_MON}"
            by_time, offset, landed = await seek_by_time(cold_base, pub["map"], t_ms)
            by_time_static = await static_range(st_url, offset)
            fs = await measure(fs_url, size, args)
            st = await measure(st_url, size, args)
        finally:
            static.terminate()
            static.wait()
            fstream.down()
            shards.down()
    ms = 1000
    print(f"clip: {size / 1e6:.1f} MB WebM (VP8, 2 Mbit/s, {args.clip_seconds} s), {len(pub['keys'])} key frames")
    print(f"{'':34}{'fStream':>10}{'aiohttp static':>16}{'ratio':>8}")
    for label, k in (
        ("time to first byte, warm (ms)", "ttfb"),
        ("seek, 64 KiB at random (ms)", "seek"),
        ("first decoded frame, ffmpeg (ms)", "frame"),
    ):
        a, b = float(fs[k]), float(st[k])  # type: ignore[arg-type]
        print(f"{label:34}{a * ms:10.1f}{b * ms:16.1f}{a / b:8.2f}")
    print(f"{'time to first byte, cold (ms)':34}{float(fs['cold']) * ms:10.1f}{float(st['cold']) * ms:16.1f}")  # type: ignore[arg-type]
    print(
        f"{'seek by time, cold (ms)':34}{by_time * ms:10.1f}{by_time_static * ms:16.1f}{by_time / by_time_static:8.2f}"
    )
    print(f"  (to {t_ms} ms: key frame at byte {offset}, shard {offset // SHARD_SIZE}; the cell's shards in the "
          f"order they landed: {landed})")  # fmt: skip
    print(f"{'2 Mbit/s streams without a stall':34}{fs['streams']:>10}{st['streams']:>16}   (of {LEVELS})")
    print(f"stalls: fStream {[(k, v) for k, v in fs.items() if k.startswith('stalls')]}, "
          f"static {[(k, v) for k, v in st.items() if k.startswith('stalls')]}")  # fmt: skip
    print("goals: first byte and seek within 2x of aiohttp static; >= 50 streams without a stall")


if __name__ == "__main__":
    asyncio.run(main())
