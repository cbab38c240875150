"""The Watch page in Chromium against real cells (issue 18): a sharded private WebM clip, made here with
Debian's ffmpeg, plays in a ``<video>`` through the conduit (ranges fetched as ciphertext from an fStream
cell and decrypted in the conduit), seeks to the middle and keeps playing; the fStream endpoint that
serves it is killed mid-playback and playback goes on from the other one. A file named with markup is
listed as text. Another person's public media (published with a markup name: listed as text) and a
private file they shared with this key (a pasted share record) are listed and play too. A 720p video
published with a 240p rendition starts at 720p and, on a link throttled below its bitrate (Chromium's
own network emulation), steps down to 240p at the same play position and keeps playing (adaptive bitrate).

Run under ``flock /tmp/borgusb-cluster.lock`` (fixed 127.0.0.x ports).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from borgusb import dna
from borgusb.cells.fstream.client import FStreamClient
from borgusb.cells.fstream.publish import publish
from borgusb.clock import SystemClock
from borgusb.envelope import Verifier
from borgusb.files import actions
from borgusb.files.remote import FileTree
from borgusb.identity import Wallet
from borgusb.keys import SigningKey
from borgusb.keystore import KdfParams, save_wallet
from borgusb.net.peer import PeerClient

from .browser import ARGS, CHROMIUM
from .conduit_proc import conduit_process

pytestmark = pytest.mark.slow

WORDS = " ".join(["abandon"] * 23 + ["art"])
PASSPHRASE = "correct horse battery"
N = 3
FS_MON = dna.get("fStreamCell").mon_port
HOSTILE = '<img src=x onerror="document.body.dataset.pwned=1">.webm'
PUBLIC = '<svg onload="document.body.dataset.pwned=2">public.webm'


def run_async(coro):
    """Playwright's sync API owns this thread's event loop; run coroutines beside it."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def encode_looped(path: Path, seconds: int, times: int, args: list[str]) -> None:
    """`seconds` of media encoded once by ffmpeg with `args` (inputs and codecs), then repeated `times`
    times into `path` by stream copy: the container, key frames and bitrate of a clip encoded whole, for a
    fraction of the CPU (the 80 s noise clip: 0.9 s of CPU against 13, a cost the suite's other lane
    multiplies)."""
    part = path.with_name(f"{path.stem}.part.webm")
    subprocess.run(["ffmpeg", "-v", "error", *args, "-t", str(seconds), "-y", str(part)], check=True, timeout=120)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-stream_loop", str(times - 1), "-i", str(part), "-c", "copy", "-y", str(path)],
        check=True,
        timeout=120,
    )
    part.unlink()


def make_clip(path: Path) -> None:
    """80 s of VP8 at 320x240, 2 Mbit/s, a key frame every second: ~19 MB in 1 MiB shards, far more than
    Chromium reads ahead of the play position (about 10 s of media), so a seek far ahead asks for new ranges."""
    encode_looped(
        path, 4, 20,
        ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=24,noise=alls=30:allf=t", "-c:v", "libvpx",
         "-b:v", "2M", "-minrate", "2M", "-maxrate", "2M", "-g", "24", "-deadline", "realtime", "-cpu-used", "8",
         "-an"],
    )  # fmt: skip


async def start(make_cluster):
    shard, ftree, fstream = make_cluster("shardTreeCell"), make_cluster("ftreeFileMgrCell"), make_cluster("fStreamCell")
    shard.up(N)
    ftree.up(N)
    fstream.up(2)
    for cluster, size in ((shard, N), (ftree, N), (fstream, 2)):
        await cluster.wait_one_tree(timeout_s=90, expect=size)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        s, f = await shard.status(), await ftree.status()
        if all(d.get("shard", {}).get("directory") == N for d in s) and all(
            d.get("files", {}).get("members") == N for d in f
        ):
            return shard, fstream
        await asyncio.sleep(0.3)
    raise TimeoutError("the clusters did not settle")


async def put_private(ip: str, local: Path, name: str) -> None:
    key = Wallet.from_mnemonic(WORDS).key
    clock = SystemClock()
    async with PeerClient(key, clock, Verifier(clock), timeout_s=30) as peers:
        tree = FileTree(peers, ip, key, machine="test", r=N)
        try:
            await actions.put(tree, local, "/", public=False, name=name)
        finally:
            tree.close()


