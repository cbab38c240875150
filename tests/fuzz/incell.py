"""An in-process cell and its doors, with the checks every hostile message must pass.

Shared by the hypothesis receptor fuzzer (test_receptor_fuzz.py: a fresh cell per example) and the
coverage-guided one (atheris_receptors.py: one long-lived cell per type), so both drive the same
dispatch path and hold it to the same properties.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from borgusb import canonical, cells, envelope
from borgusb.cells.kit.cell import BROADCAST_REQUESTS
from borgusb.cells.kit.handlers import collect
from borgusb.cells.kit.treedriver import BROADCAST_ORIGINS
from borgusb.clock import SystemClock
from borgusb.dstream.frames import frame, unframe
from borgusb.keys import SigningKey
from borgusb.shard import model

from .strategies import fixed_key

IP = "127.0.0.92"  # the cells' own address (nothing is bound; their outgoing connections leave from it)
SENDER_IP = "127.0.0.93"  # where requesters and every network address in a payload point: closed ports
DEADLINE_S = 30.0
LOCATE_WAIT_S = 0.05
_REASON = re.compile(r"^[a-z][a-z0-9_.]{0,47}$")

CELL_KEY = fixed_key("cell")  # every fuzzed cell's node key (so a payload can name it)
OWNER = fixed_key("owner")
STRANGER = fixed_key("stranger")
REQUESTERS = (STRANGER, OWNER, CELL_KEY)

# one object of one shard, owned by OWNER, held by every fuzzed shard cell before the message
T_SIGNED = SystemClock().now_ms() - 60_000
SHARD = b"a shard the fuzzed cell holds " * 8
SHARD_H = model.sha256_hex(SHARD)
OBJ = model.object_id(len(SHARD), model.SHARD_SIZE, [SHARD_H])
STORED_REC = model.sign_record(OWNER, SHARD_H, len(SHARD), T_SIGNED)
STORED_M = model.sign_manifest(OWNER, len(SHARD), model.SHARD_SIZE, 1, [SHARD_H], T_SIGNED)


class Unsignable(Exception):
    """A payload canonical form refuses (too deep, a float, a huge number): no message at all
    (the parser's own fuzz tests send such bytes)."""


def doors(cell_name: str) -> list[tuple[str, str]]:
    """Every (door, message type) a cell type handles: "receptor", "frame" or "broadcast" (a kind)."""
    table = collect(cells.spec(cell_name).runtime_class())
    out = [("receptor", t) for t in table.receptors] + [("frame", t) for t in table.frames]
    return sorted(out + [("broadcast", k) for k in table.broadcasts])


# One inference thread for the brain: with two, llama.cpp's threads wait for each other at every
# step, and when the suite's other lane holds a core each wait is a lost time slice (this test's
# hostile sequences: 11 s on an idle machine; beside two busy cores 98 s with two threads, 24 s with
# one; the model and its answers the same).
SETTINGS: dict[str, dict[str, Any]] = {"borgAgentBrain": {"threads": 1}}


class Fuzzed:
    """One cell, in-process, and its doors with the checks every message must pass."""

    def __init__(self, name: str, data_dir: Path) -> None:
        spec = cells.spec(name)
        self.cell = spec.runtime_class()(
            spec.dna_row(),
            IP,
            key=CELL_KEY,
            settings=spec.settings_class().from_sources(SETTINGS.get(name, {}), {}),
            data_dir=data_dir,
        )
        cell = self.cell
        cell._execute(cell.tree.start(cell.clock.now_ms(), []))  # the lone root: broadcasts come back to it
        locate = getattr(cell, "locate", None)
        if locate is not None:

            async def quick_locate(oid: str, *, repair: bool = True, wait_s: float = LOCATE_WAIT_S) -> Any:
                return await locate(oid, repair=repair, wait_s=min(wait_s, LOCATE_WAIT_S))

            cell.locate = quick_locate
        store = getattr(cell, "store", None)
        if store is not None:
            store.put(STORED_REC, SHARD, OBJ)
            store.put_manifest(STORED_M)
        self.failed_tasks: list[BaseException] = []

    def sign(self, key: SigningKey, mtype: str, payload: Any, to: str, port: int | None = None) -> bytes:
        """The requester's envelope, or `Unsignable`."""
        port = self.cell.dna.recp_port if port is None else port
        try:
            return envelope.encode(envelope.sign(key, mtype, payload, self.cell.clock, ip=SENDER_IP, port=port, to=to))
        except canonical.CanonicalError as exc:
            raise Unsignable(str(exc)) from None

    def verified(self, wire: bytes, **kw: Any) -> envelope.Envelope | None:
        """The cell's own verification; a refusal must be typed and counted once."""
        before = self.cell.verifier.counters.copy()
        try:
            return self.cell.verifier.verify(wire, **kw)
        except envelope.EnvelopeError as exc:
            assert exc.reason in envelope.REASONS
            assert self.cell.verifier.counters[exc.reason] == before[exc.reason] + 1
            return None

    async def request(self, door: str, key: SigningKey, mtype: str, payload: Any, data: bytes, to: str) -> None:
        cell = self.cell
        wire = self.sign(key, mtype, payload, to)
        if door == "frame":  # as `Cell._handle_frame` and `_handle_receptor` do
            wire, view = unframe(frame(wire, data))
            env = self.verified(wire)
            name, extra, ctype = cell.handlers.frames.get(mtype), (view,), "application/octet-stream"
        else:
            env = self.verified(wire, broadcast_types=BROADCAST_REQUESTS)
            name, extra, ctype = cell.handlers.receptors.get(mtype), (), "application/json"
        if env is None:
            return
        before = Counter(cell.counters)
        resp = await asyncio.wait_for(cell._dispatch(env, name, (env, *extra), ctype), DEADLINE_S)
        await self.drain()
        body = resp.body
        assert isinstance(body, bytes)
        if 200 <= resp.status < 300:
            self.check_reply(key, body.split(b"\n", 1)[0] if door == "frame" else body)
            assert cell.counters[f"receptor:{mtype}"] == before[f"receptor:{mtype}"] + 1
        else:
            doc = json.loads(body)
            assert set(doc) == {"error", "detail"} and isinstance(doc["detail"], str), doc
            assert doc["error"] != "internal", f"{mtype} crashed on this input (500 internal); see the log"
            assert _REASON.match(doc["error"]) and 400 <= resp.status < 600, (resp.status, doc)
            counted = f"receptor_refused:{doc['error']}"
            assert cell.counters[counted] == before[counted] + 1, (counted, doc)
        assert cell.counters["receptor_errors"] == 0
        self.check_broadcasts_survived()

    def check_reply(self, key: SigningKey, body: bytes) -> None:
        """A reply is the cell's signed envelope addressed to the requester."""
        client = envelope.Verifier(self.cell.clock)
        client.answer_to(key.public_key_hex, (self.cell.dna.recp_port,))
        client.verify(body, expected_signer=self.cell.key.public_key_hex)

    async def broadcast(self, key: SigningKey, data: Any, mtype: str = "bcast") -> None:
        """A broadcast's origin envelope reaching this member (`TreeDriver._deliver` checks it so)."""
        port = self.cell.dna.net_port if mtype == "bcast" else self.cell.dna.recp_port
        wire = self.sign(key, mtype, data, envelope.everyone(port), port)
        origin = self.verified(wire, broadcast_types=BROADCAST_ORIGINS)
        if origin is None:
            return
        self.cell._dispatch_broadcast(origin)
        await self.drain()
        self.check_broadcasts_survived()

    def check_broadcasts_survived(self) -> None:
        assert self.cell.counters["broadcast_handler_errors"] == 0, "a broadcast handler raised; see the log"
        assert not self.failed_tasks, f"a background task failed: {self.failed_tasks[0]!r}"

    async def drain(self) -> None:
        """Wait for what the message started (broadcast handlers, repairs); keep what failed."""
        deadline = time.monotonic() + DEADLINE_S
        while self.cell._tasks:
            left = deadline - time.monotonic()
            assert left > 0, "background work started by a message did not finish in time"
            done, _ = await asyncio.wait(list(self.cell._tasks), timeout=left)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    self.failed_tasks.append(task.exception())  # type: ignore[arg-type]

    async def close(self) -> None:
        for task in list(self.cell._tasks):
            task.cancel()
        await asyncio.gather(*self.cell._tasks, return_exceptions=True)
        await self.cell.peers.close()
        await self.cell.on_stop()


@contextmanager
def request_source(source: str | None) -> Iterator[None]:
    """A serviceMgr decides "local" by the request's TCP peer, which its door keeps in a context variable."""
    from borgusb.cells.servicemgr import cell as svc

    token = svc._REQUEST_SOURCE.set(source)
    try:
        yield
    finally:
        svc._REQUEST_SOURCE.reset(token)


async def send(fuzzed: Fuzzed, door: str, key: SigningKey, mtype: str, payload: Any, raw: bytes, to: str) -> None:
    """One message through the cell's door; `to` is "self" or "everyone" (for a broadcast: its origin's type)."""
    cell = fuzzed.cell
    if door == "broadcast":
        await fuzzed.broadcast(key, payload, "bcast" if to == "self" else to)
        return
    port = cell.dna.recp_port
    address = envelope.everyone(port) if to == "everyone" else envelope.address(cell.key.public_key_hex, port)
    await fuzzed.request(door, key, mtype, payload, raw, address)
