"""A stand-in for netem's delay: a user-space TCP relay that holds traffic for a random time.

This kernel has no ``netem`` (../shared/notes/machine-facts.md), so a node's namespace sends
its outgoing TCP connections to other nodes through this relay instead: an nftables ``redirect``
in the namespace's output hook (`tests.chaos.harness.ChaosNet.set_delay`) hands each new
connection to it, it reads the original destination from conntrack (``SO_ORIGINAL_DST``) and
connects there itself, its own socket marked (``SO_MARK``) so that the redirect lets it pass.

Each chunk read from either side is held for a delay drawn uniformly from [min, max] ms
before it is written on, never overtaking the chunk before it: TCP delivers a stream in
order, so jitter on a real path shows up as late bytes, not reordered ones (`DelayLine`).
Bounded: each direction holds at most `MAX_HELD` chunks of at most `CHUNK` bytes; past that
the relay stops reading and TCP's own flow control pushes back on the sender.

Run inside a namespace: ``python -m tests.chaos.jitter --port P --min-ms A --max-ms B``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import struct

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h
MARK = 0x4A17  # the relay's own connections: the redirect rule skips packets with this mark
CHUNK = 64 * 1024
MAX_HELD = 64  # chunks waiting per direction: at most 4 MiB per direction of a connection
CONNECT_TIMEOUT_S = 10


class DelayLine:
    """Release times for the chunks of one ordered byte stream."""

    def __init__(self, min_ms: float, max_ms: float, rng: random.Random) -> None:
        if not 0 <= min_ms <= max_ms:
            raise ValueError("a delay line needs 0 <= min_ms <= max_ms")
        self.min_s, self.max_s, self.rng = min_ms / 1000, max_ms / 1000, rng
        self._last = 0.0

    def release_at(self, now_s: float) -> float:
        """When a chunk read at now_s goes on: after its own random delay and after the chunk before."""
        self._last = max(self._last, now_s + self.rng.uniform(self.min_s, self.max_s))
        return self._last


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: DelayLine) -> None:
    """Copy one direction through the delay line, passing end of stream on last."""
    loop = asyncio.get_running_loop()
    held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(MAX_HELD)

    async def read() -> None:
        try:
            while data := await reader.read(CHUNK):
                await held.put((line.release_at(loop.time()), data))
        except OSError:
            pass
        await held.put((line.release_at(loop.time()), b""))

    reading = asyncio.create_task(read())
    try:
        while True:
            due, data = await held.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
    except OSError:
        return
    finally:
        reading.cancel()


def _original_destination(sock: socket.socket) -> tuple[str, int]:
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, packed = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(packed), port


async def _relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, min_ms: float, max_ms: float) -> None:
    rng = random.Random()
    try:
        host, port = _original_destination(client_w.get_extra_info("socket"))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), CONNECT_TIMEOUT_S)
        server_r, server_w = await asyncio.open_connection(sock=sock)
    except (OSError, TimeoutError):
        client_w.close()  # the sender sees its connection end, as it would a refused one
        return
    try:
        await asyncio.gather(
            _pump(client_r, server_w, DelayLine(min_ms, max_ms, rng)),
            _pump(server_r, client_w, DelayLine(min_ms, max_ms, rng)),
        )
    finally:
        server_w.close()
        client_w.close()


async def serve(port: int, min_ms: float, max_ms: float, ready: asyncio.Event | None = None) -> None:
    server = await asyncio.start_server(lambda r, w: _relay(r, w, min_ms, max_ms), "0.0.0.0", port)
    print(f"jitter relay on :{port}, {min_ms:g}-{max_ms:g} ms", flush=True)
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="where the redirect rule sends connections")
    parser.add_argument("--min-ms", type=float, required=True, help="least time a chunk is held")
    parser.add_argument("--max-ms", type=float, required=True, help="most time a chunk is held")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.min_ms, args.max_ms))


if __name__ == "__main__":
    main()