def make_small_clip(path: Path) -> None:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=12", "-t", "8",
         "-c:v", "libvpx", "-b:v", "300k", "-g", "12", "-deadline", "realtime", "-cpu-used", "8",
         "-an", "-y", str(path)],
        check=True, timeout=120,
    )  # fmt: skip


def make_hd_clip(path: Path) -> None:
    """30 s of VP8 at 1280x720, about 3 Mbit/s, with sound: more than the throttled link carries."""
    encode_looped(
        path, 6, 5,
        ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-c:v", "libvpx", "-b:v", "3M", "-minrate", "3M", "-maxrate", "3M", "-g", "50",
         "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus", "-b:a", "64k"],
    )  # fmt: skip


async def publish_public(ip: str, path: Path, renditions: tuple[int, ...]) -> dict:
    key = SigningKey.generate()
    clock = SystemClock()
    async with PeerClient(key, clock, Verifier(clock), timeout_s=60) as peers:
        return await publish(peers, ip, dna.get("shardTreeCell").recp_port, path, key, r=N, renditions=renditions)


def rendition(page) -> str | None:
    return page.evaluate("document.getElementById('watch-player').dataset.rendition || null")


async def from_someone_else(ip: str, public: Path, private: Path, to: str) -> str:
    """Another person publishes `public` (listed) and shares the private file `private` with `to`:
    the share record, as text."""
    key = SigningKey.generate()
    clock = SystemClock()
    async with PeerClient(key, clock, Verifier(clock), timeout_s=30) as peers:
        out = await publish(peers, ip, dna.get("shardTreeCell").recp_port, public, key, r=N)
        assert out["listed"], out
        tree = FileTree(peers, ip, key, machine="test", r=N)
        try:
            await actions.put(tree, private, "/", public=False, name="theirs.webm")
            share = await actions.share(tree, "/theirs.webm", to)
        finally:
            tree.close()
    assert share is not None
    return share.encode().decode()


async def fstream_status(ip: str) -> dict:
    async with aiohttp.ClientSession() as s, s.get(f"http://{ip}:{FS_MON}/status") as r:
        return await r.json()


async def streamed_by_wallet(ip: str) -> int:
    """Bytes the fStream cell at `ip` charged to the wallet's key today (its free share used): the
    conduit signed each range as the wallet (`fstream.viewer`), not left it to the address."""
    clock = SystemClock()
    async with PeerClient(Wallet.from_mnemonic(WORDS).key, clock, Verifier(clock)) as peers:
        usage = await FStreamClient(peers, ip).usage()
    return int(usage["free"] - usage["free_left"])


def opened(ip: str) -> int:
    """Requests an fStream cell opened an object for: pulled, windowed or served from its cache."""
    cache = run_async(fstream_status(ip))["fstream"]["cache"]
    return int(cache["pulls"] + cache["hits"] + cache["windowed"])


def played_past(page, seconds: float, timeout_s: float = 60) -> None:
    """Poll until the player's currentTime passes `seconds` (the page's CSP forbids wait_for_function's eval)."""
    deadline = time.monotonic() + timeout_s
    while page.evaluate("document.getElementById('watch-player').currentTime") <= seconds:
        state = page.evaluate("document.getElementById('watch-state').textContent")
        assert time.monotonic() < deadline, f"the player did not pass {seconds} s: {state}"
        page.wait_for_timeout(100)


