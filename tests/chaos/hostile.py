"""The hostile peer of the flood and join-storm scenarios: one process, one address of its own.

    python -m tests.chaos.hostile flood  --bind IP --target IP --seconds S --out FILE
    python -m tests.chaos.hostile joins  --bind IP --target IP --seconds S --out FILE [--keys N]

``flood`` attacks one peerTreeNet node's doors for S seconds, in three phases. First (a fifth of S)
fresh valid requests from one key: `WORKERS` * 2 senders, and one connection that pipelines them
(written in batches without waiting for the answers, so that they come as fast as the node takes
them, past the key's rate whatever this machine's speed) until the node answers one with a 429. Then
(to 0.45 S) `WORKERS` senders of each kind on the receptor (kept-alive TLS connections, reconnecting
after `RETRY_S` when the node closes one): random bytes; envelopes with a bad signature; one valid
envelope sent again and again (replays); bodies larger than the door takes (1 MiB); JSON nested
200,000 deep; fresh valid requests from that key; beside them `PIPELINES` connections each
pipelining cheap requests (a GET the door answers 405), past the address's rate whatever this
machine's speed (senders that wait for each answer reached it only on a quick one), until the node
has cut one for the address's rate and refused a new one; it begins with `CONN_BURST` bare TCP
connections opened as fast as they open (past the node's burst of new connections per address,
whatever this machine's speed). Last (to S, and for at least `SLOWLORIS_MIN_S`, past the node's 10 s
limits), slowloris: `SLOW_TLS` connections, `SLOW_OPEN_PER_S` a second (within the node's rate of
new connections, beyond its cap of open ones), that finish the TLS handshake and trickle a request
head one header a second, and `SLOW_RAW` that never send a ClientHello; each reopened when the node
cuts it. ``joins`` makes N fresh keys (1,000) and has each ask the node to place it in the tree (a
``tree.join`` signed by that key, the joiner at this address), every key again every `JOIN_ROUND_S`
seconds until S seconds have passed; nothing answers at the joiners' address, as for keys made only
to fill a tree. Each writes what it sent and what came back (by HTTP status or error) as JSON to
FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import time
from collections import Counter
from typing import Any

import aiohttp

from borgusb import dna, envelope
from borgusb.clock import SystemClock
from borgusb.keys import SigningKey
from borgusb.net.peer import PeerClient
from borgusb.net.tls import client_context

DNA = dna.get("peerTreeNet")
WORKERS = 2  # concurrent senders of each kind
SLOW_TLS = 150  # beyond the node's 128 connections per address, with the senders
SLOW_RAW = 20
SLOW_OPEN_PER_S = 25
SLOWLORIS_MIN_S = 15.0  # the node cuts a slow connection after 10 s (IDLE_S, handshake_s)
CONN_BURST = 600  # three times the node's burst of new connections per address (ConnLimits.burst)
CONN_BATCH = 50  # opened at once (within the listening socket's backlog)
NESTED_DEPTH = 200_000
OVERSIZED = 2 << 20
RETRY_S = 0.01  # a sender's pause after the node closed its connection (this machine hosts both sides)
REFRESH_S = 10.0  # envelopes are re-signed this often (the node's freshness window is 30 s)
PIPELINES = 2  # while one is cut and reconnects, the other keeps the address's bucket empty
PIPELINE_BATCH = 100  # requests written at once
CHEAP = b"GET /recp HTTP/1.1\r\nHost: x\r\n\r\n"
STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")
JOIN_ROUND_S = 2.0
HOSTILE_JOIN_PORT = DNA.net_port  # the joiners claim this port at the hostile address (nothing listens)


class Answers:
    """The statuses of the answers on one pipelined connection, counted as they arrive."""

    def __init__(self, reader: asyncio.StreamReader, outcomes: Counter[str], kind: str) -> None:
        self.reader, self.outcomes, self.kind = reader, outcomes, kind
        self.count = 0
        self.arrived = asyncio.Event()

    async def wait(self, timeout_s: float) -> None:
        """Until more answers arrive (or the connection ends), at most timeout_s."""
        self.arrived.clear()
        try:
            await asyncio.wait_for(self.arrived.wait(), timeout_s)
        except TimeoutError:
            pass

    async def read(self) -> None:
        """Until the node closes the connection."""
        tail = b""
        try:
            while chunk := await self.reader.read(1 << 16):
                data, seen = tail + chunk, 0
                for match in STATUS.finditer(data):
                    self.outcomes[f"pipelined_{self.kind}:{match[1].decode()}"] += 1
                    self.count += 1
                    seen = match.end()
                tail = data[max(seen, len(data) - 16) :]  # a status line cut between two reads
                self.arrived.set()
        except (OSError, ConnectionError):
            pass
        self.outcomes[f"pipelined_{self.kind}:cut"] += 1
        self.arrived.set()


class Flood:
    def __init__(self, bind: str, target: str, seconds: float) -> None:
        self.bind, self.target, self.seconds = bind, target, seconds
        self.clock = SystemClock()
        self.key = SigningKey.generate()
        self.outcomes: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.end = time.monotonic() + seconds
        self.to = ""
        self.replayed = b""
        self.forged = b""

    def sign(self) -> bytes:
        doc = envelope.sign(self.key, "cell.status", {}, self.clock, ip=self.bind, port=0, to=self.to)
        return envelope.encode(doc)

    def refresh(self) -> None:
        self.replayed = self.sign()
        doc = envelope.sign(self.key, "cell.status", {}, self.clock, ip=self.bind, port=0, to=self.to)
        doc["sig"] = doc["sig"][:-1] + ("0" if doc["sig"][-1] != "0" else "1")  # one digit changed
        self.forged = envelope.encode(doc)

    def body(self, kind: str) -> bytes:
        if kind == "garbage":
            return os.urandom(2000)
        if kind == "forged":
            return self.forged
        if kind == "replay":
            return self.replayed
        if kind == "nested":
            return b"[" * NESTED_DEPTH + b"]" * NESTED_DEPTH
        if kind == "oversized":
            return b"x" * OVERSIZED
        return self.sign()  # "signed": fresh and valid, all from one key

    async def sender(self, session: aiohttp.ClientSession, kind: str, until: float) -> None:
        url = f"https://{self.target}:{DNA.recp_port}/recp"
        while time.monotonic() < until:
            self.sent[kind] += 1
            try:
                async with session.post(url, data=self.body(kind), ssl=client_context()) as resp:
                    await resp.read()
                    self.outcomes[f"{kind}:{resp.status}"] += 1
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.outcomes[f"{kind}:{type(exc).__name__}"] += 1
                await asyncio.sleep(RETRY_S)  # the node closed it: back almost at once

    async def open_tls(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TLS connection to the receptor door from this address (10 s to open)."""
        return await asyncio.wait_for(
            asyncio.open_connection(self.target, DNA.recp_port, ssl=client_context(), local_addr=(self.bind, 0)), 10
        )

    def pipelined(self, kind: str) -> bytes:
        """One request for a pipeline: ``cheap`` (a GET) or ``signed`` (a fresh valid envelope)."""
        if kind == "cheap":
            return CHEAP
        body = self.sign()
        head = f"POST /recp HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body

    def pipelined_enough(self, kind: str) -> bool:
        """``cheap``: the node cut one for the address's rate and refused a new connection;
        ``signed``: it refused one past the key's rate."""
        seen = self.outcomes
        if kind == "cheap":
            return bool(seen["pipelined_cheap:429"] and seen["pipelined_cheap:refused"])
        return bool(seen["pipelined_signed:429"])

    async def pipeline(self, kind: str, until: float) -> None:
        """Requests written in batches on one TLS connection, at most two batches ahead of the
        answers; a new connection when the node cuts it, until `pipelined_enough`."""
        while time.monotonic() < until and not self.pipelined_enough(kind):
            try:
                reader, writer = await self.open_tls()
            except (OSError, TimeoutError):
                self.outcomes[f"pipelined_{kind}:refused"] += 1
                await asyncio.sleep(RETRY_S)
                continue  # (a cut connection is reopened at once, while the other keeps the bucket empty)
            answers = Answers(reader, self.outcomes, kind)
            reading = asyncio.create_task(answers.read())
            written = 0
            try:
                while not reading.done() and time.monotonic() < until and not self.pipelined_enough(kind):
                    if written - answers.count >= 2 * PIPELINE_BATCH:
                        await answers.wait(5)
                        continue
                    writer.write(b"".join(self.pipelined(kind) for _ in range(PIPELINE_BATCH)))
                    written += PIPELINE_BATCH
                    self.sent[f"pipelined_{kind}"] += PIPELINE_BATCH
                    await writer.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                writer.close()
                await asyncio.wait([reading], timeout=5)
                reading.cancel()

    async def slow_tls(self) -> None:
        """A request head, one header a second, on a fresh TLS connection; again when cut."""
        while time.monotonic() < self.end:
            try:
                reader, writer = await self.open_tls()
            except (OSError, TimeoutError):
                self.outcomes["slow_tls:refused"] += 1
                await asyncio.sleep(0.5)
                continue
            self.outcomes["slow_tls:opened"] += 1
            try:
                writer.write(b"POST /recp HTTP/1.1\r\nHost: x\r\n")
                while time.monotonic() < self.end and not reader.at_eof():
                    await asyncio.sleep(1)
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
                self.outcomes["slow_tls:cut" if reader.at_eof() else "slow_tls:held_to_end"] += 1
            except (OSError, ConnectionError):
                self.outcomes["slow_tls:cut"] += 1
            finally:
                writer.close()

    async def conn_burst(self) -> None:
        """New connections, each closed as soon as it opens, `CONN_BATCH` at a time."""

        async def touch() -> None:
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.target, DNA.recp_port, local_addr=(self.bind, 0)), 10
                )
            except (OSError, TimeoutError):
                self.outcomes["burst:refused"] += 1
                return
            self.outcomes["burst:opened"] += 1
            writer.close()

        for _ in range(CONN_BURST // CONN_BATCH):
            await asyncio.gather(*(touch() for _ in range(CONN_BATCH)))

    async def slow_raw(self) -> None:
        """A TCP connection that never starts TLS; again when cut."""
        while time.monotonic() < self.end:
            try:
                reader, writer = await asyncio.open_connection(self.target, DNA.recp_port, local_addr=(self.bind, 0))
            except OSError:
                self.outcomes["slow_raw:refused"] += 1
                await asyncio.sleep(0.5)
                continue
            self.outcomes["slow_raw:opened"] += 1
            try:
                await asyncio.wait_for(reader.read(), max(0.1, self.end - time.monotonic()))
                self.outcomes["slow_raw:cut"] += 1
            except (TimeoutError, OSError):
                self.outcomes["slow_raw:held_to_end"] += 1
            finally:
                writer.close()

    async def run(self) -> dict[str, Any]:
        async with PeerClient(self.key, self.clock, envelope.Verifier(self.clock), bind=self.bind) as peers:
            self.to = await peers.address(self.target, DNA.recp_port)
        self.refresh()
        connector = aiohttp.TCPConnector(limit=0, local_addr=(self.bind, 0), force_close=False)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15)) as session:
            t0 = time.monotonic()
            one_key = t0 + 0.2 * self.seconds
            tasks = [asyncio.create_task(self.sender(session, "signed", one_key)) for _ in range(2 * WORKERS)]
            tasks.append(asyncio.create_task(self.pipeline("signed", one_key)))
            await asyncio.wait(tasks)
            kinds = ("garbage", "forged", "replay", "nested", "oversized", "signed")
            every_kind = t0 + 0.45 * self.seconds
            tasks = [asyncio.create_task(self.pipeline("cheap", every_kind)) for _ in range(PIPELINES)]
            await self.conn_burst()
            tasks += [asyncio.create_task(self.sender(session, k, every_kind)) for k in kinds for _ in range(WORKERS)]
            await asyncio.wait(tasks)
            self.refresh()
            self.end = max(self.end, time.monotonic() + SLOWLORIS_MIN_S)  # a late start still sees cuts
            tasks = [asyncio.create_task(self.slow_raw()) for _ in range(SLOW_RAW)]
            for _ in range(SLOW_TLS):
                tasks.append(asyncio.create_task(self.slow_tls()))
                await asyncio.sleep(1 / SLOW_OPEN_PER_S)
            while time.monotonic() < self.end:
                await asyncio.sleep(min(REFRESH_S, max(0.0, self.end - time.monotonic())))
                self.refresh()
            await asyncio.wait(tasks, timeout=20)
            for t in tasks:
                t.cancel()
        return {
            "sent": dict(self.sent),
            "outcomes": dict(sorted(self.outcomes.items())),
            "cpu_s": round(time.process_time(), 2),  # its own CPU, which this machine shares with the node
        }


