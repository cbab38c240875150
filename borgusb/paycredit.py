"""`borgusb pay credit [AMOUNT] [--for compute|stream|storage]`: pay a node ahead for a priced use: its
agents' thinking time (``compute``, the default), the media it streams to you (``stream``) or the
copies of your files it holds (``storage``).

Without AMOUNT it prints what the node's selling cell (agent, fStream or shard cell) says of
your use there: the free share left today and your credit. With AMOUNT it pays the node's account
that many Shells (a transfer whose ref names that price's credit, `ledger.credit.credit_ref`), then
hands the cell the payment's certificate, which the node's ledger checks before crediting it once. A
certificate the cell did not take (it did not answer; or the payment was confirmed only when an earlier
command sent it again) is kept in ``~/.cache/borgusb/pay/`` and handed over the next time this
command runs against that node (only to the key it paid), so a payment is never lost between the
two steps; a week after its signing no node takes it any more, and it is dropped.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .clitools import EXIT_OK, EXIT_USAGE, CLIError
from .keys import SigningKey
from .ledger.credit import FINAL_REFUSALS, PRESENT_WINDOW_MS, credit_ref
from .ledger.rules import GIB, MIB
from .net.peer import PeerError, PeerRejected

COMMAND = "credit"
SOLD = ("compute", "stream", "storage")  # the prices cells sell on credit: the agent, fStream and shard cells
REFS = frozenset(credit_ref(rule) for rule in SOLD)  # the payments a selling cell takes a certificate for


def add_parser(sub: Any) -> argparse.ArgumentParser:
    credit = sub.add_parser(
        COMMAND,
        help="pay the node ahead for its agents' thinking time or its streams; without AMOUNT, show what is left",
    )
    credit.add_argument(
        "amount",
        nargs="?",
        help='Shells, e.g. "0.5" (a second of thinking 0.001 Shell; a GiB streamed 0.01; a GiB held a day 0.01)',
    )
    credit.add_argument(
        "--for",
        dest="rule",
        choices=SOLD,
        default="compute",
        help="what it pays for: the agents' thinking (compute, the default), streamed media (stream) "
        "or the copies of your files this node holds (storage)",
    )
    return credit


def _seller(rule: str, peers: Any, ip: str, pubkey: str | None = None) -> Any:
    """The typed client of the cell that sells `rule` at `ip` (answers checked to be `pubkey`'s)."""
    if rule == "stream":
        from .cells.fstream.client import FStreamClient

        return FStreamClient(peers, ip, pubkey=pubkey)
    if rule == "storage":
        from .cells.shard.client import ShardClient

        return ShardClient(peers, ip, pubkey=pubkey)
    from .cells.agents.client import AgentClient

    return AgentClient(peers, ip, pubkey=pubkey)


def _int(v: Any) -> int:
    """An integer field of a cell's reply (anything else, from a hostile or broken cell, is 0)."""
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _left(rule: str, usage: dict[str, Any]) -> str:
    free = _int(usage.get("free_left"))
    if rule == "stream":
        return f"streaming here: {free / GIB:.2f} GiB free left today"
    if rule == "storage":
        held, share = _int(usage.get("held")), _int(usage.get("free_bytes"))
        return f"stored here: {held / MIB:.1f} MiB of yours, {share / MIB:.1f} MiB kept free"
    return f"thinking time here: {free // 1000} s free left today"


def keep(pending: Path, done: dict[str, Any]) -> Path | None:
    """Keep a confirmed payment's certificate when it buys credit (``pay send`` resending one too)."""
    cert = done.get("cert")
    tx = cert.get("tx") if isinstance(cert, dict) else None
    if not isinstance(tx, dict) or tx.get("ref") not in REFS:
        return None
    path = pending / f"credit-{tx.get('account')}-{done.get('id')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cert))
    return path


def _kept(pending: Path, account: str, payee: str, ref: str, now_ms: int) -> list[Path]:
    """The kept certificates of `account` that pay `payee` for credit `ref` (one node's agent and fStream
    cells share its account: each takes only its own ref); those no node takes any more are dropped."""
    out = []
    for path in sorted(pending.glob(f"credit-{account}-*.json")):
        try:
            tx = json.loads(path.read_text())["tx"]
            to, ts, kept_ref = tx["to"], int(tx["ts"]), tx["ref"]
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        if ts < now_ms - PRESENT_WINDOW_MS:
            print(f"borgusb pay: a kept payment to {to[:16]}… is over a week old; dropped", file=sys.stderr)
            path.unlink(missing_ok=True)
        elif (to, kept_ref) == (payee, ref):
            out.append(path)
    return out


async def run(
    args: argparse.Namespace,
    peers: Any,
    pay: Any,
    key: SigningKey | None,
    now_ms: int,
    pending: Path,
    submit_chain: Callable[..., Awaitable[dict[str, Any]]],
) -> int:
    from .ledger import format_shells, parse_shells, sign_transfer
    from .ledger.errors import BadAmount

    if key is None:
        raise CLIError("pay credit speaks for your wallet: give --keystore PATH (or --key-file)", EXIT_USAGE)
    amount = None
    if args.amount is not None:
        try:
            amount = parse_shells(args.amount)
        except BadAmount as exc:
            raise CLIError(f"bad amount ({exc.problem}): {exc.detail}", EXIT_USAGE) from None
    rule = getattr(args, "rule", "compute")
    usage = await _ask(_seller(rule, peers, args.node).usage())
    to, ref = usage.get("payee"), usage.get("ref")
    if not isinstance(to, str) or ref != credit_ref(rule):
        raise CLIError(f"the node's {_CELL[rule]} did not say which account to pay")
    cell = _seller(rule, peers, args.node, pubkey=to)  # only the paid key's answer counts
    for path in _kept(pending, key.public_key_hex, to, ref, now_ms):
        usage = await _hand_over(cell, path) or usage
    if amount is not None:

        def sign(seq: int, prev: str) -> Any:
            return sign_transfer(key, seq=seq, prev=prev, to=to, amount=amount, ts=now_ms, ref=ref)

        fresh = keep(pending, await submit_chain(pay, key, sign))  # the ledger's refusals are paycli's to word
        if fresh is not None:
            usage = await _hand_over(cell, fresh) or usage

    def shells(field: str) -> str:
        return format_shells(_int(usage.get(field)))

    text = (
        "this node serves this key free (its own key)"
        if usage.get("exempt")
        else f"{_left(rule, usage)}; credit {shells('balance')} Shells "
        f"(paid {shells('paid')}, charged {shells('charged')})"
    )
    print(json.dumps(usage) if args.json else text)
    return EXIT_OK


_CELL = {"compute": "agent cell", "stream": "fStream cell", "storage": "shard cell"}


async def _ask(call: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    try:
        return await call
    except PeerRejected as exc:
        raise CLIError(f"the cell refused: {exc.reason}{': ' + exc.detail if exc.detail else ''}") from None


async def _hand_over(cell: Any, path: Path) -> dict[str, Any] | None:
    """Give the selling cell a kept certificate: its usage once taken (the file goes), else None. A refusal
    for good drops the file; any other (or silence) keeps it for the next run, said on stderr."""
    try:
        done: dict[str, Any] = await cell.credit(json.loads(path.read_text()))
    except PeerRejected as exc:
        if exc.reason in FINAL_REFUSALS:
            path.unlink(missing_ok=True)
            if exc.reason != "again":
                print(f"borgusb pay: a kept payment was not credited ({exc.reason}); dropped", file=sys.stderr)
            return None
        print(f"borgusb pay: paid, not credited yet ({exc.reason}); kept, sent again next time", file=sys.stderr)
        return None
    except PeerError as exc:
        print(f"borgusb pay: paid, the cell did not take it yet ({exc}); kept, run this again", file=sys.stderr)
        return None
    path.unlink(missing_ok=True)
    usage = done.get("usage")
    return usage if isinstance(usage, dict) else None
