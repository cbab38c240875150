"""The HTTP doors of one real cell under raw hostile bytes: every reply typed, every refusal counted.

One shardTreeCell process (every door: ``/net`` on the netPort, ``/recp`` and ``/frame`` on the
receptor, TLS) runs on 127.0.0.91, an address no other test uses. Hypothesis sends it bodies:
random bytes, JSON junk, envelopes signed for it with hostile payloads (some then damaged), and
frames with or without their newline. Properties: each reply is a signed answer (2xx) or a typed
JSON refusal ``{"error": word, "detail": text}`` and never ``internal``; each refusal shows in the
cell's counters (``rejected`` by reason for the envelope door, ``receptor_refused:<reason>`` for a
handler's, ``refused:<reason>`` for the guard's); the cell still serves ``/status`` afterwards, and
its resident memory has not grown past `RSS_GROWTH_MAX` (measured once the guard has handed a
burst's heap back). Fewer examples than the in-process tests: these cross real sockets.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from borgusb import canonical, envelope
from borgusb.cells import dna_of
from borgusb.cells.kit.guard import TRIM_DELAY_S
from borgusb.clock import SystemClock
from borgusb.dstream.frames import FRAME_PATH
from borgusb.net.tls import client_context

from .strategies import HOSTILE, JSON_SMALL, fixed_key, fuzz_settings

pytestmark = pytest.mark.slow

IP = "127.0.0.91"
CELL = "shardTreeCell"
DNA = dna_of(CELL)
REQUESTER = fixed_key("door requester")
RSS_GROWTH_MAX = 16 * 1024 * 1024
_REASON = re.compile(r"^[a-z][a-z0-9_.]{0,47}$")


class Door:
    """The running cell: its node key, an event loop and a session to post with."""

    def __init__(self, proc: subprocess.Popen[bytes], node: str) -> None:
        self.proc = proc
        self.node = node
        self.loop = asyncio.new_event_loop()
        self.session = self.run(self._session())
        # one context, so one pooled connection: a context per request would open (and keep alive) a
        # TLS connection per request, and the cell's memory would measure those, not the bodies
        self.ssl = client_context()

    async def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def url(self, door: str) -> str:
        port = DNA.net_port if door == "/net" else DNA.recp_port
        return f"https://{IP}:{port}{door}"

    async def post(self, door: str, body: bytes) -> tuple[int, bytes]:
        async with self.session.post(self.url(door), data=body, ssl=self.ssl) as resp:
            return resp.status, await resp.read()

    async def status(self) -> dict[str, Any]:
        async with self.session.get(f"http://{IP}:{DNA.mon_port}/status") as resp:
            assert resp.status == 200
            return await resp.json()

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def close(self) -> None:
        self.run(self.session.close())
        self.loop.close()


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    data = tmp_path_factory.mktemp("door-cell")
    log = open(data / "cell.log", "wb")  # closed below, once the process is gone
    proc = subprocess.Popen(
        [sys.executable, "-m", "borgusb.cli", "cell", "run", CELL, "--ip", IP, "--data", str(data / "shards")],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    made: Door | None = None
    try:
        deadline = time.monotonic() + 60
        node = None
        while node is None:
            assert proc.poll() is None, (data / "cell.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the cell did not start in 60 s"
            try:
                node = get_json(f"http://{IP}:{DNA.mon_port}/status")["node"]
            except OSError:
                time.sleep(0.2)
        made = Door(proc, node)
        yield made
    finally:
        if made is not None:
            made.close()
        os.killpg(proc.pid, signal.SIGTERM)  # a clean stop: the cell's own data goes with it
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


def get_json(url: str) -> Any:
    """A blocking GET of a JSON document (at start-up, before the door's event loop exists)."""
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.loads(resp.read())


# ------------------------------------------------------------------ bodies

TYPES = st.sampled_from(
    ["cell.status", "tree.members", "shard.locate", "shard.owned", "shard.have", "shard.get", "shard.put", "tree.hb"]
)
HOSTILE_BYTES = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=200).map(str.encode),
    JSON_SMALL.map(canonical.dumps),
    st.sampled_from([b"", b"\n", b"{}", b"[]", b"null", b"\xff\xfe", b"{" * 5000, b"\n" * 3]),
)


def signed(node: str, door: str, mtype: str, payload: Any, damage: int | None) -> bytes:
    port = DNA.net_port if door == "/net" else DNA.recp_port
    to = envelope.address(node, port)
    try:
        wire = envelope.encode(
            envelope.sign(REQUESTER, mtype, payload, SystemClock(), ip="127.0.0.94", port=port, to=to)
        )
    except canonical.CanonicalError:
        return b"{}"
    if damage is not None:
        at = damage % len(wire)
        wire = wire[:at] + bytes([wire[at] ^ 0x20]) + wire[at + 1 :]
    return wire


