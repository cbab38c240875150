"""fStreamCell with real node processes (shard, serviceMgr and fStream cells on 127.0.0.x): byte
ranges answered from shards, and a cell at capacity sending the next client to another endpoint.

Run under ``flock /tmp/borgusb-cluster.lock`` (fixed 127.0.0.x ports).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import random
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from borgusb import dna
from borgusb.cells.fstream.publish import publish
from borgusb.keys import SigningKey
from borgusb.shard import model
from tests.integration.test_shard_cluster import PORT, client, put_bytes, start

pytestmark = pytest.mark.slow

SS = model.SHARD_SIZE
FS = dna.get("fStreamCell")


def url(ip: str, mid: str) -> str:
    return f"http://{ip}:{FS.mon_port}/stream/{mid}"


async def network(make_cluster, monkeypatch, tmp_path: Path, capacity: int = 60, second: int | None = None):
    """Three shard holders, a serviceMgr on each, and two fStream cells (127.0.0.2, 127.0.0.3; the
    second with capacity `second` when given)."""
    monkeypatch.setenv("BORGUSB_FSTREAM_CAPACITY", str(capacity))
    svc = make_cluster("serviceMgrCell")
    svc.up(3)
    shards = await start(make_cluster, monkeypatch, tmp_path, 3)
    fstream = make_cluster("fStreamCell")
    if second is not None:
        fstream.prefix["127.0.0.3"] = ["env", f"BORGUSB_FSTREAM_CAPACITY={second}"]
    fstream.up(2)
    await svc.wait_one_tree(timeout_s=60, expect=3)
    await fstream.wait_one_tree(timeout_s=60, expect=2)
    return shards, fstream


async def published(ip: str, data: bytes, tmp_path: Path, name: str = "clip.bin") -> dict:
    path = tmp_path / name
    path.write_bytes(data)
    key = SigningKey.generate()
    async with client(key) as peers:
        return await publish(peers, ip, PORT, path, key)


async def get(session: aiohttp.ClientSession, u: str, rng: str | None = None) -> tuple[int, dict, bytes]:
    headers = {"Range": rng} if rng is not None else {}
    async with session.get(u, headers=headers, allow_redirects=False) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_byte_ranges_from_shards(make_cluster, monkeypatch, tmp_path) -> None:
    shards, _ = await network(make_cluster, monkeypatch, tmp_path)
    data = random.Random(18).randbytes(2 * SS + SS // 2)
    size = len(data)
    pub = await published(shards.nodes[0].ip, data, tmp_path)
    assert pub["type"] == "application/octet-stream" and pub["size"] == size
    u = url("127.0.0.3", pub["map"])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        status, head, body = await get(session, u)
        assert status == 200, body[:300]
        assert (body == data, head["Accept-Ranges"]) == (True, "bytes")
        assert head["Content-Type"] == "application/octet-stream" and head["X-Content-Type-Options"] == "nosniff"
        cases = {
            "bytes=0-0": (0, 0),  # the first byte
            f"bytes={size - 1}-{size - 1}": (size - 1, size - 1),  # the last byte
            "bytes=-100": (size - 100, size - 1),  # a suffix
            f"bytes=-{size + 5}": (0, size - 1),  # a suffix longer than the object
            f"bytes={SS - 10}-{SS + 9}": (SS - 10, SS + 9),  # across a shard boundary
            f"bytes={SS - 1}-{2 * SS}": (SS - 1, 2 * SS),  # across two
            f"bytes={2 * SS}-": (2 * SS, size - 1),  # open, from a shard's first byte
            "bytes=5-9, 20-29": (5, 9),  # several: the first
        }
        for rng, (first, last) in cases.items():
            status, head, body = await get(session, u, rng)
            assert status == 206, rng
            assert head["Content-Range"] == f"bytes {first}-{last}/{size}", rng
            assert body == data[first : last + 1], rng
        for rng in (f"bytes={size}-", "bytes=-0"):
            status, head, _ = await get(session, u, rng)
            assert (status, head["Content-Range"]) == (416, f"bytes */{size}"), rng
        for rng in ("bytes=x-y", "bytes=9-3", "lines=0-1", "bytes=" + "7" * 300):  # ignored: the whole object
            status, _, body = await get(session, u, rng)
            assert (status, body == data) == (200, True), rng
        status, _, body = await get(session, url("127.0.0.3", "nothex"))
        assert status == 400 and b"bad_id" in body
        status, _, body = await get(session, url("127.0.0.3", "ab" * 32))
        assert status == 404 and b"not_found" in body
        status, _, body = await get(session, url("127.0.0.3", pub["id"]))  # the media itself is no map
        assert status == 413 and b"too_large" in body  # (and more than a map may be: not fetched)
        junk = await put_bytes(shards.nodes[0].ip, b'{"not": "a map"}', SigningKey.generate(), tmp_path)
        status, _, body = await get(session, url("127.0.0.3", junk["id"]))
        assert status == 422 and b"bad_map" in body
        async with session.get(f"http://127.0.0.3:{FS.mon_port}/status") as resp:
            doc = await resp.json()
        assert doc["fstream"]["cache"]["pulls"] == 3  # the map, the media, the junk (the missing id found nothing)
        assert doc["counters"]["fstream_refused:unsatisfiable"] == 2


async def wait_listed(ip: str, count: int, timeout_s: float = 20) -> None:
    """Until the serviceMgr at ip lists `count` fStream cells with their load."""
    from borgusb.cells.servicemgr.client import ServiceMgrClient

    deadline = time.monotonic() + timeout_s
    async with client(SigningKey.generate()) as peers:
        while True:
            found = await ServiceMgrClient(peers, ip).services("fStreamCell")
            if sum(1 for e in found if "capacity" in e.get("load", {})) >= count:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the registry lists {found}")
            await asyncio.sleep(0.3)


async def test_a_cell_at_capacity_redirects_the_next_client(make_cluster, monkeypatch, tmp_path) -> None:
    shards, _ = await network(make_cluster, monkeypatch, tmp_path, capacity=2)
    data = random.Random(7).randbytes(
        16 * SS
    )  # more than loopback's socket buffers: a reader that stops holds its slot
    pub = await published(shards.nodes[1].ip, data, tmp_path)
    await wait_listed("127.0.0.2", 2)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as s1, aiohttp.ClientSession(timeout=timeout) as s2:
        held = [await s.get(url("127.0.0.2", pub["map"])) for s in (s1, s2)]  # heads read, bodies not
        try:
            assert [r.status for r in held] == [200, 200]
            async with aiohttp.ClientSession(timeout=timeout) as s3:
                status, head, _ = await get(s3, url("127.0.0.2", pub["map"]), "bytes=100-199")
                assert status == 307 and head["Location"] == url("127.0.0.3", pub["map"]) + "?hop=1"
                status, head, body = await get(s3, head["Location"], "bytes=100-199")
                assert status == 206 and body == data[100:200]
                async with s3.get(f"http://127.0.0.2:{FS.mon_port}/status") as resp:
                    doc = await resp.json()
                assert doc["fstream"]["clients"] == 2 and doc["counters"]["fstream_redirected"] == 1
        finally:
            for r in held:
                r.close()
    deadline = time.monotonic() + 30  # the two readers that stopped and left: their places free
    while True:
        doc = await asyncio.to_thread(fs_status, "127.0.0.2")
        if doc["fstream"]["clients"] == 0:
            break
        assert time.monotonic() < deadline, (
            doc["fstream"],
            {k: v for k, v in doc["counters"].items() if "fstream" in k},
        )
        await asyncio.sleep(0.2)


def run_async(coro):
    """Playwright's sync API owns this thread's event loop; run coroutines beside it."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def fs_status(ip: str) -> dict:
    with urllib.request.urlopen(f"http://{ip}:{FS.mon_port}/status", timeout=5) as r:
        return json.loads(r.read())


