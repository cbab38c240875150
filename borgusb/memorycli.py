"""`borgusb memory put|search|rm`: memories signed by your key, searched in natural language (peerMemoryCell).

    borgusb memory put TEXT [--kind K] [--place P] [--weight NAME=N ...] [--private]
    borgusb memory search QUESTION [--mine] [--owner KEY] [--kind K ...] [--since MS] [--until MS]
                                   [--limit N] [--min-score N] [--mode hybrid|keyword|embedding]
    borgusb memory rm ID

Your wallet signs (``--keystore PATH [--passphrase-file F]``, or ``--key-file`` for scripts). A
``--private`` memory's text is sealed to your key here, before it leaves this machine; cells see
ciphertext only, and ``search --mine`` opens and scores your private memories on this machine
(it loads the embedding model here). Every result is checked against its owner's signature before
it is shown. The command talks to the peerMemoryCell at ``--node IP`` (default $BORGUSB_NODE, else a
local cluster's, else this machine's). Scores are in millionths (docs/memory.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from . import dna
from .clitools import EXIT_CODES, EXIT_OK, EXIT_USAGE, CLIError, add_wallet_options, find_node, require_wallet
from .clitools import run as run_command
from .clock import SystemClock
from .envelope import Verifier
from .net.peer import PeerClient, PeerRejected

DNA = dna.get("peerMemoryCell")

EXPLAIN = {
    "rate_limited": "the memory cells take no more memories from you right now; try again in a minute",
    "too_large": "the memory is too long (4096 bytes at most)",
    "deleted": "you removed this memory; it cannot be put again",
    "stale": "signed too long ago, or this computer's clock is behind the network's",
    "no_holder": "no holder of that memory answered",
    "not_holder": "the memory nodes are changing; try again",
    "holder_full": "the holders keep as many memories as they can",
}


def _weights(items: list[str]) -> dict[str, int]:
    found = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            found[name] = int(value)
        except ValueError:
            raise CLIError(f"a weight is NAME=INTEGER, not {item!r}", EXIT_USAGE) from None
    return found


def _line(r: Any, text: str) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.memory.ts / 1000))
    lock = " private" if r.memory.private else ""
    return f"{r.memory.id[:12]}  {r.score:>7}  {when}  {r.memory.kind}{lock}  {text}"


async def _run(args: argparse.Namespace) -> int:
    from .cells.memory.client import MemoryClient
    from .memory.errors import MemoryRefused
    from .memory.query import make_query
    from .memory.record import compose, make_tombstone, open_text
    from .storecli import load_key

    key = load_key(args)
    clock = SystemClock()
    async with PeerClient(key, clock, Verifier(clock), timeout_s=args.timeout) as peers:
        client = MemoryClient(peers, args.node, port=DNA.recp_port)
        try:
            if args.cmd == "put":
                try:
                    m = compose(
                        key,
                        args.text,
                        kind=args.kind,
                        ts=clock.now_ms(),
                        place=args.place,
                        weights=_weights(args.weight),
                        private=args.private,
                    )
                except MemoryRefused as exc:
                    raise CLIError(f"{exc} ({exc.reason})", EXIT_USAGE) from None
                done = await client.put(m)
                print(json.dumps(done) if args.json else f"put {m.id}: kept by {done['stored']} of {done['holders']}")
                return EXIT_OK
            if args.cmd == "rm":
                done = await client.rm(make_tombstone(key, args.id.strip().lower(), clock.now_ms()))
                print(json.dumps(done) if args.json else f"removed {done['id']} from {done['removed']} holder(s)")
                return EXIT_OK
            try:
                filters: dict[str, Any] = dict(
                    owner=args.owner or "", kinds=tuple(args.kind), since=args.since, until=args.until,
                    limit=args.limit, min_score=args.min_score, mode=args.mode,
                )  # fmt: skip
                if args.mine:
                    filters.pop("owner")
                q = make_query(args.question, clock.now_ms(), key=key if args.mine else None, **filters)
            except MemoryRefused as exc:
                raise CLIError(f"{exc} ({exc.reason})", EXIT_USAGE) from None
            found = await client.search(q, key if args.mine else None)
            if found.bad:
                print(f"borgusb memory: {len(found.bad)} result(s) did not verify and were dropped", file=sys.stderr)
            rows = [(r, open_text(key, r.memory)) for r in found.results]
            if args.json:
                print(json.dumps([dict(r.to_dict(), id=r.memory.id, text=text) for r, text in rows]))
            else:
                print("\n".join(_line(r, text) for r, text in rows) if rows else "nothing found")
            return EXIT_OK
        except PeerRejected as exc:
            what = EXPLAIN.get(exc.reason, exc.reason)
            raise CLIError(f"{what} ({exc.reason}){': ' + exc.detail if exc.detail else ''}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="borgusb memory", description="memories signed by your key: put, search, rm", epilog=EXIT_CODES
    )
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    put = sub.add_parser("put", help="sign a memory and store it on its holders")
    put.add_argument("text", help="the memory (4096 bytes at most)")
    put.add_argument("--kind", default="note", help="a short word: note, work, health ... (default note)")
    put.add_argument("--place", default="", help="where it happened (optional)")
    put.add_argument("--weight", action="append", default=[], metavar="NAME=N", help="a named weight, 0 to 1000")
    put.add_argument("--private", action="store_true", help="seal the text to your key (only you can read it)")
    search = sub.add_parser("search", help="ask a question; the best memories of every memory cell")
    search.add_argument("question")
    search.add_argument("--mine", action="store_true", help="your memories, private ones too (signed by you)")
    search.add_argument("--owner", metavar="KEY", help="only this key's public memories")
    search.add_argument("--kind", action="append", default=[], help="only this kind (repeatable)")
    search.add_argument("--since", type=int, default=0, metavar="MS", help="not older than this time (ms)")
    search.add_argument("--until", type=int, default=0, metavar="MS", help="not newer than this time (ms)")
    search.add_argument("--limit", type=int, default=10, help="results (1 to 50, default 10)")
    search.add_argument("--min-score", type=int, default=0, help="in millionths (0 to 1000000)")
    search.add_argument("--mode", default="hybrid", choices=("hybrid", "keyword", "embedding"))
    rm = sub.add_parser("rm", help="remove a memory of yours (a signed tombstone)")
    rm.add_argument("id", help="the memory's id (64 hex digits)")
    for q in (put, search, rm):
        add_wallet_options(q, DNA.name, "your wallet keystore (signs your memories)", "seconds to wait for the node")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        require_wallet(args, "memories are signed by your wallet")
        if args.node is None:
            args.node = find_node(DNA.name, DNA.recp_port)
        return asyncio.run(_run(args))

    return run_command(f"borgusb memory {args.cmd}", DNA.name, body)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
