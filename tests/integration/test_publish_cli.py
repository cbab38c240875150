"""`borgusb publish` against real cells (shard, file manager and fStream cells on 127.0.0.x): a public
WebM made with ffmpeg gets a watch link whose bytes are the file's, typed and with its key frames; a
private one lands encrypted in the person's file tree, where it reads back as the same bytes.

Run under ``flock /tmp/borgusb-cluster.lock`` (fixed 127.0.0.x ports).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from borgusb import dna
from borgusb.files import actions
from borgusb.files.remote import FileTree
from borgusb.fstream.listing import check_listing
from borgusb.keys import SigningKey

from .test_shard_cluster import cli, client
from .test_watch_browser import N, start

pytestmark = pytest.mark.slow
FS_MON = dna.get("fStreamCell").mon_port


def make_clip(path: Path) -> None:
    """6 s of VP8 with a key frame a second (small: this test is about the command, not the media)."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=12", "-t", "6",
         "-c:v", "libvpx", "-b:v", "500k", "-g", "12", "-deadline", "realtime", "-cpu-used", "8",
         "-an", "-y", str(path)],
        check=True, timeout=120,
    )  # fmt: skip


async def test_publish_public_link_and_private_file(make_cluster, monkeypatch, tmp_path: Path) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is needed: ./build.sh setup installs it")
    monkeypatch.setenv("BORGUSB_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.setenv("BORGUSB_SHARD_R", str(N))
    monkeypatch.setenv("BORGUSB_FILES_R", str(N))
    clip = tmp_path / "clip.webm"
    make_clip(clip)
    shard, _ = await start(make_cluster)
    node = shard.nodes[0].ip
    key_file = tmp_path / "me.key"

    done = cli("publish", str(clip), "--node", node, "--key-file", str(key_file), "--json", "-q")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["private"], out["type"], out["size"]) == (False, "video/webm", clip.stat().st_size)
    assert out["keys"][:6] == [0, 1000, 2000, 3000, 4000, 5000]  # the WebM's own key frames
    assert out["watch"].startswith(f"http://{node}:") and out["watch"].endswith("/stream/" + out["map"])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        async with s.get(out["watch"]) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "video/webm"
            assert await resp.read() == clip.read_bytes()
        async with s.get(out["watch"], headers={"Range": "bytes=100-199"}) as resp:
            assert resp.status == 206 and await resp.read() == clip.read_bytes()[100:200]
        assert out["listed"] is True  # its signed listing, spread over the tree to the other fStream cell
        deadline = time.monotonic() + 30
        while True:
            async with s.get(f"http://{shard.nodes[1].ip}:{FS_MON}/catalog") as resp:
                docs = (await resp.json())["listings"]
            if any(d["map"] == out["map"] for d in docs):
                break
            assert time.monotonic() < deadline, docs
            await asyncio.sleep(0.3)
        listing = check_listing(next(d for d in docs if d["map"] == out["map"]))
        assert (listing.name, listing.id, listing.size) == ("clip.webm", out["id"], out["size"])

    text = cli("publish", str(clip), "--node", node, "--key-file", str(key_file))  # the person's form
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"http://{node}:") and "anyone with the link" in text.stdout
    assert "publish:" in text.stderr  # the progress line (not a terminal: the final line)

    done = cli("publish", str(clip), "--private", "--node", node, "--key-file", str(key_file), "--json", "-q")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["private"], out["path"], "map" in out, "watch" in out) == (True, "/clip.webm", False, False)
    key = SigningKey(bytes.fromhex(key_file.read_text().strip()))
    async with client(key) as peers:
        tree = FileTree(peers, node, key, machine="test", r=N)
        try:
            entry = await actions.entry_at(tree, "/clip.webm")
            assert entry.private and entry.obj == out["id"] and entry.size == clip.stat().st_size
            await actions.get(tree, entry, tmp_path / "back.webm")
        finally:
            tree.close()
    assert (tmp_path / "back.webm").read_bytes() == clip.read_bytes()

    missing = cli("publish", str(tmp_path / "nope.webm"), "--node", node, "--key-file", str(key_file))
    assert missing.returncode == 2 and "no such file" in missing.stderr