def test_a_public_link_plays_in_chromium_through_a_redirect(make_cluster, monkeypatch, tmp_path) -> None:
    """Anyone with the link plays public media; the first endpoint, full, sends Chromium to the other."""
    from .browser import ARGS, CHROMIUM

    if not Path(CHROMIUM).exists() or shutil.which("ffmpeg") is None:
        pytest.fail("chromium and ffmpeg are needed: ./build.sh setup installs them")
    from playwright.sync_api import sync_playwright

    clip = tmp_path / "clip.webm"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=24,noise=alls=30:allf=t",
         "-t", "12", "-c:v", "libvpx", "-b:v", "2M", "-g", "24", "-deadline", "realtime", "-cpu-used", "8",
         "-an", "-y", str(clip)],
        check=True, timeout=120,
    )  # fmt: skip
    shards, _ = run_async(network(make_cluster, monkeypatch, tmp_path, capacity=1, second=20))
    pub = run_async(published(shards.nodes[0].ip, clip.read_bytes(), tmp_path, "clip.webm"))
    assert pub["type"] == "video/webm" and len(pub["keys"]) >= 11  # a key frame a second, from the WebM itself
    big = run_async(published(shards.nodes[0].ip, random.Random(3).randbytes(16 * SS), tmp_path, "big.bin"))
    run_async(wait_listed("127.0.0.2", 2))
    hold = socket.create_connection(("127.0.0.2", FS.mon_port))  # a reader that stops: the one place taken
    try:
        hold.sendall(f"GET /stream/{big['map']} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        deadline = time.monotonic() + 30
        while fs_status("127.0.0.2")["fstream"]["clients"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                page = browser.new_page()
                seen: list[tuple[int, str]] = []
                page.on("response", lambda r: seen.append((r.status, r.url.split("/")[2])))
                # a page of a loopback origin (Chromium lets no about:blank page load from a local address)
                page.goto(f"http://127.0.0.2:{FS.mon_port}/status")
                page.set_content(f'<video id="v" muted src="{url("127.0.0.2", pub["map"])}"></video>')
                page.evaluate("""() => { const v = document.getElementById('v'); window.errors = 0;
                    v.addEventListener('error', () => { window.errors += 1; }); return v.play(); }""")
                deadline = time.monotonic() + 60
                while page.evaluate("document.getElementById('v').currentTime") <= 2:
                    assert time.monotonic() < deadline, page.evaluate("document.getElementById('v').error?.message")
                    page.wait_for_timeout(100)
                assert page.evaluate("window.errors") == 0
                assert (307, f"127.0.0.2:{FS.mon_port}") in seen and (206, f"127.0.0.3:{FS.mon_port}") in seen
            finally:
                browser.close()
        assert fs_status("127.0.0.2")["counters"]["fstream_redirected"] >= 1
        assert fs_status("127.0.0.3")["fstream"]["cache"]["pulls"] >= 2  # the map and the media, served there
    finally:
        hold.close()


def make_seek_clip(path: Path) -> None:
    """24 s of VP8 at 4 Mbit/s, a key frame a second: ~11 MiB, 11 shards."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=24,noise=alls=30:allf=t",
         "-t", "24", "-c:v", "libvpx", "-b:v", "4M", "-minrate", "4M", "-maxrate", "4M", "-g", "24",
         "-deadline", "realtime", "-cpu-used", "8", "-an", "-y", str(path)],
        check=True, timeout=120,
    )  # fmt: skip


async def test_a_seek_by_time_fetches_from_its_key_frame_first(make_cluster, monkeypatch, tmp_path) -> None:
    """The map's key frames carry their byte offsets: /seek answers the offset of the key frame at or
    before a time and the cell's pull starts at its shard (the cell's record of landed shards)."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is needed: ./build.sh setup installs it")
    clip = tmp_path / "seek.webm"
    make_seek_clip(clip)
    data = clip.read_bytes()
    shards, _ = await network(make_cluster, monkeypatch, tmp_path)
    pub = await published(shards.nodes[0].ip, data, tmp_path, "seek.webm")
    count = -(-len(data) // SS)
    assert count >= 10 and pub["keys"][:3] == [0, 1000, 2000]
    base = f"http://127.0.0.3:{FS.mon_port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        async with session.get(f"{base}/seek/{pub['map']}?t=18500") as resp:  # the cell is cold
            assert resp.status == 200, await resp.text()
            seek = await resp.json()
        assert seek["t"] == 18000 and seek["type"] == "video/webm" and seek["shard"] == seek["offset"] // SS
        assert seek["shard"] >= count // 2  # far from the start: where the pull would reach last
        # the offset is the key frame's own packet, as ffprobe reads it: a player decodes from there
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-read_intervals", "18%+0.5",
             "-show_entries", "packet=pts_time,pos,flags", "-of", "csv=p=0", str(clip)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert f"18.000000,{seek['offset']},K_" in probe.stdout
        status, head, body = await get(session, url("127.0.0.3", pub["map"]), f"bytes={seek['offset']}-")
        assert status == 206 and body == data[seek["offset"] :]
        # the range is served once its shards landed; the earlier ones follow in the background
        deadline = time.monotonic() + 60
        while True:
            doc = await (await session.get(f"{base}/status")).json()
            landed = [i for oid, i in doc["fstream"]["cache"]["recent"] if pub["id"].startswith(oid)]
            if sorted(landed) == list(range(count)) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert sorted(landed) == list(range(count))
        after = count - seek["shard"]  # the shards from the key frame's on came first, and only they
        assert sorted(landed[:after]) == list(range(seek["shard"], count)), landed
        assert doc["counters"]["fstream_seeks"] == 1
        for query in ("t=-1", "t=x", "", "t=" + "9" * 20):
            status, _, body = await get(session, f"{base}/seek/{pub['map']}?{query}")
            assert status == 400 and b"bad_time" in body, query
        plain = await published(shards.nodes[0].ip, b"not media" * 1000, tmp_path, "plain.bin")
        status, _, body = await get(session, f"{base}/seek/{plain['map']}?t=0")
        assert status == 422 and b"no_offsets" in body


async def test_an_object_larger_than_the_cache_plays_through_a_window(make_cluster, monkeypatch, tmp_path) -> None:
    """A cache of 4 shards serves an object of 20: ranges at the start, the middle and the end, the
    whole object, and two readers at once far apart, every byte right; the cache never held more
    than its bound (its peak on the status page) and evicted shards behind the readers."""
    monkeypatch.setenv("BORGUSB_FSTREAM_CACHE", "4M")
    shards, _ = await network(make_cluster, monkeypatch, tmp_path)
    data = random.Random(20).randbytes(20 * SS - 1000)
    size = len(data)
    pub = await published(shards.nodes[2].ip, data, tmp_path)
    u = url("127.0.0.3", pub["map"])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        for rng, (first, last) in {
            "bytes=0-99": (0, 99),  # the start
            f"bytes={10 * SS - 50}-{10 * SS + 49}": (10 * SS - 50, 10 * SS + 49),  # the middle, across a boundary
            "bytes=-100": (size - 100, size - 1),  # the end
            f"bytes={3 * SS}-{6 * SS + 9}": (3 * SS, 6 * SS + 9),  # back again, more than the cache holds
        }.items():
            status, head, body = await get(session, u, rng)
            assert (status, head["Content-Range"]) == (206, f"bytes {first}-{last}/{size}"), rng
            assert body == data[first : last + 1], rng
        status, _, body = await get(session, u)  # the whole object, 5x the cache
        assert status == 200 and body == data
        both = await asyncio.gather(get(session, u, "bytes=0-"), get(session, u, f"bytes={12 * SS + 7}-"))
        assert [b == data[at:] for (_, _, b), at in zip(both, (0, 12 * SS + 7))] == [True, True]
        async with session.get(f"http://127.0.0.3:{FS.mon_port}/status") as resp:
            cache = (await resp.json())["fstream"]["cache"]
    assert cache["windowed"] == 1 and cache["failed"] == 0, cache
    assert 0 < cache["peak"] <= 4 << 20 and cache["bytes"] <= 4 << 20, cache
    assert cache["shards_evicted"] >= 20, cache  # the whole read alone passed 20 shards through 4 places


async def test_a_cell_that_misses_a_shard_asks_the_other_caches_first(make_cluster, monkeypatch, tmp_path) -> None:
    """The tree as CDN: the shards one fStream cell holds are served to another that misses them
    (checked against the manifest there), before the holders are asked; both count it."""
    monkeypatch.setenv("BORGUSB_FSTREAM_CACHE", "4M")
    shards, _ = await network(make_cluster, monkeypatch, tmp_path)
    data = random.Random(21).randbytes(12 * SS)
    pub = await published(shards.nodes[0].ip, data, tmp_path)
    await wait_listed("127.0.0.2", 2)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        status, _, body = await get(session, url("127.0.0.3", pub["map"]), f"bytes={5 * SS}-{5 * SS + 99}")
        assert status == 206 and body == data[5 * SS : 5 * SS + 100]
        deadline = time.monotonic() + 30  # its read-ahead: shards 5 to 8 in its cache
        while not {5, 6, 7, 8} <= {
            i for o, i in fs_status("127.0.0.3")["fstream"]["cache"]["recent"] if o == pub["id"][:16]
        }:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        status, _, body = await get(session, url("127.0.0.2", pub["map"]), f"bytes={5 * SS}-{8 * SS + 99}")
        assert status == 206 and body == data[5 * SS : 8 * SS + 100]
    asker, server = (
        {k: v for k, v in fs_status(ip)["counters"].items() if "fstream" in k or "registry" in k}
        for ip in ("127.0.0.2", "127.0.0.3")
    )
    assert asker.get("fstream_cdn_hit", 0) >= 4 and server.get("fstream_cdn_served", 0) >= 4, (asker, server)
    assert asker.get("fstream_cdn_bad", 0) == 0


async def test_an_object_pulled_whole_comes_from_another_cells_cache(make_cluster, monkeypatch, tmp_path) -> None:
    """The tree as CDN for whole pulls: once one fStream cell holds an object whole, another cell that
    is asked for it streams it from that cache (each shard checked against the manifest there) and
    asks the holders for nothing."""
    shards, _ = await network(make_cluster, monkeypatch, tmp_path)
    data = random.Random(22).randbytes(3 * SS + 12_345)
    pub = await published(shards.nodes[0].ip, data, tmp_path)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        status, _, body = await get(session, url("127.0.0.3", pub["map"]))
        assert status == 200 and body == data
        deadline = time.monotonic() + 30  # the pull renames its file once the last shard is in
        while True:
            async with session.get(f"http://127.0.0.3:{FS.mon_port}/cached/{pub['id']}") as resp:
                if resp.status == 200 and await resp.read() == data:
                    break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        await wait_listed("127.0.0.2", 2)  # the asker finds the other cache through its registry
        status, _, body = await get(session, url("127.0.0.2", pub["map"]), f"bytes={SS - 10}-{3 * SS + 9}")
        assert status == 206 and body == data[SS - 10 : 3 * SS + 10]
    asker, server = (fs_status(ip)["counters"] for ip in ("127.0.0.2", "127.0.0.3"))
    # the media's four shards (its stream map may have come the same way, or from the holders earlier)
    assert asker.get("fstream_cdn_whole", 0) >= 1 and asker.get("fstream_cdn_hit", 0) >= 4, asker
    assert asker.get("fstream_cdn_bad", 0) == 0 and server.get("fstream_cdn_served_whole", 0) >= 2, server
