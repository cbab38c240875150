"""`borgusb pay earn content [--day D]`: claim the ``content`` reward for your public media's reads.

Every fStream cell keeps the read receipts viewers' conduits signed when they first played one of
your public stream maps in a day (`cells.fstream.reads`). This command asks each fStream cell the
network's registry lists (and the one on ``--node``) for your receipts of day D (a UTC day number;
default yesterday: a day is paid once it has ended, up to two days after), merges them (one per
reader and map, at most `contentwork.MAX_READS`), builds the work record and has the reserve pay it
(`cells.peerpays.claim.claim_reward`): 0.001 Shell a read. The reserve's holders check every receipt
and that each map is yours; one record per creator and day is paid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from typing import Any

from .clitools import EXIT_FAIL, EXIT_OK, EXIT_USAGE, CLIError
from .keys import SigningKey
from .ledger.contentwork import MAX_READS, check_read, day_of, make_content
from .ledger.work import BadWork
from .net.peer import PeerClient, PeerError
from .signed import SignedDocError

COMMAND = "earn"
ASK_TIMEOUT_S = 10.0
MAX_ENDPOINTS = 64


def add_parser(sub: Any) -> argparse.ArgumentParser:
    earn = sub.add_parser(
        COMMAND,
        help="claim a reward the reserve pays: content (0.001 Shell per read of your public media)",
        description="Claim the content reward of one ended day: the reads of your public media that viewers "
        "signed, 0.001 Shell each (one per viewer, map and day), paid by the reserve once per day.",
    )
    earn.add_argument("rule", choices=("content",), help="the reward to claim (content: reads of your public media)")
    earn.add_argument(
        "--day", type=int, metavar="D", help="the UTC day number (ms since 1970 // 86400000); default: yesterday"
    )
    return earn


async def _endpoints(peers: PeerClient, node: str) -> list[str]:
    """The fStream cells the registry on `node` lists, and `node` itself (the registry may be down)."""
    from .cells.servicemgr.client import ServiceMgrClient

    try:
        listed = await asyncio.wait_for(ServiceMgrClient(peers, node).services("fStreamCell"), ASK_TIMEOUT_S)
    except (TimeoutError, PeerError):
        listed = []
    ips = [e["ip"] for e in listed if isinstance(e.get("ip"), str)]
    return list(dict.fromkeys([node, *ips]))[:MAX_ENDPOINTS]


async def gather_reads(peers: PeerClient, endpoints: list[str], owner: str, day: int) -> list[dict[str, Any]]:
    """`owner`'s receipts of `day` from every endpoint, each checked, one per (reader, map), the earliest
    first, at most MAX_READS (an endpoint that does not answer adds nothing)."""
    from .cells.fstream.client import FStreamClient

    async def ask(ip: str) -> list[dict[str, Any]]:
        try:
            return await asyncio.wait_for(FStreamClient(peers, ip).reads(day), ASK_TIMEOUT_S)
        except (TimeoutError, PeerError):
            return []

    found: dict[tuple[str, str], dict[str, Any]] = {}
    for got in await asyncio.gather(*(ask(ip) for ip in endpoints)):
        for r in got:
            try:
                read = check_read(r)
            except SignedDocError:
                continue
            if read["owner"] != owner or read["day"] != day or read["reader"] == owner:
                continue
            pair = (read["reader"], read["map"])
            if pair not in found or read["ts"] < found[pair]["ts"]:
                found[pair] = read
    return sorted(found.values(), key=lambda r: (r["ts"], r["reader"], r["map"]))[:MAX_READS]


async def claim_content(
    peers: PeerClient, pay: Any, key: SigningKey, endpoints: list[str], day: int, now_ms: Callable[[], int]
) -> dict[str, Any]:
    """Claim `day`'s content reward for `key`: ``{"claimed": True, "id", "amount", "reads", "ref"}``, or
    ``{"claimed": False, "why": <reason word>, "detail"}``."""
    from .cells.peerpays.claim import RewardRefused, claim_reward

    reads = await gather_reads(peers, endpoints, key.public_key_hex, day)
    if not reads:
        return {"claimed": False, "why": "no_reads", "detail": f"no fStream cell kept reads of day {day}", "day": day}
    try:
        rec = make_content(key.public_key_hex, day, reads)
    except BadWork as exc:
        return {"claimed": False, "why": exc.reason, "detail": exc.detail, "day": day}
    base = {"day": day, "reads": len(rec.reads), "amount": rec.amount, "ref": rec.ref}
    try:
        done = await claim_reward(pay, key, rec.to_dict(), rec.ref, rec.amount, now_ms)
    except RewardRefused as exc:
        return {"claimed": False, "why": exc.reason, "detail": exc.detail, **base}
    return {"claimed": True, "id": done.get("id", ""), **base}


async def run(args: argparse.Namespace, peers: PeerClient, pay: Any, key: SigningKey | None, now_ms: int) -> int:
    from .ledger import format_shells

    if key is None:
        raise CLIError("pay earn claims for your wallet: give --keystore PATH (or --key-file)", EXIT_USAGE)
    day = day_of(now_ms) - 1 if args.day is None else args.day
    if not 0 <= day < day_of(now_ms):
        raise CLIError(f"day {day} has not ended (today is {day_of(now_ms)})", EXIT_USAGE)
    got = await claim_content(peers, pay, key, await _endpoints(peers, args.node), day, peers.clock.now_ms)
    if args.json:
        print(json.dumps(got))
    elif got["claimed"]:
        print(
            f"claimed {format_shells(got['amount'])} Shells for {got['reads']} reads of day {day}: "
            f"transaction {got['id']}"
        )
    else:
        print(f"not claimed ({got['why']}): {got.get('detail', '')}")
    return EXIT_OK if got["claimed"] else EXIT_FAIL