def test_watch_plays_seeks_and_survives_its_endpoint(make_cluster, monkeypatch, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists() or shutil.which("ffmpeg") is None:
        pytest.fail("chromium and ffmpeg are needed: ./build.sh setup installs them")
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("BORGUSB_SHARD_R", str(N))
    monkeypatch.setenv("BORGUSB_FILES_R", str(N))
    clip = tmp_path / "clip.webm"
    make_clip(clip)  # (noise, so that it does not compress to a few frames' worth)
    assert clip.stat().st_size > 16 << 20
    shard, fstream = run_async(start(make_cluster))
    run_async(put_private(shard.nodes[0].ip, clip, "clip.webm"))
    run_async(put_private(shard.nodes[0].ip, clip, HOSTILE))
    small = tmp_path / PUBLIC
    make_small_clip(small)
    me = Wallet.from_mnemonic(WORDS).public.public_key_hex
    share = run_async(from_someone_else(shard.nodes[0].ip, small, small, me))
    ks = tmp_path / "a" / "keystore.json"
    ks.parent.mkdir()
    save_wallet(ks, Wallet.from_mnemonic(WORDS), PASSPHRASE, KdfParams(iterations=1, lanes=1, memory_kib=1024))
    with conduit_process(ks, [shard.nodes[1].ip], tmp_path / "a.log") as link, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(link)
            page.fill("#passphrase", PASSPHRASE)
            page.click("#unlock")
            page.wait_for_selector("#address")
            page.click("nav >> text=Watch")
            expect(page.locator("#watch-list")).to_contain_text(HOSTILE, timeout=60_000)  # as text
            assert page.evaluate("document.body.dataset.pwned") is None
            page.evaluate("""() => {
                const v = document.getElementById('watch-player');
                window.errors = 0; v.addEventListener('error', () => { window.errors += 1; });
            }""")
            asked: list[str] = []
            page.on("request", lambda r: asked.append(r.headers.get("range", "-")) if "/media/" in r.url else None)
            first = {n.ip: opened(n.ip) for n in fstream.nodes}
            page.click("button.media[data-path='/clip.webm']")
            played_past(page, 1)
            duration = page.evaluate("document.getElementById('watch-player').duration")
            assert 79 < duration < 81
            page.evaluate("document.getElementById('watch-player').currentTime = 40")  # the middle
            played_past(page, 41)
            # the endpoint that served the ranges (either may have: the conduit moves a slow one to the back)
            work = {n.ip: opened(n.ip) - first[n.ip] for n in fstream.nodes}
            victim = max(fstream.nodes, key=lambda n: work[n.ip])
            assert work[victim.ip] > 0, work
            fstream.kill(victim)  # mid-playback: the conduit goes on from the other endpoint
            before = len(asked)
            other = next(n for n in fstream.nodes if n is not victim)
            at_kill = opened(other.ip)
            page.evaluate("document.getElementById('watch-player').currentTime = 72")  # not read ahead yet: a new range
            played_past(page, 73.5)
            assert page.evaluate("window.errors") == 0
            assert page.evaluate("document.getElementById('watch-player').error") is None
            assert len(asked) > before, asked  # the player asked for a range after the kill
            assert opened(other.ip) > at_kill  # and the other endpoint served it
            assert run_async(streamed_by_wallet(other.ip)) > 0  # charged to the wallet's key
            assert run_async(fstream_status(other.ip))["fstream"]["cache"]["pulls"] >= 1

            page.click("#watch-public-refresh")  # another person's public media, listed as text
            expect(page.locator("#watch-public")).to_contain_text(PUBLIC, timeout=30_000)
            page.click("#watch-public button.public")
            expect(page.locator("#watch-title")).to_have_text(PUBLIC)
            played_past(page, 1)
            page.fill("#watch-share", share)  # a private file someone shared with this key
            page.click("#watch-share-open")
            expect(page.locator("#watch-shared")).to_contain_text("theirs.webm", timeout=30_000)
            page.click("#watch-shared button.shared")
            expect(page.locator("#watch-title")).to_have_text("theirs.webm")
            played_past(page, 1)
            assert page.evaluate("window.errors") == 0 and page.evaluate("document.body.dataset.pwned") is None

            # adaptive bitrate: 720p with a 240p rendition, on a link of 100 kB/s (800 kbit/s)
            hd = tmp_path / "hd.webm"
            make_hd_clip(hd)
            out = run_async(publish_public(shard.nodes[0].ip, hd, (240,)))
            assert [a["h"] for a in out["alts"]] == [240] and out["alts"][0]["bps"] < 800_000  # fits the link
            cdp = page.context.new_cdp_session(page)
            cdp.send("Network.enable")
            cdp.send(
                "Network.emulateNetworkConditions",
                {"offline": False, "latency": 20, "downloadThroughput": 100_000, "uploadThroughput": 1_000_000},
            )
            page.click("#watch-public-refresh")
            expect(page.locator("#watch-public")).to_contain_text("hd.webm", timeout=30_000)
            page.click(f"#watch-public button.public[data-map='{out['map']}']")
            expect(page.locator("#watch-title")).to_have_text("hd.webm")
            assert rendition(page) == "720"  # the best first
            deadline = time.monotonic() + 90
            while rendition(page) != "240":  # stalls on the slow link: one step down
                assert time.monotonic() < deadline, page.evaluate("document.getElementById('watch-state').textContent")
                page.wait_for_timeout(200)
            at = page.evaluate("document.getElementById('watch-player').currentTime")
            played_past(page, at + 3)  # and it keeps playing, from where it was
            assert rendition(page) == "240" and "240p" in page.inner_text("#watch-quality")
            assert page.evaluate("window.errors") == 0
        finally:
            browser.close()