@st.composite
def bodies(draw: st.DrawFn, node: str) -> tuple[str, bytes]:
    door = draw(st.sampled_from(["/recp", "/net", FRAME_PATH]))
    how = draw(st.sampled_from(["raw", "signed", "signed", "damaged"]))
    if how == "raw":
        return door, draw(HOSTILE_BYTES)
    one = st.one_of(HOSTILE, st.fixed_dictionaries({"t": TYPES, "h": st.text(max_size=70)}))
    if draw(st.integers(0, 5)) == 0:  # a batch of tree messages (treebatch.py), often broken
        mtype, payload = "tree.batch", {"t": "tree.batch", "msgs": draw(st.lists(one, max_size=40))}
    else:
        mtype, payload = draw(TYPES), draw(one)
    damage = draw(st.integers(0, 10**6)) if how == "damaged" else None
    wire = signed(node, door, mtype, payload, damage)
    if door == FRAME_PATH and draw(st.booleans()):
        wire += b"\n" + draw(st.binary(max_size=1024))
    return door, wire


def check_reply(door: Door, path: str, status: int, body: bytes) -> str | None:
    """A signed answer (None), or a typed refusal (its word)."""
    if 200 <= status < 300:
        if path == "/net":
            assert json.loads(body) == {"ok": True}
            return None
        reply = body.split(b"\n", 1)[0] if path == FRAME_PATH else body
        client = envelope.Verifier(SystemClock())
        client.answer_to(REQUESTER.public_key_hex, (DNA.recp_port,))
        client.verify(reply, expected_signer=door.node)
        return None
    doc = json.loads(body)
    assert set(doc) == {"error", "detail"} and isinstance(doc["detail"], str), doc
    assert doc["error"] != "internal", f"{path}: the cell failed to handle this body (500 internal)"
    assert _REASON.match(doc["error"]) and 400 <= status < 600, (status, doc)
    return str(doc["error"])


def counted(before: dict[str, Any], after: dict[str, Any], word: str) -> int:
    """How often the cell counted refusal `word` between two status documents: the verifier's by
    reason, a handler's, the guard's (rates, body budget), an unknown request type."""
    rejected = after["rejected"].get(word, 0) - before["rejected"].get(word, 0)
    counters = Counter(after["counters"])
    counters.subtract(before["counters"])
    n = rejected + counters[f"receptor_refused:{word}"] + counters[f"refused:{word}"]
    return n + (counters["receptor_unknown_type"] if word == "unknown_request" else 0)


def test_raw_hostile_bodies_get_typed_counted_refusals_and_the_cell_lives_on(door: Door) -> None:
    for _ in range(20):  # the first requests of each kind allocate what every later one reuses
        for path in ("/recp", "/net", FRAME_PATH):
            door.run(door.post(path, b"{}"))
    before, rss_before = door.run(door.status()), door.rss()
    seen: Counter[str] = Counter()

    @fuzz_settings(50)
    @given(data=st.data())
    @example(data=None)  # an oversized body on each door
    def fuzz(data: st.DataObject | None) -> None:
        if data is None:
            cases = [(path, b"x" * (envelope.DEFAULT_MAX_BYTES + 4096)) for path in ("/recp", "/net", FRAME_PATH)]
        else:
            cases = [data.draw(bodies(door.node), label=f"body {i}") for i in range(3)]
        for path, body in cases:
            status, reply = door.run(door.post(path, body))
            word = check_reply(door, path, status, reply)
            if word is not None:
                seen[word] += 1

    fuzz()
    after = door.run(door.status())
    assert after["node"] == door.node  # still serving, the same process
    assert seen, "no body was refused"
    for word, n in seen.items():
        assert counted(before, after, word) == n, (word, n, counted(before, after, word))
    # the guard hands a burst's heap back once it is over (TRIM_DELAY_S after the last body): wait for it
    deadline = time.monotonic() + TRIM_DELAY_S + 30
    while (growth := door.rss() - rss_before) >= RSS_GROWTH_MAX and time.monotonic() < deadline:
        door.run(asyncio.sleep(0.2))
    assert growth < RSS_GROWTH_MAX, f"RSS grew by {growth / 2**20:.1f} MiB (from {rss_before / 2**20:.1f} MiB)"


def test_a_batch_is_handled_message_by_message_and_a_bad_one_refused(door: Door) -> None:
    """Three heartbeats in one tree.batch reach the tree as three (each counted); a batch holding a
    join is refused whole as malformed, and counted."""
    before = door.run(door.status())
    msgs = [{"t": "tree.hb", "tree": "no-such-tree", "pos": p} for p in (2, 3, 4)]
    status, body = door.run(
        door.post("/net", signed(door.node, "/net", "tree.batch", {"t": "tree.batch", "msgs": msgs}, None))
    )
    assert (status, json.loads(body)) == (200, {"ok": True})
    join = {"t": "tree.join", "joiner": {"pubkey": REQUESTER.public_key_hex, "ip": "127.0.0.94", "port": 1}, "hops": 0}
    bad = {"t": "tree.batch", "msgs": [msgs[0], join]}
    status, body = door.run(door.post("/net", signed(door.node, "/net", "tree.batch", bad, None)))
    assert status == 400 and json.loads(body)["error"] == "malformed"
    after = door.run(door.status())
    assert after["counters"].get("recv:tree.hb", 0) - before["counters"].get("recv:tree.hb", 0) == 3
    assert counted(before, after, "malformed") == 1