async def joins(bind: str, target: str, seconds: float, n_keys: int) -> dict[str, Any]:
    """Every key asks to join, round after round, until seconds have passed."""
    clock = SystemClock()
    keys = [SigningKey.generate() for _ in range(n_keys)]
    async with PeerClient(keys[0], clock, envelope.Verifier(clock), bind=bind) as peers:
        to = await peers.address(target, DNA.net_port)
    url = f"https://{target}:{DNA.net_port}/net"
    outcomes: Counter[str] = Counter()
    rounds = 0
    end = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=8, local_addr=(bind, 0))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15)) as session:

        async def ask(key: SigningKey) -> None:
            joiner = {"pubkey": key.public_key_hex, "ip": bind, "port": HOSTILE_JOIN_PORT}
            msg = {"t": "tree.join", "joiner": joiner, "hops": 0}
            wire = envelope.encode(envelope.sign(key, "tree.join", msg, clock, ip=bind, port=HOSTILE_JOIN_PORT, to=to))
            try:
                async with session.post(url, data=wire, ssl=client_context()) as resp:
                    await resp.read()
                    outcomes[str(resp.status)] += 1
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                outcomes[type(exc).__name__] += 1

        while time.monotonic() < end:
            started = time.monotonic()
            for i in range(0, n_keys, 50):
                await asyncio.gather(*(ask(k) for k in keys[i : i + 50]))
            rounds += 1
            await asyncio.sleep(max(0.0, min(JOIN_ROUND_S - (time.monotonic() - started), end - time.monotonic())))
    for key in keys:
        key.close()
    return {"keys": n_keys, "rounds": rounds, "outcomes": dict(outcomes)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.hostile")
    parser.add_argument("attack", choices=("flood", "joins"))
    parser.add_argument("--bind", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--keys", type=int, default=1000)
    args = parser.parse_args()
    if args.attack == "flood":
        result = asyncio.run(Flood(args.bind, args.target, args.seconds).run())
    else:
        result = asyncio.run(joins(args.bind, args.target, args.seconds, args.keys))
    with open(args.out, "w") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main()
